"""COCO readers: ``COCODetection`` (the COCO layout) and ``CustomCOCODetection`` (any instances JSON).

Conventions, as GluonCV's ``COCODetection``:

* ``bbox [x, y, w, h]`` becomes ``x1 = x, y1 = y, x2 = x + max(w - 1, 0), y2 = y + max(h - 1, 0)``, then
  every coordinate is clipped to ``[0, W-1]`` / ``[0, H-1]``; a box is kept when its annotation
  ``area > 0``, ``x2 > x1`` and ``y2 > y1`` (and ``area >= min_object_area``, ``ignore != 1``).
* Category ids map to contiguous labels in the order ``COCO.getCatIds()`` lists them (JSON order);
  ``contiguous_id_to_json`` / ``json_id_to_contiguous`` translate.
* Images come in sorted image-id order, split after split (COCO evaluation relies on it).

Where we differ from GluonCV, on purpose:

* Labels are (N, 6): a crowd box kept (``use_crowd=True``, GluonCV's default and ``COCODetection``'s) is
  flagged in label column 5 (the ``difficult`` column), so a VOC-style metric ignores it while training
  uses it like GluonCV does (GluonCV's labels are (N, 5), without the flag). ``CustomCOCODetection``
  skips crowd boxes unless given ``use_crowd=True``.
* Images are found at ``image_dir/file_name`` (GluonCV derives the folder from ``coco_url``). The
  default ``image_dir`` is derived from the split name (``instances_val2017`` -> ``val2017``) under
  ``root``; pass it when folders are named otherwise.
* With ``skip_empty=False`` an image without usable objects gets a (0, 6) label (GluonCV: one row of -1).
* A listed image file that does not exist is dropped with a warning (``on_error='skip'``; see
  ``dataset.dropped``) or raises (``on_error='raise'``); GluonCV always raises.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..classes import COCO_CLASSES
from .custom import DetectionDataset
from .voc import declared_classes

__all__ = ["COCO_CLASSES", "COCODetection", "CustomCOCODetection", "load_coco", "find_coco_root"]

logger = logging.getLogger(__name__)


def find_coco_root(root: str) -> str | None:
    """The folder holding ``annotations/`` of a dataset root, as training and evaluation look for it: ``root``
    itself or ``root/coco`` (GluonCV's ``~/.mxnet/datasets``). None when neither; the expected layout is
    :func:`gluon_ssd.data.open.expected_layout`."""
    root = os.path.expanduser(os.fspath(root))
    for cand in (root, os.path.join(root, "coco")):
        if os.path.isdir(os.path.join(cand, "annotations")):
            return cand
    return None


def load_coco(path: str):
    """Load an instances JSON with pycocotools, its console chatter sent to the debug log.

    Raises
    ------
    FileNotFoundError, ValueError
        Missing file or invalid JSON; the message names the file.
    """
    from pycocotools.coco import COCO

    if not os.path.isfile(path):
        folder = os.path.dirname(path) or "."
        have = sorted(f for f in os.listdir(folder) if f.endswith(".json")) if os.path.isdir(folder) else []
        raise FileNotFoundError(
            f"COCO annotation file {path} not found; JSON files in {folder}: {have or 'none'}"
        )
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            coco = COCO(path)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); re-export the annotation file") from e
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a COCO instances file (missing or wrong field {e})") from e
    logger.debug("pycocotools on %s: %s", path, out.getvalue().strip().replace("\n", "; "))
    return coco


@dataclass(frozen=True)
class COCOObjects:
    """Every annotation of a COCO file and what the reader makes of it (see :func:`coco_objects`).

    Attributes (M annotations in all, in file order)
    ----------
    owner : (M,) int64, the index into ``image_ids`` of the annotation's image (meaningless where not
        ``known_image``).
    known_image : (M,) bool, the ``image_id`` is among ``image_ids``.
    cat : (M,) int64 contiguous label, -1 for a category id not in the categories.
    crowd, ignore : (M,) int64, the ``iscrowd`` and ``ignore`` fields (0 when absent).
    area : (M,) float64.
    corners : (M, 4) float64 ``x1, y1, x2, y2`` (0-based, GluonCV's ``w - 1`` convention), before clipping.
    clipped : (M, 4) float64 ``corners`` clipped to ``[0, W-1] x [0, H-1]``.
    valid : (M,) bool, ``area > 0`` and the clipped box is not empty.
    selected : (M,) bool, what the options take (known image and category, ``area >= min_object_area``,
        ``ignore != 1``, not crowd unless ``use_crowd``), valid or not.
    """

    owner: np.ndarray
    known_image: np.ndarray
    cat: np.ndarray
    crowd: np.ndarray
    ignore: np.ndarray
    area: np.ndarray
    corners: np.ndarray
    clipped: np.ndarray
    valid: np.ndarray
    selected: np.ndarray

    @property
    def kept(self) -> np.ndarray:
        """(M,) bool, the annotations that become label rows."""
        return self.selected & self.valid

    @property
    def moved(self) -> np.ndarray:
        """(M,) bool, kept boxes that clipping changed (they reached outside the image)."""
        return self.kept & np.any(self.clipped != self.corners, axis=1)


def coco_objects(coco, image_ids, json_to_contig, min_object_area=0.0, use_crowd=False) -> COCOObjects:
    """All annotations of ``coco`` against ``image_ids`` (sorted); vectorised over the file.

    Parameters
    ----------
    coco : pycocotools ``COCO``
    image_ids : sorted sequence of int, length L (non-empty)
    json_to_contig : dict, category id -> contiguous label
    min_object_area, use_crowd : see :class:`CustomCOCODetection`.
    """
    widths = np.array([coco.imgs[i]["width"] for i in image_ids], dtype=np.float64)
    heights = np.array([coco.imgs[i]["height"] for i in image_ids], dtype=np.float64)
    anns = coco.dataset.get("annotations", [])
    ids_sorted = np.asarray(image_ids, dtype=np.int64)
    ann_img = np.array([a["image_id"] for a in anns], dtype=np.int64)
    bbox = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
    area = np.array([a.get("area", 0.0) for a in anns], dtype=np.float64)
    crowd = np.array([a.get("iscrowd", 0) for a in anns], dtype=np.int64)
    ignore = np.array([a.get("ignore", 0) for a in anns], dtype=np.int64)
    cat = np.array([json_to_contig.get(a["category_id"], -1) for a in anns], dtype=np.int64)

    pos = np.searchsorted(ids_sorted, ann_img).clip(0, len(ids_sorted) - 1)
    known_img = ids_sorted[pos] == ann_img
    selected = known_img & (cat >= 0) & (area >= min_object_area) & (ignore != 1)
    if not use_crowd:
        selected &= crowd == 0

    w, h = widths[pos], heights[pos]
    x1, y1 = bbox[:, 0], bbox[:, 1]
    x2 = x1 + np.maximum(bbox[:, 2] - 1, 0)
    y2 = y1 + np.maximum(bbox[:, 3] - 1, 0)
    corners = np.stack([x1, y1, x2, y2], axis=1)
    hi = np.stack([w - 1, h - 1, w - 1, h - 1], axis=1)
    clipped = np.minimum(hi, np.maximum(0, corners))
    valid = (area > 0) & (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    return COCOObjects(pos, known_img, cat, crowd, ignore, area, corners, clipped, valid, selected)


def _coco_labels(coco, image_ids, json_to_contig, min_object_area, use_crowd, path):
    """Labels of ``image_ids`` (sorted), vectorised over all annotations of the file."""
    n_img = len(image_ids)
    if n_img == 0:
        return []
    if not coco.dataset.get("annotations", []):
        return [np.zeros((0, 6), np.float32) for _ in range(n_img)]
    obj = coco_objects(coco, image_ids, json_to_contig, min_object_area, use_crowd)
    if (obj.cat < 0).any():
        logger.warning("%s: %d annotation(s) with a category id not in categories were ignored",
                       path, int((obj.cat < 0).sum()))
    keep = obj.kept
    n_invalid = int((obj.selected & ~obj.valid).sum())
    n_clipped = int(obj.moved.sum())
    if n_invalid or n_clipped:
        logger.warning(
            "%s: dropped %d annotation(s) with zero area or an empty box, clipped %d box(es) to the image",
            path, n_invalid, n_clipped,
        )
    rows = np.concatenate([obj.clipped, obj.cat[:, None], (obj.crowd != 0)[:, None]], axis=1)[keep]
    rows = rows.astype(np.float32)
    owner = obj.owner[keep]
    # a stable sort keeps each image's annotations in file order, as pycocotools' getAnnIds does
    rows = rows[np.argsort(owner, kind="stable")]
    counts = np.bincount(owner, minlength=n_img)
    return np.split(rows, np.cumsum(counts)[:-1])


class CustomCOCODetection(DetectionDataset):
    """Detection data described by COCO instances JSON file(s).

    Parameters
    ----------
    annotation_json : str or sequence of str
        Instances JSON file(s).
    image_dir : str or sequence of str
        Folder of the images of each JSON (one for all, or one per file); images are
        ``image_dir/file_name``.
    classes : sequence of str, optional
        Expected category names in label order; the JSON's categories must match them. Default: the
        JSON's categories in ``getCatIds()`` order.
    skip_empty : bool
        Drop images without usable objects (training); keep them with a (0, 6) label when False
        (evaluation).
    use_crowd : bool
        Keep crowd boxes (flagged difficult=1) instead of skipping them.
    min_object_area : float
        Drop annotations whose ``area`` is smaller.
    transform : callable, optional
        ``transform(image, label)``.
    on_error : {'skip', 'raise'}
        Missing image files at construction and undecodable ones at load time: skip them (logged) or
        raise.
    """

    def __init__(
        self,
        annotation_json: str | Sequence[str],
        image_dir: str | Sequence[str],
        classes: Sequence[str] | None = None,
        skip_empty: bool = True,
        use_crowd: bool = False,
        min_object_area: float = 0.0,
        transform: Callable | None = None,
        on_error: str = "skip",
    ):
        one = (str, os.PathLike)
        jsons = [annotation_json] if isinstance(annotation_json, one) else list(annotation_json)
        dirs = [image_dir] * len(jsons) if isinstance(image_dir, one) else list(image_dir)
        if len(dirs) != len(jsons):
            raise ValueError(
                f"give one image_dir for all JSON files or one per file: {len(dirs)} for {len(jsons)}"
            )
        self._build([os.fspath(j) for j in jsons], [os.fspath(d) for d in dirs], classes, skip_empty,
                    use_crowd, min_object_area, transform, on_error)

    def _build(self, jsons, dirs, classes, skip_empty, use_crowd, min_object_area, transform, on_error):
        if on_error not in ("skip", "raise"):
            raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
        self._cocos = []
        self.json_id_to_contiguous: dict[int, int] | None = None
        self.contiguous_id_to_json: dict[int, int] | None = None
        self.dropped: list[tuple[int, str]] = []
        paths, labels, sizes, ids = [], [], [], []
        for path, folder in zip(jsons, dirs):
            coco = load_coco(path)
            self._cocos.append(coco)
            cat_ids = list(coco.getCatIds())
            names = tuple(c["name"] for c in coco.loadCats(cat_ids))
            if classes is not None and names != tuple(classes):
                raise ValueError(
                    f"the categories of {path} {names[:5]}... ({len(names)}) differ from the expected "
                    f"classes {tuple(classes)[:5]}... ({len(classes)}); use CustomCOCODetection with "
                    "classes=None for a dataset with its own categories"
                )
            classes = names
            mapping = {int(c): i for i, c in enumerate(cat_ids)}
            if self.json_id_to_contiguous is None:
                self.json_id_to_contiguous = mapping
                self.contiguous_id_to_json = {v: k for k, v in mapping.items()}
            elif mapping != self.json_id_to_contiguous:
                raise ValueError(
                    f"{path} numbers its categories differently from {jsons[0]}; read them apart"
                )
            if not os.path.isdir(folder):
                raise FileNotFoundError(
                    f"image folder {folder} for {path} does not exist; pass image_dir= (the folder holding "
                    "the images named by file_name)"
                )
            image_ids = sorted(coco.getImgIds())
            split_labels = _coco_labels(coco, image_ids, mapping, min_object_area, use_crowd, path)
            missing = 0
            for img_id, label in zip(image_ids, split_labels):
                if skip_empty and len(label) == 0:
                    continue
                entry = coco.imgs[img_id]
                img_path = os.path.join(folder, entry["file_name"])
                if not os.path.isfile(img_path):
                    msg = f"image {img_path} (id {img_id}) listed in {path} does not exist"
                    if on_error == "raise":
                        raise FileNotFoundError(msg + "; check image_dir")
                    missing += 1
                    self.dropped.append((img_id, msg))
                    continue
                paths.append(img_path)
                labels.append(label)
                sizes.append((entry["width"], entry["height"]))
                ids.append(img_id)
            if missing:
                logger.warning("%s: dropped %d image(s) whose file is missing from %s (first: %s)",
                               path, missing, folder, self.dropped[-missing][1])
        if not paths:
            raise ValueError(f"no usable images in {jsons} (dropped {len(self.dropped)}); check image_dir")
        DetectionDataset.__init__(self, paths, labels, classes, image_sizes=sizes, image_ids=ids,
                                  transform=transform, on_error=on_error)

    @property
    def coco(self):
        """The pycocotools ``COCO`` object (evaluation), for a dataset read from one JSON."""
        if len(self._cocos) != 1:
            raise ValueError(
                f"this dataset was read from {len(self._cocos)} JSON files; evaluate each split separately"
            )
        return self._cocos[0]


class COCODetection(CustomCOCODetection):
    """MS COCO detection data in the COCO layout; GluonCV's ``COCODetection`` with its signature.

    Parameters
    ----------
    root : str
        Dataset folder, holding ``annotations/``.
    splits : str or sequence of str
        JSON names without extension, e.g. ``'instances_val2017'``.
    transform : callable, optional
        ``transform(image, label)``.
    min_object_area : float
        Drop annotations whose ``area`` is smaller.
    skip_empty : bool
        Leave out images without usable objects (training); keep them with a (0, 6) label when False
        (evaluation; GluonCV gives them one row of -1).
    use_crowd : bool
        Keep crowd boxes (GluonCV's default), flagged 1 in label column 5; False leaves them out.
    image_dir : str or sequence of str, optional, keyword-only
        Image folder (relative to ``root`` or absolute), one for all splits or one per split. Default:
        the split name after its last underscore (``instances_val2017`` -> ``root/val2017``; GluonCV takes
        the folder from each image's ``coco_url``, which names the same folder in the COCO layout).
    annotation_dir : str, keyword-only
        Folder of the JSON files, relative to ``root``.
    on_error : {'skip', 'raise'}, keyword-only
        See :class:`CustomCOCODetection`.

    Notes
    -----
    The classes are the class attribute ``CLASSES`` (:data:`COCO_CLASSES`), or what a subclass declares
    (``CLASSES`` or a ``classes`` property, as in GluonCV); each JSON's categories must be those names in
    that order. Items are ``(image, label)``: image ``mx.nd.NDArray`` (H, W, 3) uint8 RGB (numpy without
    MXNet), label (N, 6) float32 ``[x1, y1, x2, y2, class, crowd]`` (GluonCV: a list of (N, 5) rows).

    Examples
    --------
    The tinycoco sample names its folders ``images/train2017``:

    >>> ds = COCODetection('tinycoco', 'instances_train2017', image_dir='images/train2017')  # doctest: +SKIP
    """

    CLASSES = COCO_CLASSES

    def __init__(
        self,
        root: str = os.path.join("~", ".mxnet", "datasets", "coco"),
        splits: str | Sequence[str] = ("instances_val2017",),
        transform: Callable | None = None,
        min_object_area: float = 0.0,
        skip_empty: bool = True,
        use_crowd: bool = True,
        *,
        image_dir: str | Sequence[str] | None = None,
        annotation_dir: str = "annotations",
        on_error: str = "skip",
    ):
        if transform is not None and not callable(transform):
            raise TypeError(
                f"transform must be callable, got {type(transform).__name__}; the positional order is GluonCV's "
                "(root, splits, transform, min_object_area, skip_empty, use_crowd): pass the others by name"
            )
        if isinstance(min_object_area, (str, bytes, os.PathLike)):
            raise TypeError(f"min_object_area must be a number, got {min_object_area!r}; the fourth positional "
                            "argument is GluonCV's min_object_area: pass the image folder as image_dir=...")
        self.root = os.path.expanduser(os.fspath(root))
        if not os.path.isdir(self.root):
            raise FileNotFoundError(
                f"COCO root {self.root} is not a folder; pass the folder holding annotations/"
            )
        self.splits = (splits,) if isinstance(splits, str) else tuple(splits)
        if image_dir is None:
            dirs = [s.rsplit("_", 1)[-1] for s in self.splits]
        elif isinstance(image_dir, (str, os.PathLike)):
            dirs = [os.fspath(image_dir)] * len(self.splits)
        else:
            dirs = [os.fspath(d) for d in image_dir]
            if len(dirs) != len(self.splits):
                raise ValueError(f"give one image_dir or one per split: {len(dirs)} for {len(self.splits)}")
        jsons = [os.path.join(self.root, annotation_dir, f"{s}.json") for s in self.splits]
        self._build(jsons, [os.path.join(self.root, d) for d in dirs], declared_classes(self, COCODetection),
                    skip_empty, use_crowd, min_object_area, transform, on_error)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({','.join(self.splits)}: {len(self)} images)"
