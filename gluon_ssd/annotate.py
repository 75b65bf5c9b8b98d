"""Detect on image files, folders, glob patterns and videos; write annotated images and ``detections.jsonl``.

The loop behind demo_ssd.py. Inputs: :func:`split_comma_lists` reads GluonCV's ``--images a.jpg,b.jpg``;
:func:`expand_images` turns files, folders (their images, not recursive) and glob patterns into image paths;
:func:`video_frames` reads every N-th frame of a video.
Outputs in one folder: each annotated image under the input's name (its format when OpenCV writes it, else
PNG; never overwriting an input or an earlier output), a video's frames as
``<video name>_frames/frame_<index>.png``, and one ``detections.jsonl`` line per image or frame
(:func:`gluon_ssd.predict.detection_record` plus ``"annotated"``, the written file).

Inputs that cannot be read are logged (warning), listed in the summary and skipped.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence

from . import vis
from .data.custom import IMAGE_EXTS, BadImageError, read_image
from .predict import detect_images, detection_record

__all__ = ["VIDEO_EXTS", "split_comma_lists", "expand_images", "video_frames", "OutputNames", "Summary", "annotate"]

log = logging.getLogger(__name__)

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
# Formats an annotated image is written in: the input's, when OpenCV can write it, else PNG.
_WRITE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".ppm", ".pgm")


def split_comma_lists(specs: Sequence[str]) -> list[str]:
    """GluonCV's comma-separated ``--images a.jpg,b.jpg`` and one path per argument, alike: each argument holding a
    comma is split at its commas (pieces stripped of spaces, empty pieces dropped, as GluonCV's demo does), unless
    it names an existing file or folder, or is a glob pattern that matches something: those stay whole.

    >>> split_comma_lists(["a.jpg,b.jpg", "c.jpg", " d.jpg , ,e.jpg"])  # none of them exists
    ['a.jpg', 'b.jpg', 'c.jpg', 'd.jpg', 'e.jpg']
    """
    out = []
    for spec in map(os.fspath, specs):
        whole = "," not in spec or os.path.exists(spec) or (glob.has_magic(spec) and glob.glob(spec, recursive=True))
        out.extend([spec] if whole else [piece.strip() for piece in spec.split(",") if piece.strip()])
    return out


def expand_images(specs: Sequence[str]) -> list[str]:
    """Files named by ``specs`` (files, folders, glob patterns), in order, without repeats.

    Folders and patterns that give nothing are logged; a plain path is kept as is (a missing one is reported
    when it is read).
    """
    out, seen = [], set()

    def add(path):
        key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            out.append(path)

    for spec in map(os.fspath, specs):
        if os.path.isdir(spec):
            found = sorted(os.path.join(spec, n) for n in os.listdir(spec)
                           if n.lower().endswith(IMAGE_EXTS) and os.path.isfile(os.path.join(spec, n)))
            if not found:
                log.warning("folder %s holds no images (%s)", spec, ", ".join(IMAGE_EXTS))
        elif glob.has_magic(spec) and not os.path.exists(spec):
            found = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
            if not found:
                log.warning("no file matches %r", spec)
        else:
            found = [spec]
        for path in found:
            add(path)
    return out


def video_frames(path: str, every: int = 1):
    """(number of frames to be read or None when the container does not say, iterator of (frame index,
    (H, W, 3) uint8 RGB frame)) for every ``every``-th frame from frame 0; None (logged) when the video cannot
    be opened."""
    import cv2

    if not os.path.isfile(path):
        log.warning("skipped: video %s does not exist", path)
        return None
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        log.warning("skipped: cannot open video %s (not a video, or a codec OpenCV lacks)", path)
        cap.release()
        return None
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    count = (total + every - 1) // every if total > 0 else None

    def frames():
        index = 0
        try:
            while True:
                if index % every == 0:
                    ok, frame = cap.read()
                    if not ok:
                        return
                    yield index, frame[:, :, ::-1].copy()
                elif not cap.grab():
                    return
                index += 1
        finally:
            cap.release()

    return count, frames()


def _same_file(a, b) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


class OutputNames:
    """Unique output names in a folder: an annotated image never replaces an input or an earlier output."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.used: set[str] = set()

    def image_path(self, src: str) -> str:
        stem, ext = os.path.splitext(os.path.basename(src))
        ext = ext.lower() if ext.lower() in _WRITE_EXTS else ".png"
        candidate, n = os.path.join(self.out_dir, stem + ext), 1
        while candidate in self.used or _same_file(candidate, src):
            n += 1
            candidate = os.path.join(self.out_dir, f"{stem}_{n}{ext}")
        self.used.add(candidate)
        return candidate

    def frame_dir(self, video: str) -> str:
        stem = os.path.splitext(os.path.basename(video))[0]
        candidate, n = os.path.join(self.out_dir, f"{stem}_frames"), 2
        while candidate in self.used:
            candidate = os.path.join(self.out_dir, f"{stem}_{n}_frames")
            n += 1
        self.used.add(candidate)
        return candidate


@dataclasses.dataclass
class Summary:
    """What :func:`annotate` did: images and video frames written, detections, inputs it could not read."""

    jsonl_path: str
    images: int = 0
    frames: int = 0
    detections: int = 0
    unreadable: list = dataclasses.field(default_factory=list)


def annotate(detector, images: Sequence[str], videos: Sequence[str], out_dir: str, preprocess: Callable,
             batch_size: int = 8, thresh: float = 0.5, every: int = 1, progress: bool = True,
             on_image: Callable | None = None) -> Summary:
    """Detect on ``images`` (paths) and every ``every``-th frame of ``videos``, writing into ``out_dir``.

    Parameters
    ----------
    detector : see :mod:`gluon_ssd.predict` (its ``classes`` name the detections).
    preprocess : image -> network input (a :class:`gluon_ssd.predict.Preprocessor`).
    thresh : keep detections scored at least this.
    progress : tqdm bars on stderr (for ten inputs or more).
    on_image : called as ``on_image(record, annotated RGB image, is_frame)`` after each image or frame is
        written (the demo prints a line and shows the image).

    Raises
    ------
    OSError
        An output cannot be written.
    """
    from tqdm import tqdm

    os.makedirs(out_dir, exist_ok=True)
    summary = Summary(os.path.join(out_dir, "detections.jsonl"))
    names = OutputNames(out_dir)

    def readable(paths):
        for path in paths:
            try:
                yield path, read_image(path)
            except BadImageError as err:
                hint = " (a video? pass it with --video)" if path.lower().endswith(VIDEO_EXTS) else ""
                log.warning("skipped: %s%s", err, hint)
                summary.unreadable.append(path)

    def run(stream, bar, name_of, path_of, is_frame):
        done = 0
        for det in detect_images(detector, stream, preprocess, batch_size, thresh):
            rec = {**detection_record(name_of(det.key), det, detector.classes), "annotated": path_of(det.key)}
            image = det.image.asnumpy() if hasattr(det.image, "asnumpy") else det.image
            drawn = vis.draw_detections(image, det.boxes, det.class_ids, det.scores, detector.classes)
            vis.save_image(rec["annotated"], drawn)
            jsonl.write(json.dumps(rec) + "\n")
            jsonl.flush()
            summary.detections += len(rec["detections"])
            done += 1
            bar.update(1)
            if on_image is not None:
                on_image(rec, drawn, is_frame)
        bar.close()
        return done

    with open(summary.jsonl_path, "w", encoding="utf-8") as jsonl:
        if images:
            bar = tqdm(total=len(images), unit="img", disable=not progress or len(images) < 10, file=sys.stderr)
            summary.images += run(readable(images), bar, str, names.image_path, False)
        for video in videos:
            frames = video_frames(video, every)
            if frames is None:
                summary.unreadable.append(video)
                continue
            count, stream = frames
            folder = names.frame_dir(video)
            os.makedirs(folder, exist_ok=True)
            bar = tqdm(total=count, unit="frame", desc=os.path.basename(video), file=sys.stderr,
                       disable=not progress or (count is not None and count < 10))
            done = run(stream, bar, lambda i, v=video: f"{v}#frame={i}",
                       lambda i, d=folder: os.path.join(d, f"frame_{i:06d}.png"), True)
            if done == 0:
                log.warning("skipped: no frame could be decoded from video %s", video)
                summary.unreadable.append(video)
            summary.frames += done
    return summary
