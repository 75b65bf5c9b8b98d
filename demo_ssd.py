"""Detect objects in images, folders and videos with an SSD; draw, save and export the detections.

Examples::

    python demo_ssd.py --images dog.jpg 'photos/*.jpg' photos2/ --out-dir out
    python demo_ssd.py --network ssd_512_resnet50_v1_voc --images street.jpg --classes person,car --out-dir out
    python demo_ssd.py --network ssd_300_vgg16_atrous_custom --pretrained run/ssd_best.params \\
        --classes circle,square,triangle,cross,ring --data-shape 300 --images val/ --out-dir out
    python demo_ssd.py --video clip.mp4 --every 10 --out-dir out

Outputs in --out-dir: one annotated image per input image (same name and format, same size as the
input), for a video the processed frames as PNGs in ``<video name>_frames/frame_<index>.png``, and
``detections.jsonl`` with one line per image or frame::

    {"image": path, "width": W, "height": H, "annotated": output path,
     "detections": [{"class": name, "class_id": i, "score": s, "box": [x1, y1, x2, y2]}, ...]}

Boxes are in the original image's pixels, clipped to the image, sorted by score.

Exit status: 0 when at least one image or frame was processed (inputs that could not be read are
reported and skipped), 1 when none could be read, 2 for a usage error or a model that cannot be loaded.
"""
from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import sys

import gluon_ssd._env  # noqa: F401  (before mxnet)
from gluon_ssd.data.custom import IMAGE_EXTS  # noqa: E402

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
# Formats an annotated image is written in: the input's, when OpenCV can write it, else PNG.
_WRITE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".ppm", ".pgm")
EXIT_NOTHING_READ = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A problem with the command line or the model; reported without a traceback (exit 2)."""


def parse_args(argv=None):
    from gluon_ssd.predict import BACKENDS

    p = argparse.ArgumentParser(
        description="Detect objects with an SSD on images, folders and videos; write annotated images "
                    "and detections.jsonl.",
        epilog="Exit status: 0 if at least one image/frame was processed, 1 if no input could be read, "
               "2 for usage or model-loading errors.")
    p.add_argument("--network", default="ssd_300_vgg16_atrous_coco",
                   help="model zoo name (default: %(default)s)")
    p.add_argument("--pretrained", default="True",
                   help="'True' for GluonCV's published weights (model store), a parameter file path "
                        "(GluonCV's or from training), or 'False' for random weights (smoke tests)")
    p.add_argument("--images", nargs="+", default=[], metavar="PATH",
                   help="image files, folders (their images, not recursive) and quoted glob patterns")
    p.add_argument("--video", nargs="+", default=[], metavar="VIDEO", help="video files")
    p.add_argument("--every", type=int, default=1, metavar="N",
                   help="process every N-th video frame, starting at frame 0 (default: %(default)s)")
    p.add_argument("--out-dir", required=True, help="folder for annotated images and detections.jsonl")
    p.add_argument("--thresh", type=float, default=0.5,
                   help="keep detections with a score at least this (default: %(default)s)")
    p.add_argument("--nms-thresh", type=float, default=0.45,
                   help="per-class NMS IoU threshold (default: %(default)s)")
    p.add_argument("--topk", type=int, default=200,
                   help="candidates kept before NMS, -1 for all (default: %(default)s)")
    p.add_argument("--classes", default=None,
                   help="comma-separated class names, or a file with one per line: the classes a "
                        "*_custom network was trained with (in order), or a subset of a VOC/COCO network's "
                        "classes to detect only those")
    p.add_argument("--short", type=int, default=None,
                   help="resize the short side to this, keeping the aspect ratio (default 512)")
    p.add_argument("--max-size", type=int, default=None,
                   help="...unless the long side would exceed this (default 1024)")
    p.add_argument("--data-shape", type=int, default=None, metavar="S",
                   help="instead: resize to SxS, ignoring the aspect ratio (the evaluation preprocessing)")
    p.add_argument("--batch-size", type=int, default=8,
                   help="images per network call; only images of the same input shape share a batch "
                        "(default: %(default)s)")
    p.add_argument("--gpus", default="", help="GPU ids, e.g. '0' or '0,1'; empty for CPU (default)")
    p.add_argument("--backend", default="mxnet",
                   help=f"inference backend (available: {', '.join(sorted(BACKENDS))}; default: %(default)s)")
    p.add_argument("--device", default="cpu",
                   help="--backend torch: cpu or cuda[:N] (MXNet uses --gpus) (default: %(default)s)")
    p.add_argument("--deploy", action="store_true",
                   help="run an exported model (--model-prefix), float32 or int8 (gluon_ssd.export, eval_ssd.py "
                        "--calibration); its classes come from PREFIX-meta.json or --classes")
    p.add_argument("--model-prefix", default=None, help="prefix of the exported model for --deploy")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "tf32", "fp16", "bf16", "int8"),
                   help="--backend torch: network precision (default: %(default)s)")
    p.add_argument("--show", action="store_true", help="also show each annotated image in a window")
    p.add_argument("-v", "--verbose", action="store_true", help="log library messages at INFO level")
    return p.parse_args(argv)


def parse_classes(value):
    if value is None:
        return None
    if os.path.isfile(value):
        with open(value, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
        source = f"file {value}"
    else:
        names = [c.strip() for c in value.split(",") if c.strip()]
        source = repr(value)
    if not names:
        raise UsageError(f"--classes {source} names no class; give e.g. --classes cat,dog")
    return names


def check_args(args):
    if args.data_shape is not None and (args.short is not None or args.max_size is not None):
        raise UsageError("--data-shape (fixed SxS resize) and --short/--max-size (aspect-preserving "
                         "resize) exclude each other; give one of them")
    for name in ("every", "batch_size"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    for name in ("short", "max_size", "data_shape"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if not 0.0 <= args.thresh <= 1.0:
        raise UsageError(f"--thresh must be in [0, 1], got {args.thresh}")
    if args.deploy and not args.model_prefix:
        raise UsageError("--deploy needs --model-prefix PREFIX (PREFIX-symbol.json and PREFIX-0000.params)")
    if args.deploy and args.backend != "mxnet":
        raise UsageError("--deploy runs an MXNet export; for the twin's int8 graph use --backend torch "
                         "--pretrained MODEL-int8.onnx")
    if not args.images and not args.video:
        raise UsageError("nothing to do: give --images and/or --video")


def expand_images(specs, report):
    """Files named by ``specs`` (files, folders, glob patterns), in order, without repeats.

    Folders and patterns that give nothing are reported with ``report``; a plain path is kept as is (a
    missing one is reported when it is read).
    """
    out, seen = [], set()

    def add(path):
        key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            out.append(path)

    for spec in specs:
        if os.path.isdir(spec):
            found = sorted(os.path.join(spec, n) for n in os.listdir(spec)
                           if n.lower().endswith(IMAGE_EXTS) and os.path.isfile(os.path.join(spec, n)))
            if not found:
                report(f"folder {spec} holds no images ({', '.join(IMAGE_EXTS)})")
            for path in found:
                add(path)
        elif glob.has_magic(spec) and not os.path.exists(spec):
            found = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
            if not found:
                report(f"no file matches {spec!r}")
            for path in found:
                add(path)
        else:
            add(spec)
    return out


def parse_contexts(gpus):
    import mxnet as mx

    ids = [g.strip() for g in gpus.split(",") if g.strip()]
    if not ids:
        return [mx.cpu()]
    try:
        ids = [int(g) for g in ids]
    except ValueError:
        raise UsageError(f"--gpus {gpus!r}: expected GPU numbers like '0' or '0,1'") from None
    available = mx.context.num_gpus()
    missing = [g for g in ids if g >= available]
    if missing:
        raise UsageError(f"--gpus {gpus!r}: MXNet sees {available} GPU(s) (this mxnet build may have no "
                         "CUDA support); leave --gpus out to run on the CPU")
    return [mx.gpu(g) for g in ids]


class Outputs:
    """Annotated-image names in the output folder (unique; never an input file)."""

    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.used = set()

    def image_path(self, src):
        stem, ext = os.path.splitext(os.path.basename(src))
        ext = ext.lower() if ext.lower() in _WRITE_EXTS else ".png"
        candidate, n = os.path.join(self.out_dir, stem + ext), 1
        while candidate in self.used or _same_file(candidate, src):
            n += 1
            candidate = os.path.join(self.out_dir, f"{stem}_{n}{ext}")
        self.used.add(candidate)
        return candidate


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def summary_line(name, rec, limit=5):
    dets = rec["detections"]
    words = ", ".join(f"{d['class']} {d['score']:.2f}" for d in dets[:limit])
    more = f", +{len(dets) - limit} more" if len(dets) > limit else ""
    noun = "detection" if len(dets) == 1 else "detections"
    return f"{name}: {len(dets)} {noun}" + (f" ({words}{more})" if dets else "")


class Shower:
    """--show: one window, opened lazily; turned off with a warning when there is no display."""

    def __init__(self, enabled, warn):
        self.enabled = enabled
        self.warn = warn
        if enabled and sys.platform.startswith("linux") and not (
                os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            warn("--show needs a display (DISPLAY is not set); the annotated images are only saved")
            self.enabled = False

    def __call__(self, rgb, wait_ms):
        if not self.enabled:
            return
        import cv2

        try:
            cv2.imshow("demo_ssd", rgb[:, :, ::-1])
            cv2.waitKey(wait_ms)
        except cv2.error as err:
            self.warn(f"--show: cannot open a window ({str(err).strip().splitlines()[-1]}); "
                      "the annotated images are only saved")
            self.enabled = False


def run(args):
    from tqdm import tqdm

    from gluon_ssd import predict
    from gluon_ssd.model_store import ModelStoreError

    def warn(msg):
        tqdm.write(f"warning: {msg}", file=sys.stderr)

    check_args(args)
    classes = parse_classes(args.classes)
    preprocess = predict.Preprocessor(short=args.short or 512, max_size=args.max_size or 1024,
                                      data_shape=args.data_shape)
    images = expand_images(args.images, warn)
    if args.backend not in predict.BACKENDS:
        raise UsageError(f"--backend {args.backend!r} is not available; choose from "
                         f"{', '.join(sorted(predict.BACKENDS))}")
    ctx = parse_contexts(args.gpus)
    try:
        options = predict.backend_options(args.backend, args.device, args.dtype, mxnet_gpus_flag="--gpus")
    except ValueError as err:
        raise UsageError(str(err)) from None
    try:
        if args.deploy:
            detector = predict.load_deployed_detector(args.model_prefix, classes, ctx)
        else:
            detector = predict.load_detector(
                args.backend, network=args.network, pretrained=predict.parse_pretrained(args.pretrained),
                classes=classes, ctx=ctx, nms_thresh=args.nms_thresh, nms_topk=args.topk,
                **options)
    except ModelStoreError as err:
        raise UsageError(str(err)) from None
    except (ValueError, FileNotFoundError) as err:
        hint = ""
        if classes and "shape mismatch" in str(err):
            hint = (f" (--classes gives {len(classes)} classes: are they the classes the file was "
                    "trained with?)")
        raise UsageError(f"cannot load {args.network}: {err}{hint}") from None

    jsonl_path = os.path.join(args.out_dir, "detections.jsonl")
    try:
        os.makedirs(args.out_dir, exist_ok=True)
        jsonl = open(jsonl_path, "w", encoding="utf-8")
    except OSError as err:
        raise UsageError(f"cannot write into --out-dir {args.out_dir}: {err.strerror or err}") from None
    try:
        return _detect_all(args, images, detector, preprocess, jsonl, jsonl_path, warn)
    except OSError as err:
        raise UsageError(f"cannot write an output into {args.out_dir}: {err}") from None
    finally:
        jsonl.close()


def _detect_all(args, images, detector, preprocess, jsonl, jsonl_path, warn):
    from tqdm import tqdm

    from gluon_ssd import predict, vis
    from gluon_ssd.data.custom import BadImageError, read_image

    class_names = detector.classes
    outputs = Outputs(args.out_dir)
    show = Shower(args.show, warn)
    unreadable: list[str] = []
    done = {"images": 0, "frames": 0, "detections": 0}

    def readable_images():
        for path in images:
            try:
                yield path, read_image(path)
            except BadImageError as err:
                hint = " (a video? pass it with --video)" if path.lower().endswith(VIDEO_EXTS) else ""
                warn(f"skipped: {err}{hint}")
                unreadable.append(path)

    def emit(name, det, out_path, wait_ms):
        rec = predict.detection_record(name, det, class_names)
        rec["annotated"] = out_path
        drawn = vis.draw_detections(_as_numpy(det.image), det.boxes, det.class_ids, det.scores,
                                    class_names)
        vis.save_image(out_path, drawn)
        jsonl.write(json.dumps(rec) + "\n")
        jsonl.flush()
        done["detections"] += len(rec["detections"])
        tqdm.write(summary_line(name, rec))
        show(drawn, wait_ms)

    if images:
        bar = tqdm(total=len(images), unit="img", disable=len(images) < 10, file=sys.stderr)
        for det in predict.detect_images(detector, readable_images(), preprocess, args.batch_size,
                                         args.thresh):
            emit(det.key, det, outputs.image_path(det.key), 0)
            done["images"] += 1
            bar.update(1)
        bar.close()
    for video in args.video:
        frames = _video_frames(video, args.every, warn)
        if frames is None:
            unreadable.append(video)
            continue
        count, frame_iter = frames
        stem = os.path.splitext(os.path.basename(video))[0]
        frame_dir = os.path.join(args.out_dir, f"{stem}_frames")
        n = 2
        while frame_dir in outputs.used:
            frame_dir = os.path.join(args.out_dir, f"{stem}_{n}_frames")
            n += 1
        outputs.used.add(frame_dir)
        os.makedirs(frame_dir, exist_ok=True)
        bar = tqdm(total=count, unit="frame", desc=os.path.basename(video), file=sys.stderr,
                   disable=count is not None and count < 10)
        before = done["frames"]
        for det in predict.detect_images(detector, frame_iter, preprocess, args.batch_size,
                                         args.thresh):
            emit(f"{video}#frame={det.key}", det, os.path.join(frame_dir, f"frame_{det.key:06d}.png"), 1)
            done["frames"] += 1
            bar.update(1)
        bar.close()
        if done["frames"] == before:
            warn(f"skipped: no frame could be decoded from video {video}")
            unreadable.append(video)

    processed = done["images"] + done["frames"]
    if unreadable:
        print(f"{len(unreadable)} input(s) could not be read: {', '.join(unreadable)}", file=sys.stderr)
    if processed == 0:
        print(f"error: no image or frame could be read, nothing was detected (outputs in {args.out_dir})",
              file=sys.stderr)
        return EXIT_NOTHING_READ
    parts = []
    if done["images"]:
        parts.append(f"{done['images']} annotated image(s)")
    if done["frames"]:
        parts.append(f"{done['frames']} annotated video frame(s)")
    print(f"{done['detections']} detection(s); wrote {' and '.join(parts)} and {jsonl_path} "
          f"to {args.out_dir}")
    return 0


def _as_numpy(img):
    return img.asnumpy() if hasattr(img, "asnumpy") else img


def _video_frames(path, every, warn):
    """(number of frames to process or None, iterator of (frame index, RGB frame)); None if unreadable."""
    import cv2

    if not os.path.isfile(path):
        warn(f"skipped: video {path} does not exist")
        return None
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        warn(f"skipped: cannot open video {path} (not a video, or a codec OpenCV lacks)")
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


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
