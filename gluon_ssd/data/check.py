"""Check a detection dataset before training on it: ``python -m gluon_ssd.data.check``.

Every image and annotation that the readers of :mod:`gluon_ssd.data` would read for training is read here
with the readers' own functions (:func:`~gluon_ssd.data.voc.read_voc_entry`,
:func:`~gluon_ssd.data.voc.voc_objects`, :func:`~gluon_ssd.data.coco.load_coco`,
:func:`~gluon_ssd.data.coco.coco_objects`, :func:`~gluon_ssd.data.custom.read_image`), and what they would
refuse, drop or silently change is reported, each problem with its file:

* ``fatal``: training stops: no usable image, a class name the dataset does not have (the readers raise on
  it), a missing split file, folder or annotation JSON, COCO categories other than the expected ones, and
  any unusable file of a validation split (validation reads with ``on_error='raise'``);
* ``dropped``: the reader leaves the item or box out and training goes on: unreadable or truncated images,
  missing or malformed XML of a training split, empty boxes (zero or negative width or height), boxes
  entirely outside the image, COCO images without usable objects (``skip_empty``);
* ``warning``: used, but probably not as meant: boxes clipped to the image, images without objects,
  image sizes that differ from the annotation's, an image id listed twice, an image in both a training and a
  validation split.

It also counts the objects per class (the ones training sees: kept boxes of usable images, difficult ones
included) and compares the object sizes with the anchors of the model that ``train_ssd.py`` would train
(:func:`gluon_ssd.specs.resolve_model_name`): an object's size is ``sqrt(w * h)`` in network-input pixels
after the fixed (not aspect-preserving) resize to ``data_shape x data_shape``, with ``w = x2 - x1`` of the
reader's label; an anchor's size is ``sqrt(w * h)`` of each anchor shape of each layer. Objects smaller than
the smallest anchor overlap every anchor little, so SSD matches them poorly or not at all; their number is
reported and a histogram against the anchor sizes is drawn (``box_sizes.png``).

Which splits, and how strictly. By default the splits ``train_ssd.py`` reads (:data:`TRAINING_SPLITS`).
Splits given by name are checked as training splits, except the validation-like names: VOC and custom
``val`` and ``test``, COCO names whose part after the last ``_`` contains ``val`` (``instances_val2017``);
those get the validation rules (every file must be usable).

Command line (:mod:`gluon_ssd.cli.check`): exit status 0 when training would work, 1 when it would fail,
2 for bad arguments.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import logging
import math
import os
import sys
from collections.abc import Sequence

import numpy as np

from .. import specs
from ..classes import COCO_CLASSES, VOC_CLASSES
from .coco import coco_objects, load_coco
from .custom import BadImageError, read_image
from .open import COCO_USE_CROWD, TRAINING_SPLITS, find_dataset_root, parse_voc_splits
from .voc import (
    AnnotationError,
    class_index,
    read_classes_file,
    read_split,
    read_voc_entry,
    voc_entry_paths,
    voc_objects,
)

__all__ = ["TRAINING_SPLITS", "Problem", "SplitReport", "CheckReport", "check_dataset", "split_role",
           "anchor_sizes", "summary_text", "main"]

logger = logging.getLogger(__name__)

DATASETS = ("voc", "coco", "custom")
SEVERITIES = ("fatal", "dropped", "warning")

_EXAMPLES_PER_KIND = 5


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
class _Checker:
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
        from tqdm import tqdm

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


def _groups(owner: np.ndarray, n: int) -> list[np.ndarray]:
    """Indices of the objects of each of ``n`` items, in object order: ``groups[i]`` for item ``i``."""
    order = np.argsort(owner, kind="stable")
    bounds = np.searchsorted(owner[order], np.arange(n + 1))
    return [order[bounds[i]:bounds[i + 1]] for i in range(n)]


_EMPTY = (np.zeros(0, np.int64), np.zeros(0, np.int64))


# --------------------------------------------------------------------------------------------------- VOC
def _read_voc_split(ck: _Checker, split: SplitReport, folder: str, name: str, image_ext: str) -> list:
    """The items of one split that parse: [(image, xml, VOCAnnotation)]."""
    label, role = split.name, split.role
    if not os.path.isdir(folder):
        parent = os.path.dirname(folder) or "."
        have = sorted(d for d in os.listdir(parent) if os.path.isdir(os.path.join(parent, d)))
        ck.add("fatal", "missing_folder", folder, f"{folder} is not a folder (split {label}); folders in "
               f"{parent}: {have}", label)
        return []
    try:
        ids = read_split(folder, name)
    except FileNotFoundError as err:
        ck.add("fatal", "missing_split", os.path.join(folder, "ImageSets", "Main", f"{name}.txt"), str(err), label)
        return []
    split.listed = len(ids)
    ck.note_duplicates(ids, [voc_entry_paths(folder, i, image_ext)[1] for i in ids], label,
                       os.path.join(folder, "ImageSets", "Main", f"{name}.txt"),
                       "every listing is read, so the image weighs that many times in training and scoring")
    items = []
    for img_id in ids:
        img, xml = voc_entry_paths(folder, img_id, image_ext)
        try:
            items.append((img, xml, read_voc_entry(img, xml, img_id)))
        except AnnotationError as err:
            kind = "missing_annotation" if not os.path.isfile(xml) else "malformed_annotation"
            ck.add(ck.unusable(role), kind, xml, str(err), label)
        except BadImageError as err:
            kind = "missing_image" if not os.path.isfile(img) else "bad_image"
            ck.add(ck.unusable(role), kind, img, str(err), label)
    return items


def _check_voc_items(ck: _Checker, split: SplitReport, items: list, index: dict, classes: tuple):
    """Objects and images of the parsed items of one split: (kept class ids, kept difficult flags)."""
    label, role = split.name, split.role
    anns = [a for _, _, a in items]
    obj = voc_objects(anns, index)
    decoded = ck.decode_all([img for img, _, _ in items])
    usable = np.zeros(len(items), bool)
    for i, ((img, xml, ann), mine) in enumerate(zip(items, _groups(obj.owner, len(items)))):
        cls = obj.cls[mine]
        unknown = sorted({obj.names[j] for j in mine[cls < 0]})
        if unknown:
            ck.add("fatal", "unknown_class", xml,
                   f"{xml} has objects of class {unknown}, which is not among the {len(classes)} classes "
                   f"{classes[:20]}: fix the name or add it to the classes", label)
        known = mine[cls >= 0]
        raw = obj.boxes[known[~obj.valid[known]]]
        empty = (raw[:, 2] <= raw[:, 0]) | (raw[:, 3] <= raw[:, 1])
        for kind, boxes, why in (("empty_box", raw[empty], "have zero or negative width or height"),
                                 ("box_outside", raw[~empty], "lie entirely outside the image")):
            if len(boxes):
                ck.add("dropped", kind, xml, f"{xml}: {len(boxes)} box(es) {(boxes + 1).tolist()} (xmin, ymin, "
                       f"xmax, ymax) {why} ({ann.width}x{ann.height}) and are dropped", label)
        moved = obj.boxes[known[obj.moved[known]]]
        if len(moved):
            ck.add("warning", "box_clipped", xml, f"{xml}: {len(moved)} box(es) {(moved + 1).tolist()} reach "
                   f"outside the {ann.width}x{ann.height} image and are clipped to it", label)
        error, size = decoded[img]
        if error is not None:
            ck.add(ck.unusable(role), "bad_image", img, error, label)
            continue
        usable[i] = True
        if size != (ann.width, ann.height):
            ck.add("warning", "size_mismatch", img, f"image {img} is {size[0]}x{size[1]} but {xml} says "
                   f"{ann.width}x{ann.height}: its boxes may be wrong", label)
        if not obj.kept[mine].any():
            what = "has no <object>" if not ann.names else f"has none of its {len(ann.names)} objects left"
            ck.add("warning", "no_objects", xml, f"{xml} {what}: image {img} trains as background only", label)
    split.usable = int(usable.sum())
    ck.used_by_role[role].update(img for (img, _, _), u in zip(items, usable) if u)
    keep = obj.kept & usable[obj.owner]
    sizes = np.array([(a.width, a.height) for a in anns], dtype=np.float64).reshape(-1, 2)
    ck.add_sizes(obj.clipped[keep], sizes[obj.owner[keep]])
    return obj.cls[keep], obj.difficult[keep]


def _check_voc_like(ck: _Checker, entries, classes, image_ext=".jpg"):
    """entries: (label, role, folder, split name); ``classes`` None: every name the XMLs use, sorted."""
    read = []
    for label, role, folder, name in entries:
        split = SplitReport(label, role)
        read.append((split, _read_voc_split(ck, split, folder, name, image_ext)))
    if classes is None:
        classes = sorted({n for _, items in read for _, _, a in items for n in a.names})
    classes = tuple(classes)
    index = class_index(classes)
    ck.report.classes = classes
    for split, items in read:
        cls, difficult = _check_voc_items(ck, split, items, index, classes) if items else _EMPTY
        ck.finish_split(split, cls, difficult, classes)


# -------------------------------------------------------------------------------------------------- COCO
def _check_coco_split(ck: _Checker, split: SplitReport, json_path: str, folder: str, state: dict):
    """Everything of one COCO JSON: (kept class ids, kept crowd flags)."""
    label, role = split.name, split.role
    try:
        coco = load_coco(json_path)
    except FileNotFoundError as err:
        ck.add("fatal", "missing_annotation", json_path, str(err), label)
        return _EMPTY
    except ValueError as err:
        ck.add("fatal", "malformed_annotation", json_path, str(err), label)
        return _EMPTY
    cat_ids = list(coco.getCatIds())
    names = tuple(c["name"] for c in coco.loadCats(cat_ids))
    if names != COCO_CLASSES:
        ck.add("fatal", "wrong_categories", json_path,
               f"the categories of {json_path} {names[:5]}... ({len(names)}) are not COCO's 80 classes "
               f"{COCO_CLASSES[:5]}...: the COCO reader refuses the file", label)
        return _EMPTY
    mapping = {int(c): i for i, c in enumerate(cat_ids)}
    first = state.setdefault("first", (json_path, mapping))
    if first[1] != mapping:
        ck.add("fatal", "wrong_categories", json_path,
               f"{json_path} numbers its categories differently from {first[0]}: read them apart", label)
        return _EMPTY
    raw_ids = [im.get("id") for im in coco.dataset.get("images", [])]
    image_ids = sorted(coco.getImgIds())
    split.listed = len(image_ids)
    if not os.path.isdir(folder):
        guess = os.path.join(os.path.dirname(folder), "images", os.path.basename(folder))
        hint = f"; {guess} exists: pass it as the image folder (--image-dir)" if os.path.isdir(guess) else ""
        ck.add("fatal", "missing_folder", folder, f"image folder {folder} for {json_path} does not exist{hint}",
               label)
        return _EMPTY
    ck.note_duplicates(raw_ids, [json_path] * len(raw_ids), label, f"the images of {json_path}",
                       "pycocotools keeps only the last of those records (its file name and size)")
    if not image_ids:
        return _EMPTY
    entries = [coco.imgs[i] for i in image_ids]
    paths = [os.path.join(folder, e["file_name"]) for e in entries]
    wh = np.array([(e["width"], e["height"]) for e in entries], dtype=np.float64)
    anns = coco.dataset.get("annotations") or []
    obj = coco_objects(coco, image_ids, mapping, use_crowd=COCO_USE_CROWD) if anns else None
    kept_per_image = np.zeros(len(image_ids), np.int64)
    if obj is not None:
        orphans = [a.get("id") for a, k in zip(anns, obj.known_image) if not k]
        if orphans:
            ck.add("dropped", "orphan_annotation", json_path, f"{json_path}: {len(orphans)} annotation(s) "
                   f"(ids {orphans[:10]}) name an image id that is not in its images list", label)
        unknown = obj.known_image & (obj.cat < 0)
        invalid = obj.selected & ~obj.valid
        empty = invalid & ((obj.corners[:, 2] <= obj.corners[:, 0]) | (obj.corners[:, 3] <= obj.corners[:, 1])
                           | (obj.area <= 0))
        checks = (("dropped", "unknown_class", unknown, "have category ids not in its categories"),
                  ("dropped", "empty_box", empty, "have zero area or zero or negative width or height"),
                  ("dropped", "box_outside", invalid & ~empty, "lie entirely outside the image"),
                  ("warning", "box_clipped", obj.moved, "reach outside the image and are clipped to it"))
        flagged = unknown | invalid | obj.moved
        groups = _groups(np.where(flagged, obj.owner, len(image_ids)), len(image_ids))
        for i in np.flatnonzero([len(g) for g in groups]):
            for severity, kind, mask, why in checks:
                sel = groups[i][mask[groups[i]]]
                if len(sel):
                    ck.add(severity, kind, paths[i], f"{json_path}: annotation(s) {[anns[j].get('id') for j in sel]}"
                           f" of image {paths[i]} ({int(wh[i, 0])}x{int(wh[i, 1])}) {why}", label)
        kept_per_image = np.bincount(obj.owner[obj.kept], minlength=len(image_ids))
    skip_empty = role == "train"
    used = np.zeros(len(image_ids), bool)
    for i, path in enumerate(paths):
        if kept_per_image[i] == 0:
            what = "is left out (skip_empty)" if skip_empty else "is evaluated as background only"
            ck.add("dropped" if skip_empty else "warning", "no_objects", path,
                   f"image {path} (id {image_ids[i]}) has no usable object in {json_path} and {what}", label)
            if skip_empty:
                continue
        if not os.path.isfile(path):
            ck.add(ck.unusable(role), "missing_image", path,
                   f"image {path} (id {image_ids[i]}) listed in {json_path} does not exist", label)
            continue
        used[i] = True
    decoded = ck.decode_all([p for p, u in zip(paths, used) if u])
    for i in np.flatnonzero(used):
        error, size = decoded[paths[i]]
        if error is not None:
            ck.add(ck.unusable(role), "bad_image", paths[i], error, label)
            used[i] = False
        elif size != (int(wh[i, 0]), int(wh[i, 1])):
            ck.add("warning", "size_mismatch", paths[i], f"image {paths[i]} is {size[0]}x{size[1]} but "
                   f"{json_path} says {int(wh[i, 0])}x{int(wh[i, 1])}: its boxes may be wrong", label)
    split.usable = int(used.sum())
    ck.used_by_role[role].update(p for p, u in zip(paths, used) if u)
    if obj is None:
        return _EMPTY
    keep = obj.kept & used[obj.owner]
    ck.add_sizes(obj.clipped[keep], wh[obj.owner[keep]])
    return obj.cat[keep], (obj.crowd[keep] != 0)


def _check_coco(ck: _Checker, entries):
    """entries: (label, role, json path, image folder)."""
    state: dict = {}
    ck.report.classes = COCO_CLASSES
    for label, role, json_path, folder in entries:
        split = SplitReport(label, role)
        cls, crowd = _check_coco_split(ck, split, json_path, folder, state)
        ck.finish_split(split, cls, crowd, COCO_CLASSES)


# ------------------------------------------------------------------------------------------------ driver
def _resolve_model(network: str, data_shape: int, dataset: str) -> str:
    if network in specs.MODEL_SPECS:
        return network
    return specs.resolve_model_name(network, data_shape, dataset)


def check_dataset(
    dataset: str,
    root: str,
    splits: Sequence | None = None,
    data_shape: int = 512,
    network: str = "mobilenet1.0",
    classes_file: str = "classes.txt",
    image_dir: str | Sequence[str] | None = None,
    out_dir: str | None = None,
    progress: bool = False,
) -> CheckReport:
    """Read every image and annotation training would read and report what the readers would do with them.

    Parameters
    ----------
    dataset : {'voc', 'coco', 'custom'}
    root : str
        voc: a folder holding ``VOC<year>/`` folders (the VOCdevkit, GluonCV's ``~/.mxnet/datasets/voc``) or
        one holding ``VOCdevkit/``; coco: the folder holding ``annotations/`` (or ``coco/annotations/``);
        custom: a VOC-layout folder with ``JPEGImages/``, ``Annotations/``, ``ImageSets/Main/`` and the
        classes file.
    splits : sequence, optional
        voc: ``'2007_trainval'`` strings or ``(2007, 'trainval')`` pairs; coco: JSON names
        (``'instances_train2017'``); custom: split names. Default: :data:`TRAINING_SPLITS`.
    data_shape : int
        Network input size: objects are measured after the resize to ``data_shape x data_shape``.
    network : str
        Backbone as ``train_ssd.py --network`` takes it (or a zoo model name); with ``data_shape`` and
        ``dataset`` it names the model whose anchors are compared.
    classes_file : str
        custom: the class names file, relative to ``root`` (or absolute).
    image_dir : str or sequence of str, optional
        coco: the image folder of each split (relative to ``root`` or absolute), one for all or one per
        split; default the split name's last part under ``root`` (``instances_val2017`` -> ``val2017``).
    out_dir : str, optional
        Where to write ``box_sizes.png`` and ``dataset_check.json``; nothing is written when None.
    progress : bool
        A progress bar over the images (stderr).

    Returns
    -------
    CheckReport

    Raises
    ------
    ValueError
        A bad argument: unknown dataset kind, network, data shape, split syntax, image_dir count; and
        (:class:`~gluon_ssd.data.open.DatasetError`) a ``root`` that holds no dataset of the kind, found as
        training and evaluation find it (:func:`~gluon_ssd.data.open.find_dataset_root`; the message gives the
        layout).
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
    if int(data_shape) != data_shape or data_shape < 1:
        raise ValueError(f"data_shape must be a positive integer (the network input size), got {data_shape!r}")
    model_name = _resolve_model(network, int(data_shape), dataset)
    root = find_dataset_root(dataset, root)  # the root that training and evaluation would read
    if not os.path.isdir(root):
        raise ValueError(f"--dataset-root {root}: the checker reads VOC-layout folders; a COCO JSON is checked "
                         "with --dataset coco")
    report = CheckReport(dataset, root, (), model_name, int(data_shape), anchor_sizes=anchor_sizes(model_name))
    ck = _Checker(report, int(data_shape), progress)
    if dataset == "voc":
        if splits:
            roles = [(split_role("voc", p), p) for p in parse_voc_splits(splits)]
        else:
            roles = [(r, p) for r, ps in TRAINING_SPLITS["voc"].items() for p in ps]
        entries = [(f"{y}_{n}", r, os.path.join(root, f"VOC{y}" if isinstance(y, int) else str(y)), n)
                   for r, (y, n) in roles]
        _check_voc_like(ck, entries, VOC_CLASSES)
    elif dataset == "custom":
        if splits:
            roles = [(split_role("custom", s), str(s)) for s in splits]
        else:
            roles = [("train", s) for s in TRAINING_SPLITS["custom"]["train"]]
            roles += [("val", s) for s in TRAINING_SPLITS["custom"]["val"]
                      if os.path.isfile(os.path.join(root, "ImageSets", "Main", f"{s}.txt"))]
        classes_path = os.path.join(root, classes_file)
        try:
            classes = read_classes_file(classes_path)
            class_index(classes)
        except (FileNotFoundError, ValueError) as err:
            kind = "missing_classes" if not os.path.isfile(classes_path) else "bad_classes"
            ck.add("fatal", kind, classes_path, f"{err} (the classes counted are the names the XMLs use)")
            classes = None
        _check_voc_like(ck, [(s, r, root, s) for r, s in roles], classes)
    else:
        if splits:
            roles = [(split_role("coco", s), str(s)) for s in splits]
        else:
            roles = [(r, s) for r, ss in TRAINING_SPLITS["coco"].items() for s in ss]
        names = [s for _, s in roles]
        if image_dir is None:
            dirs = [s.rsplit("_", 1)[-1] for s in names]
        else:
            dirs = [os.fspath(image_dir)] if isinstance(image_dir, (str, os.PathLike)) else list(image_dir)
            dirs = dirs * len(names) if len(dirs) == 1 else dirs
            if len(dirs) != len(names):
                raise ValueError(f"give one image folder for all splits or one per split: {len(dirs)} for "
                                 f"{len(names)} splits {names}")
        _check_coco(ck, [(s, r, os.path.join(root, "annotations", f"{s}.json"), os.path.join(root, d))
                         for (r, s), d in zip(roles, dirs)])
    ck.note_overlap()
    for role in ("train", "val"):
        mine = [s for s in report.splits if s.role == role]
        if mine and not any(s.usable for s in mine):
            ck.add("fatal", "no_usable_image", report.root,
                   f"no usable image in the {role} split(s) {[s.name for s in mine]}: "
                   f"{sum(s.listed for s in mine)} listed, none readable with its annotation")
    report.box_sizes = np.concatenate(ck.sizes) if ck.sizes else np.zeros(0)
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        report.plot_path = plot_box_sizes(report, os.path.join(out_dir, "box_sizes.png"))
        report.report_path = os.path.join(out_dir, "dataset_check.json")
        from ..fileio import atomic_write

        with atomic_write(report.report_path, "w") as f:
            json.dump(report.to_dict(), f, indent=1)
    n_fatal = len(report.find(severity="fatal"))
    logger.info("checked %s at %s: %d problem(s), %d fatal; %d of %d objects smaller than the smallest anchor",
                dataset, report.root, len(report.problems), n_fatal, report.below_smallest_anchor,
                report.box_sizes.size)
    return report


def plot_box_sizes(report: CheckReport, path: str) -> str:
    """Histogram of the objects' sizes against the anchor sizes, as a PNG (matplotlib's Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..fileio import atomic_write

    sizes, anchors = report.box_sizes, np.asarray(report.anchor_sizes, dtype=np.float64)
    fig = Figure(figsize=(8, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    positive = sizes[sizes > 0]
    lo = max(min(positive.min() if positive.size else 1.0, anchors.min()) / 1.5, 0.5)
    hi = max(positive.max() if positive.size else 1.0, anchors.max()) * 1.5
    bins = np.geomspace(lo, hi, 50)
    ax.hist(positive, bins=bins, color="tab:blue", alpha=0.8, label=f"objects ({sizes.size})")
    ax.axvspan(lo, report.smallest_anchor, color="tab:red", alpha=0.08)
    for k, a in enumerate(anchors):
        ax.axvline(a, color="tab:red" if k == 0 else "tab:gray", ls="--", lw=1,
                   label="anchor sizes" if k == 1 else ("smallest anchor" if k == 0 else None))
    ax.set_xscale("log")
    ax.set_xlabel(f"object size sqrt(w*h), pixels at the {report.data_shape}x{report.data_shape} input")
    ax.set_ylabel("objects")
    share = report.below_smallest_anchor / sizes.size if sizes.size else 0.0
    ax.set_title(f"{report.dataset} dataset {report.root}\n{report.below_smallest_anchor} of {sizes.size} "
                 f"objects ({share:.1%}) are smaller than the smallest anchor ({report.smallest_anchor:.1f} px) "
                 f"of {report.model_name}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")
    return path


# ---------------------------------------------------------------------------------------------- summary
def summary_text(report: CheckReport) -> str:
    """The report for people: splits, objects per class, object sizes against the anchors, the problems by
    severity and kind (every fatal one, a few examples of the others), and whether training would work."""
    lines = []

    def line(text=""):
        lines.append(text)

    line(f"dataset {report.dataset} at {report.root}; anchors of {report.model_name} at "
         f"{report.data_shape}x{report.data_shape}")
    line()
    line(f"{'split':<22}{'role':<7}{'listed':>8}{'usable':>8}{'objects':>9}{'difficult':>10}")
    for s in report.splits:
        line(f"{s.name:<22}{s.role:<7}{s.listed:>8}{s.usable:>8}{sum(s.objects.values()):>9}{s.difficult:>10}")
    line()
    width = max([len(c) for c in report.classes] + [5]) + 2
    counts = report.objects
    line(f"{'class':<{width}}{'objects':>8}")
    for c, n in counts.items():
        if n:
            line(f"{c:<{width}}{n:>8}")
    none = [c for c, n in counts.items() if not n]
    if none:
        line(f"no objects of {len(none)} class(es): {', '.join(none)}")
    line()
    sizes = report.box_sizes
    if sizes.size:
        line(f"object sizes sqrt(w*h) at {report.data_shape}x{report.data_shape}: min {sizes.min():.1f}, median "
             f"{np.median(sizes):.1f}, max {sizes.max():.1f} px; anchor sizes "
             f"{', '.join(f'{a:.1f}' for a in report.anchor_sizes)}")
        line(f"{report.below_smallest_anchor} of {sizes.size} objects ({report.below_smallest_anchor / sizes.size:.1%})"
             f" are smaller than the smallest anchor ({report.smallest_anchor:.1f} px): SSD matches them poorly")
    if report.plot_path:
        line(f"plot: {report.plot_path}; full report: {report.report_path}")
    line()
    by_kind = collections.defaultdict(list)
    for p in report.problems:
        by_kind[(SEVERITIES.index(p.severity), p.severity, p.kind)].append(p)
    if by_kind:
        line(f"{'severity':<9}{'problem':<22}{'count':>7}  files")
    for (_, severity, kind), items in sorted(by_kind.items()):
        line(f"{severity:<9}{kind:<22}{len(items):>7}")
        shown = items if severity == "fatal" else items[:_EXAMPLES_PER_KIND]
        for p in shown:
            line(f"    {p.message}")
        if len(items) > len(shown):
            line(f"    ... and {len(items) - len(shown)} more (see the full report)")
    line()
    if report.ok:
        line("training would work (exit status 0)")
    else:
        line(f"training would fail: {len(report.find(severity='fatal'))} fatal problem(s) (exit status 1)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line, :func:`gluon_ssd.cli.check.main` (here for ``python -m gluon_ssd.data.check`` and the
    ``gluon-ssd-check`` entry point)."""
    from ..cli.check import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
