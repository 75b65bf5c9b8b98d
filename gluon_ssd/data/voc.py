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
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..classes import VOC_CLASSES
from .custom import BadImageError, DetectionDataset, _header_size

__all__ = [
    "VOC_CLASSES", "VOCDetection", "CustomVOCDetection", "parse_voc_xml", "voc_labels", "AnnotationError",
    "UnknownClassError", "read_classes_file", "find_voc_root",
]

logger = logging.getLogger(__name__)

_UNKNOWN = ("error", "skip")
_MAX_DROP_WARNINGS = 10


class AnnotationError(ValueError):
    """An annotation file that cannot be used (malformed, missing fields, unknown class)."""


class UnknownClassError(AnnotationError):
    """An object whose class is not among the dataset's classes: a setup error, raised even when
    ``on_error='skip'``."""


@dataclass(frozen=True)
class VOCAnnotation:
    """The content of one VOC XML.

    Attributes
    ----------
    width, height : int
        Image size from ``<size>``; 0 where the file does not state it.
    names : tuple of str
        Object class names, stripped and lower-cased, length N.
    boxes : np.ndarray
        (N, 4) float64 ``xmin, ymin, xmax, ymax`` as written (1-based pixels).
    difficult : np.ndarray
        (N,) int64.
    """

    width: int
    height: int
    names: tuple[str, ...]
    boxes: np.ndarray
    difficult: np.ndarray


def _text(elem, tag: str) -> str | None:
    child = elem.find(tag)
    return None if child is None or child.text is None else child.text.strip()


def parse_voc_xml(path: str) -> VOCAnnotation:
    """Read a VOC annotation XML.

    Parameters
    ----------
    path : str
        The XML file.

    Returns
    -------
    VOCAnnotation

    Raises
    ------
    AnnotationError
        Malformed XML, an object without a name or with a missing or non-numeric box coordinate. The
        message names the file.
    FileNotFoundError
        The file does not exist.
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise AnnotationError(f"malformed XML in {path}: {e}; fix or regenerate the annotation") from e
    width = height = 0
    size = root.find("size")
    if size is not None:
        try:
            width = int(float(_text(size, "width") or 0))
            height = int(float(_text(size, "height") or 0))
        except ValueError:
            width = height = 0
    names, coords, difficult = [], [], []
    for k, obj in enumerate(root.iter("object")):
        name = _text(obj, "name")
        if not name:
            raise AnnotationError(f"object {k} in {path} has no <name>; add the class name")
        bnd = obj.find("bndbox")
        try:
            box = [float(_text(bnd, t)) for t in ("xmin", "ymin", "xmax", "ymax")]
        except (TypeError, ValueError, AttributeError) as e:
            raise AnnotationError(
                f"object {k} ({name!r}) in {path} lacks a numeric <bndbox> xmin/ymin/xmax/ymax; fix the box"
            ) from e
        try:
            diff = int(_text(obj, "difficult") or 0)
        except ValueError:
            diff = 0
        names.append(name.lower())
        coords.append(box)
        difficult.append(diff)
    boxes = np.asarray(coords, dtype=np.float64).reshape(-1, 4)
    return VOCAnnotation(width, height, tuple(names), boxes, np.asarray(difficult, dtype=np.int64))


@dataclass(frozen=True)
class VOCObjects:
    """Every object of a list of annotations and what the reader makes of it (see :func:`voc_objects`).

    Attributes (M objects in all)
    ----------
    owner : (M,) int64, the index of the annotation holding the object.
    names : tuple of str, length M.
    cls : (M,) int64 label index, -1 for a class not in the classes.
    boxes : (M, 4) float64 corners as written minus 1 (0-based pixels).
    clipped : (M, 4) float64 ``boxes`` clipped to ``[0, W-1] x [0, H-1]``.
    valid : (M,) bool, the clipped box is not empty (``x2 > x1`` and ``y2 > y1``).
    moved : (M,) bool, a valid box that clipping changed (it reached outside the image).
    difficult : (M,) int64.
    """

    owner: np.ndarray
    names: tuple[str, ...]
    cls: np.ndarray
    boxes: np.ndarray
    clipped: np.ndarray
    valid: np.ndarray
    moved: np.ndarray
    difficult: np.ndarray

    @property
    def kept(self) -> np.ndarray:
        """(M,) bool, the objects that become label rows: a known class and a valid box."""
        return (self.cls >= 0) & self.valid


def voc_objects(anns: Sequence[VOCAnnotation], class_index: dict[str, int]) -> VOCObjects:
    """All objects of ``anns`` with their label index, clipped box and validity; vectorised over all files.

    Parameters
    ----------
    anns : sequence of VOCAnnotation, length L
        Parsed XMLs; their width and height must be positive.
    class_index : dict
        Normalised (stripped, lower-cased) class name -> label index.
    """
    counts = np.array([len(a.names) for a in anns], dtype=np.int64)
    owner = np.repeat(np.arange(len(anns)), counts)
    names = tuple(n for a in anns for n in a.names)
    cls = np.array([class_index.get(n, -1) for n in names], dtype=np.int64)
    boxes = np.concatenate([a.boxes for a in anns] + [np.zeros((0, 4))]) - 1.0
    difficult = np.concatenate([a.difficult for a in anns] + [np.zeros(0, np.int64)])
    sizes = np.array([(a.width, a.height) for a in anns], dtype=np.float64).reshape(-1, 2)
    hi = np.tile(sizes[owner] - 1, 2)
    clipped = np.clip(boxes, 0.0, hi)
    valid = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    moved = np.any(clipped != boxes, axis=1) & valid
    return VOCObjects(owner, names, cls, boxes, clipped, valid, moved, difficult)


def voc_labels(
    anns: Sequence[VOCAnnotation], class_index: dict[str, int], paths: Sequence[str], unknown_classes: str
) -> list[np.ndarray]:
    """Turn annotations into labels: 0-based, clipped, invalid boxes dropped; vectorised over all files.

    Parameters
    ----------
    anns : sequence of VOCAnnotation, length L
        Parsed XMLs; their width and height must be positive.
    class_index : dict
        Normalised (stripped, lower-cased) class name -> label index.
    paths : sequence of str, length L
        The XMLs, for messages.
    unknown_classes : {'error', 'skip'}
        What to do with an object whose class is not in ``class_index``.

    Returns
    -------
    list of np.ndarray, length L
        Each (N_i, 6) float32 ``[x1, y1, x2, y2, class, difficult]``.

    Raises
    ------
    UnknownClassError
        An object of a class not in ``class_index`` while ``unknown_classes='error'``.
    """
    obj = voc_objects(anns, class_index)
    owner, known = obj.owner, obj.cls >= 0
    if unknown_classes == "error" and not known.all():
        first = int(owner[np.argmin(known)])
        unknown = sorted({n for n, o, k in zip(obj.names, owner, known) if o == first and not k})
        raise UnknownClassError(
            f"{paths[first]} has objects of class {unknown} which is not in classes {tuple(class_index)}; "
            "fix the XML, add the name to classes, or pass unknown_classes='skip' to ignore them"
        )
    bad = known & (~obj.valid | obj.moved)
    for i in np.unique(owner[bad]):
        dropped, shifted = known & (owner == i) & ~obj.valid, known & (owner == i) & obj.moved
        logger.warning(
            "%s (image %dx%d): dropped %d empty or outside box(es) %s, clipped %d box(es) %s to the image",
            paths[i], anns[i].width, anns[i].height, int(dropped.sum()), (obj.boxes[dropped] + 1).tolist(),
            int(shifted.sum()), (obj.boxes[shifted] + 1).tolist(),
        )
    keep = obj.kept
    rows = np.concatenate([obj.clipped, obj.cls[:, None], obj.difficult[:, None]], axis=1)[keep]
    return np.split(rows.astype(np.float32), np.cumsum(np.bincount(owner[keep], minlength=len(anns)))[:-1])


def voc_entry_paths(folder: str, img_id: str, image_ext: str = ".jpg") -> tuple[str, str]:
    """(image, XML) paths of image id ``img_id`` in a VOC-layout ``folder``."""
    return (os.path.join(folder, "JPEGImages", f"{img_id}{image_ext}"),
            os.path.join(folder, "Annotations", f"{img_id}.xml"))


def read_voc_entry(img: str, xml: str, img_id: str) -> VOCAnnotation:
    """The annotation of one item of a VOC layout, its size from the image header where the XML lacks it.

    Raises
    ------
    AnnotationError
        The XML is missing or malformed (see :func:`parse_voc_xml`).
    BadImageError
        The image is missing (or its header unreadable when the size had to come from it).
    """
    if not os.path.isfile(xml):
        raise AnnotationError(f"annotation {xml} of image id {img_id!r} does not exist")
    if not os.path.isfile(img):
        raise BadImageError(f"image {img} of image id {img_id!r} does not exist")
    ann = parse_voc_xml(xml)
    if ann.width <= 0 or ann.height <= 0:
        ann = VOCAnnotation(*_header_size(img), ann.names, ann.boxes, ann.difficult)
    return ann


def read_split(folder: str, split: str) -> list[str]:
    """Image ids listed in ``folder/ImageSets/Main/{split}.txt`` (first word of each non-blank line).

    Raises
    ------
    FileNotFoundError
        No such split file; the message lists the splits there are.
    """
    path = os.path.join(folder, "ImageSets", "Main", f"{split}.txt")
    if not os.path.isfile(path):
        main = os.path.join(folder, "ImageSets", "Main")
        have = sorted(f[:-4] for f in os.listdir(main) if f.endswith(".txt")) if os.path.isdir(main) else []
        raise FileNotFoundError(
            f"split file {path} not found; splits available in {main}: {have or 'none'}"
        )
    with open(path) as f:
        return [line.split()[0] for line in f if line.strip()]


def _normalise(name: str) -> str:
    return str(name).strip().lower()


def class_index(classes: Sequence[str]) -> dict[str, int]:
    """{normalised name: label index} of ``classes``, the way the readers compare XML names (stripped,
    lower-cased).

    Raises
    ------
    ValueError
        Two names are equal ignoring case and surrounding blanks.
    """
    names = tuple(str(c).strip() for c in classes)
    index = {_normalise(c): i for i, c in enumerate(names)}
    if len(index) != len(names):
        raise ValueError(f"class names must be unique ignoring case, got {names}")
    return index


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
    given = {_normalise(k): v for k, v in index_map.items()}
    missing = [c for c in classes if _normalise(c) not in given]
    if missing:
        raise ValueError(f"index_map {index_map} has no index for the classes {missing}; give every class of "
                         f"{tuple(classes)} an index, or leave index_map out for their order")
    out = {}
    for c in classes:
        value = given[_normalise(c)]
        if isinstance(value, bool) or int(value) != value or value < 0:
            raise ValueError(f"index_map gives class {c!r} the index {value!r}; label indices are integers >= 0")
        out[_normalise(c)] = int(value)
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


def read_classes_file(path: str) -> tuple[str, ...]:
    """Class names from a file with one name per line (blank lines ignored).

    Raises
    ------
    FileNotFoundError
        The file does not exist; the message says how to give the classes instead.
    ValueError
        The file names no class.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no classes given and the classes file {path} does not exist; pass classes=[...] or write "
            "that file with one class name per line"
        )
    with open(path, encoding="utf-8") as f:
        names = tuple(line.strip() for line in f if line.strip())
    if not names:
        raise ValueError(f"classes file {path} names no class; write one class name per line")
    return names
