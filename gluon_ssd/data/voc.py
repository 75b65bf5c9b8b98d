"""Pascal VOC readers: ``VOCDetection`` (the VOCdevkit layout) and ``CustomVOCDetection`` (one folder).

Conventions, as GluonCV's ``VOCDetection``: XML coordinates are 1-based inclusive pixels and the reader
subtracts 1; ``difficult`` objects are kept, flagged in label column 5 (a missing or non-integer
``<difficult>`` reads as 0); class names are compared stripped and lower-cased; image ``i`` of split
``(year, name)`` is ``VOC{year}/JPEGImages/{id}.jpg`` with its XML in ``VOC{year}/Annotations``.

Where we differ from GluonCV, on purpose:

* An object whose class is not in ``classes`` is an error naming the XML and the name
  (``unknown_classes='error'``, the default unless a subclass declares its own ``CLASSES``; raised
  whatever ``on_error`` says, since it means the classes are set up wrong); ``'skip'`` ignores such
  objects silently (what GluonCV always does, and the default for a ``VOCDetection`` subclass that
  declares ``CLASSES`` as GluonCV's tutorial does), which is what you want when training on a subset
  of the classes.
* A box reaching outside the image is clipped to ``[0, W-1] x [0, H-1]``; a box that is empty after
  clipping (``x2 <= x1`` or ``y2 <= y1``, also inverted or fully outside boxes) is dropped. Both log a
  warning naming the XML. (GluonCV drops every box that is not inside the image.)
* An image without objects gets a (0, 6) label (GluonCV returns an empty 1-D array, which its crop
  augmentation cannot handle).
* An item whose XML or image is missing or whose XML is malformed is dropped at construction with a
  warning (``on_error='skip'``, listed in ``dataset.dropped``) or raises (``on_error='raise'``). Images
  that exist but cannot be decoded are handled at load time (see :mod:`gluon_ssd.data.custom`).
* A missing ``<size>`` (or a zero width/height, as some annotation tools write) is read from the image
  header instead.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence

from ..classes import VOC_CLASSES
from .custom import BadImageError, DetectionDataset
from .voc_xml import (  # noqa: F401  (the file-format names, re-exported: gluon_ssd.data.voc's API)
    AnnotationError,
    UnknownClassError,
    VOCAnnotation,
    VOCObjects,
    class_index,
    normalise_name,
    parse_voc_xml,
    read_classes_file,
    read_split,
    read_voc_entry,
    voc_entry_paths,
    voc_labels,
    voc_objects,
)

__all__ = [
    "VOC_CLASSES", "VOCDetection", "CustomVOCDetection", "parse_voc_xml", "voc_labels", "AnnotationError",
    "UnknownClassError", "read_classes_file", "find_voc_root",
]

logger = logging.getLogger(__name__)

_UNKNOWN = ("error", "skip")
_MAX_DROP_WARNINGS = 10


class _VOCLayout(DetectionDataset):
    """Shared construction of the VOC readers from (folder, image id) entries."""

    def _build(self, entries, classes, unknown_classes, on_error, transform, image_ext, index=None):
        if unknown_classes not in _UNKNOWN:
            raise ValueError(f"unknown_classes must be one of {_UNKNOWN}, got {unknown_classes!r}")
        if on_error not in ("skip", "raise"):
            raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
        classes = tuple(str(c).strip() for c in classes)
        index = class_index(classes) if index is None else index
        paths, anns, xmls, ids = [], [], [], []
        self.dropped: list[tuple[str, str]] = []
        for folder, img_id in entries:
            img, xml = voc_entry_paths(folder, img_id, image_ext)
            try:
                ann = read_voc_entry(img, xml, img_id)
            except (AnnotationError, BadImageError) as e:
                if on_error == "raise":
                    raise
                if len(self.dropped) < _MAX_DROP_WARNINGS:
                    logger.warning("dropping item %r: %s", img_id, e)
                self.dropped.append((img_id, str(e)))
                continue
            paths.append(img)
            anns.append(ann)
            xmls.append(xml)
            ids.append(img_id)
        if self.dropped:
            logger.warning(
                "dropped %d of %d items with missing or unusable files (see dataset.dropped); "
                "pass on_error='raise' to stop at the first", len(self.dropped), len(entries),
            )
        if not paths:
            raise ValueError(
                f"no usable images in {sorted({f for f, _ in entries}) or 'the split files'}: "
                f"{len(entries)} listed, {len(self.dropped)} dropped; check the split files and folders"
            )
        labels = voc_labels(anns, index, xmls, unknown_classes)
        sizes = [(a.width, a.height) for a in anns]
        DetectionDataset.__init__(
            self, paths, labels, classes, image_sizes=sizes, image_ids=ids, transform=transform,
            on_error=on_error,
        )


def declared_classes(dataset, base: type) -> tuple[str, ...]:
    """The classes a GluonCV-style subclass of ``base`` declares for ``dataset``: its own ``classes`` property
    where a subclass overrides it (GluonCV reads the classes through that property), else ``type(dataset).CLASSES``.

    Raises
    ------
    ValueError
        The declared classes are a string or empty.
    """
    declared = type(dataset).CLASSES
    for klass in type(dataset).__mro__:
        if klass is base:
            break
        if "classes" in vars(klass):
            attr = vars(klass)["classes"]  # a property, or a plain class attribute
            declared = attr.__get__(dataset, type(dataset)) if hasattr(attr, "__get__") else attr
            break
    if isinstance(declared, (str, bytes)) or not len(declared):
        raise ValueError(
            f"{type(dataset).__name__}.CLASSES must be a non-empty sequence of class names, got {declared!r}; "
            "write e.g. CLASSES = ['person', 'dog']"
        )
    return tuple(str(c) for c in declared)


def _index_map(classes: Sequence[str], index_map) -> dict[str, int]:
    """{normalised name: label index} for ``classes``: their order, or GluonCV's ``index_map`` (name -> index)."""
    in_order = class_index(classes)  # also refuses duplicate names
    if index_map is None:
        return in_order
    if not isinstance(index_map, dict):
        raise TypeError(f"index_map must be a dict of class name -> label index, got {type(index_map).__name__}")
    given = {normalise_name(k): v for k, v in index_map.items()}
    missing = [c for c in classes if normalise_name(c) not in given]
    if missing:
        raise ValueError(f"index_map {index_map} has no index for the classes {missing}; give every class of "
                         f"{tuple(classes)} an index, or leave index_map out for their order")
    out = {}
    for c in classes:
        value = given[normalise_name(c)]
        if isinstance(value, bool) or int(value) != value or value < 0:
            raise ValueError(f"index_map gives class {c!r} the index {value!r}; label indices are integers >= 0")
        out[normalise_name(c)] = int(value)
    return out


class VOCDetection(_VOCLayout):
    """Pascal VOC detection data in the VOCdevkit layout; GluonCV's ``VOCDetection`` with its signature.

    Parameters
    ----------
    root : str
        The VOCdevkit folder, holding ``VOC2007/``, ``VOC2012/``, ...
    splits : sequence of (year, name)
        ``(2007, 'test')`` reads ``root/VOC2007/ImageSets/Main/test.txt``. A string year is used as the
        folder name as is.
    transform : callable, optional
        ``transform(image, label)``.
    index_map : dict, optional
        GluonCV's option: class name -> label index (default: the position in the classes), e.g. to swap
        the order of the labels. Every class must have an index.
    preload_label : bool
        GluonCV's option, accepted for its signature: the labels are always read at construction here
        (vectorised, a fraction of a second for VOC07+12; GluonCV reads them lazily when False).
    classes : sequence of str, optional, keyword-only
        Class names in label order. Default: the class attribute ``CLASSES`` (:data:`VOC_CLASSES`) or
        what a subclass declares, GluonCV's way (``class VOCLike(VOCDetection): CLASSES = ['person', 'dog']``,
        or a ``classes`` property).
    unknown_classes : {'error', 'skip'}, optional, keyword-only
        Objects whose class is not among the classes: raise :class:`AnnotationError` naming the file and
        class, or ignore them. Default: 'skip' when a subclass declares its classes (what GluonCV always
        does, and what a subset of the VOC classes needs), 'error' otherwise.
    on_error : {'skip', 'raise'}, keyword-only
        Bad items: see the module docstring.

    Notes
    -----
    Items are ``(image, label)``: image ``mx.nd.NDArray`` (H, W, 3) uint8 RGB (numpy without MXNet), label
    (N, 6) float32 ``[x1, y1, x2, y2, class, difficult]`` (GluonCV: float64; an image without objects
    gets (0, 6) where GluonCV gives an empty 1-D array). ``classes`` is a tuple (GluonCV returns
    ``CLASSES`` as written). The other differences from GluonCV are in the module docstring.

    Examples
    --------
    >>> ds = VOCDetection('VOCdevkit', splits=((2007, 'test'),))   # doctest: +SKIP
    >>> image, label = ds[0]     # (H, W, 3) uint8 NDArray, (N, 6) float32
    >>> class VOCLike(VOCDetection):   # GluonCV's custom-data tutorial, unchanged
    ...     CLASSES = ['person', 'dog']
    ...     def __init__(self, root, splits, transform=None, index_map=None, preload_label=True):
    ...         super().__init__(root, splits, transform, index_map, preload_label)
    """

    CLASSES = VOC_CLASSES

    def __init__(
        self,
        root: str = os.path.join("~", ".mxnet", "datasets", "voc"),
        splits: Sequence[tuple[int | str, str]] = ((2007, "trainval"), (2012, "trainval")),
        transform: Callable | None = None,
        index_map: dict | None = None,
        preload_label: bool = True,
        *,
        classes: Sequence[str] | None = None,
        unknown_classes: str | None = None,
        on_error: str = "skip",
    ):
        if transform is not None and not callable(transform):
            raise TypeError(
                f"transform must be callable, got {type(transform).__name__}; the third positional argument is "
                "transform (GluonCV's order: root, splits, transform, index_map, preload_label): pass the "
                "classes as classes=[...]"
            )
        self.root = os.path.expanduser(os.fspath(root))
        if not os.path.isdir(self.root):
            raise FileNotFoundError(
                f"VOC root {self.root} is not a folder; pass the VOCdevkit folder that holds VOC2007/ etc."
            )
        if len(splits) == 2 and isinstance(splits[1], str) and not isinstance(splits[0], (tuple, list)):
            splits = (tuple(splits),)
        self.splits = tuple((year, name) for year, name in splits)
        if classes is None:
            classes = declared_classes(self, VOCDetection)
            subclassed = classes != tuple(VOCDetection.CLASSES)
        else:
            subclassed = False
        if unknown_classes is None:
            unknown_classes = "skip" if subclassed else "error"
        self.preload_label = bool(preload_label)
        entries = []
        for year, name in self.splits:
            folder = os.path.join(self.root, f"VOC{year}" if isinstance(year, int) else str(year))
            if not os.path.isdir(folder):
                have = sorted(d for d in os.listdir(self.root) if os.path.isdir(os.path.join(self.root, d)))
                raise FileNotFoundError(f"{folder} is not a folder; folders in {self.root}: {have}")
            entries += [(folder, i) for i in read_split(folder, name)]
        names = tuple(str(c).strip() for c in classes)
        index = _index_map(names, index_map)
        self.index_map = dict(zip(names, index.values())) if index_map is None else dict(index_map)
        self._build(entries, names, unknown_classes, on_error, transform, ".jpg", index)

    def __repr__(self) -> str:
        split = ",".join(f"{y}{n}" for y, n in self.splits)
        return f"{type(self).__name__}({split}: {len(self)} images, {self.num_class} classes)"


class CustomVOCDetection(_VOCLayout):
    """VOC-format data in one folder: ``JPEGImages/``, ``Annotations/``, ``ImageSets/Main/{split}.txt``.

    Parameters
    ----------
    root : str
        The dataset folder.
    splits : str or sequence of str
        Split names, e.g. ``('train',)``.
    classes : sequence of str, optional
        Class names in label order. When not given they are read from ``root/classes_file``.
    classes_file : str
        File (relative to ``root``) with one class name per line; blank lines are ignored.
    image_ext : str
        Image file extension.
    transform, unknown_classes, on_error
        As :class:`VOCDetection`.
    """

    def __init__(
        self,
        root: str,
        splits: str | Sequence[str] = ("train",),
        classes: Sequence[str] | None = None,
        classes_file: str = "classes.txt",
        image_ext: str = ".jpg",
        transform: Callable | None = None,
        unknown_classes: str = "error",
        on_error: str = "skip",
    ):
        self.root = os.path.expanduser(os.fspath(root))
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"dataset root {self.root} is not a folder")
        self.splits = (splits,) if isinstance(splits, str) else tuple(splits)
        if classes is None:
            classes = read_classes_file(os.path.join(self.root, classes_file))
        entries = [(self.root, i) for s in self.splits for i in read_split(self.root, s)]
        self._build(entries, classes, unknown_classes, on_error, transform, image_ext)


def find_voc_root(root: str) -> str | None:
    """The folder holding the ``VOC<year>/`` folders of a dataset root, as training and evaluation look for it
    (:func:`gluon_ssd.data.open.find_dataset_root`).

    Tried in order: ``root`` itself (the VOCdevkit, or GluonCV's ``~/.mxnet/datasets/voc`` that holds
    ``VOC2007/`` directly), ``root/voc``, ``root/VOCdevkit``, ``root/voc/VOCdevkit`` (GluonCV's
    ``~/.mxnet/datasets``). Returns None when none of them holds a ``VOC<year>/`` folder; the expected
    layout is :func:`gluon_ssd.data.open.expected_layout`.
    """
    root = os.path.expanduser(os.fspath(root))
    for cand in (root, os.path.join(root, "voc"), os.path.join(root, "VOCdevkit"),
                 os.path.join(root, "voc", "VOCdevkit")):
        if os.path.isdir(cand) and any(re.fullmatch(r"VOC\d{4}", d) and os.path.isdir(os.path.join(cand, d))
                                       for d in os.listdir(cand)):
            return cand
    return None
