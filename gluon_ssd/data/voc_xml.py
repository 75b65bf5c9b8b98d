"""Pascal VOC's files: annotation XMLs (parsed, checked, turned into labels), split lists and class lists.

The conventions and where they differ from GluonCV are :mod:`gluon_ssd.data.voc`'s (the readers built on these).
"""
from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .custom import BadImageError, _header_size

__all__ = ["AnnotationError", "UnknownClassError", "VOCAnnotation", "VOCObjects", "parse_voc_xml", "voc_objects",
           "voc_labels", "voc_entry_paths", "read_voc_entry", "read_split", "normalise_name", "class_index",
           "read_classes_file"]

logger = logging.getLogger("gluon_ssd.data.voc")  # the readers' logger: one name for every VOC message


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


def normalise_name(name: str) -> str:
    """A class name as the readers compare it: stripped and lower-cased."""
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
    index = {normalise_name(c): i for i, c in enumerate(names)}
    if len(index) != len(names):
        raise ValueError(f"class names must be unique ignoring case, got {names}")
    return index


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
