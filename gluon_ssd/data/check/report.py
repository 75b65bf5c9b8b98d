"""The dataset checker's findings: problems, per-split counts, the report, and the collector the checks share."""
from __future__ import annotations

import collections
import dataclasses
import logging
import math
import os
import sys
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from ... import specs
from ..custom import BadImageError, read_image

logger = logging.getLogger(__package__)  # "gluon_ssd.data.check", the checker's one logger

DATASETS = ("voc", "coco", "custom")
SEVERITIES = ("fatal", "dropped", "warning")


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing the readers would refuse, drop or change.

    Attributes
    ----------
    severity : {'fatal', 'dropped', 'warning'}
    kind : str
        e.g. 'bad_image', 'malformed_annotation', 'unknown_class', 'empty_box', 'box_outside',
        'box_clipped', 'no_objects', 'duplicate_id', 'train_val_overlap', 'size_mismatch',
        'missing_image', 'missing_annotation', 'missing_split', 'missing_folder', 'no_usable_image'.
    file : str
        The file (image, XML, JSON, split file or folder) concerned.
    message : str
    split : str
        The split it was found in ('' for the whole dataset).
    """

    severity: str
    kind: str
    file: str
    message: str
    split: str = ""


@dataclasses.dataclass
class SplitReport:
    """Counts of one split: ``listed`` images, ``usable`` ones (what training reads), ``objects`` per class
    and ``difficult`` (VOC) or crowd-flagged (COCO: training keeps crowd boxes, as GluonCV) among them."""

    name: str
    role: str
    listed: int = 0
    usable: int = 0
    objects: dict = dataclasses.field(default_factory=dict)
    difficult: int = 0


@dataclasses.dataclass
class CheckReport:
    """What :func:`check_dataset` found.

    Attributes
    ----------
    box_sizes : np.ndarray
        (M,) float64 ``sqrt(w * h)`` of every object training sees, in input pixels at ``data_shape``.
    anchor_sizes : tuple of float
        Distinct anchor sizes ``sqrt(w * h)`` of ``model_name``, ascending.
    plot_path, report_path : str or None
        The files written (``out_dir`` given).
    """

    dataset: str
    root: str
    classes: tuple
    model_name: str
    data_shape: int
    splits: list = dataclasses.field(default_factory=list)
    problems: list = dataclasses.field(default_factory=list)
    box_sizes: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    anchor_sizes: tuple = ()
    plot_path: str | None = None
    report_path: str | None = None

    @property
    def ok(self) -> bool:
        """True when training would work: no fatal problem."""
        return not any(p.severity == "fatal" for p in self.problems)

    @property
    def objects(self) -> dict:
        """Objects per class over all splits, in class order."""
        total = collections.Counter()
        for split in self.splits:
            total.update(split.objects)
        return {c: int(total.get(c, 0)) for c in self.classes}

    @property
    def smallest_anchor(self) -> float:
        return min(self.anchor_sizes) if self.anchor_sizes else math.nan

    @property
    def below_smallest_anchor(self) -> int:
        """Objects smaller than the smallest anchor."""
        return int((self.box_sizes < self.smallest_anchor).sum())

    def find(self, kind: str | None = None, severity: str | None = None) -> list:
        """The problems of one kind and/or severity."""
        return [p for p in self.problems if (kind is None or p.kind == kind)
                and (severity is None or p.severity == severity)]

    def to_dict(self) -> dict:
        """A JSON-able summary (every problem included)."""
        sizes = self.box_sizes
        return {
            "dataset": self.dataset, "root": self.root, "ok": self.ok, "model_name": self.model_name,
            "data_shape": self.data_shape, "classes": list(self.classes), "objects": self.objects,
            "splits": [dataclasses.asdict(s) for s in self.splits],
            "box_sizes": {"count": int(sizes.size),
                          "min": float(sizes.min()) if sizes.size else None,
                          "median": float(np.median(sizes)) if sizes.size else None,
                          "max": float(sizes.max()) if sizes.size else None},
            "anchor_sizes": list(self.anchor_sizes), "below_smallest_anchor": self.below_smallest_anchor,
            "problems": [dataclasses.asdict(p) for p in self.problems],
            "plot": self.plot_path,
        }


def split_role(dataset: str, split) -> str:
    """'val' for the splits checked with the validation rules (see the module docstring), else 'train'.

    ``split`` is a VOC ``(year, name)`` pair, a COCO JSON name or a custom split name.
    """
    if dataset == "voc":
        name = split[1] if isinstance(split, (tuple, list)) else str(split).rsplit("_", 1)[-1]
        return "val" if name in ("val", "test") else "train"
    if dataset == "coco":
        return "val" if "val" in str(split).rsplit("_", 1)[-1] else "train"
    return "val" if str(split) in ("val", "test") else "train"


def anchor_sizes(model_name: str) -> tuple[float, ...]:
    """Distinct anchor sizes ``sqrt(w * h)`` (input pixels) over all layers of a zoo model, ascending."""
    spec = specs.MODEL_SPECS[model_name]
    out = set()
    for k in range(len(spec.steps)):
        shapes = specs.anchor_shapes((spec.sizes[k], spec.sizes[k + 1]), spec.ratios[k], k, spec.anchor_kind)
        out.update(round(float(s), 6) for s in np.sqrt(shapes[:, 0] * shapes[:, 1]))
    return tuple(sorted(out))


# ---------------------------------------------------------------------------------------------------------
class Checker:
    """Collects problems, counts and box sizes; one per :func:`check_dataset` call."""

    def __init__(self, report: CheckReport, data_shape: int, progress: bool):
        self.report = report
        self.data_shape = data_shape
        self.progress = progress
        self.sizes: list[np.ndarray] = []
        self.decoded: dict[str, tuple[str | None, tuple[int, int] | None]] = {}
        self.used_by_role: dict[str, set] = {"train": set(), "val": set()}
        self.seen: set[Problem] = set()

    def add(self, severity, kind, file, message, split=""):
        problem = Problem(severity, kind, os.fspath(file), message, split)
        if problem in self.seen:  # an image id listed twice is checked twice
            return
        self.seen.add(problem)
        self.report.problems.append(problem)
        logger.debug("%s %s: %s", severity, kind, message)

    def unusable(self, role):
        """Severity of an item the reader cannot use: validation raises, training drops it."""
        return "fatal" if role == "val" else "dropped"

    def decode_all(self, paths: Sequence[str]):
        """Decode the images (once each): {path: (error message or None, (width, height) or None)}."""
        todo = [p for p in dict.fromkeys(paths) if p not in self.decoded]
        for path in tqdm(todo, desc="images", unit="img", disable=not self.progress, file=sys.stderr):
            try:
                img = read_image(path)
            except BadImageError as err:
                self.decoded[path] = (str(err), None)
                continue
            self.decoded[path] = (None, (int(img.shape[1]), int(img.shape[0])))
        return self.decoded

    def add_sizes(self, boxes: np.ndarray, image_sizes: np.ndarray):
        """Sizes at the network input of ``boxes`` (N, 4) 0-based corners in images of (N, 2) (W, H)."""
        if len(boxes):
            scale = self.data_shape / image_sizes.astype(np.float64)
            w = (boxes[:, 2] - boxes[:, 0]) * scale[:, 0]
            h = (boxes[:, 3] - boxes[:, 1]) * scale[:, 1]
            self.sizes.append(np.sqrt(w * h))

    def note_duplicates(self, ids, paths, split, listing, consequence):
        """``ids`` listed in ``listing``; ``paths[k]`` the file of ``ids[k]``."""
        for img_id, n in collections.Counter(ids).items():
            if n > 1:
                path = paths[ids.index(img_id)]
                self.add("warning", "duplicate_id", path, f"image id {img_id!r} ({path}) is listed {n} times in "
                         f"{listing}: {consequence}", split)

    def note_overlap(self):
        both = sorted(self.used_by_role["train"] & self.used_by_role["val"])
        for path in both:
            self.add("warning", "train_val_overlap", path,
                     f"image {path} is in a training split and in a validation split: the validation score "
                     "will be too optimistic")

    def finish_split(self, split: SplitReport, class_ids: np.ndarray, difficult: np.ndarray, classes):
        counts = np.bincount(class_ids, minlength=len(classes)) if len(class_ids) else np.zeros(len(classes))
        split.objects = {c: int(n) for c, n in zip(classes, counts)}
        split.difficult = int(np.count_nonzero(difficult))
        self.report.splits.append(split)
        logger.info("split %s (%s): %d of %d images usable, %d objects", split.name, split.role, split.usable,
                    split.listed, int(counts.sum()))


def object_groups(owner: np.ndarray, n: int) -> list[np.ndarray]:
    """Indices of the objects of each of ``n`` items, in object order: ``groups[i]`` for item ``i``."""
    order = np.argsort(owner, kind="stable")
    bounds = np.searchsorted(owner[order], np.arange(n + 1))
    return [order[bounds[i]:bounds[i + 1]] for i in range(n)]


EMPTY = (np.zeros(0, np.int64), np.zeros(0, np.int64))

