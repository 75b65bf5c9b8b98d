"""One way to open a detection dataset by kind, root and splits: what train_ssd.py trains on, eval_ssd.py
scores and the dataset checker checks.

Roots, the same for training and evaluation:

* ``voc``: a folder holding the ``VOC<year>/`` folders (GluonCV's ``~/.mxnet/datasets/voc``, or a
  ``VOCdevkit/`` folder itself), or a folder holding ``VOCdevkit/`` (or ``voc/``, as GluonCV's
  ``~/.mxnet/datasets``): see :func:`gluon_ssd.data.voc.find_voc_root`;
* ``coco``: the folder holding ``annotations/``, or its parent holding ``coco/``;
* ``custom``: a VOC-layout folder (``JPEGImages/``, ``Annotations/``, ``ImageSets/Main/<split>.txt`` and a
  classes file), or a COCO instances JSON file.

Purpose: ``'train'`` reads leniently (unusable items are dropped with a warning, COCO images without objects
are left out); ``'eval'`` strictly (every listed image is kept, an unusable file raises), so that an
evaluation scores every image of the split. COCO crowd boxes are kept for both (:data:`COCO_USE_CROWD`, GluonCV's
recipe: train_ssd.py reads COCO with its reader's defaults, and validates with ``skip_empty=False``).

Errors are :class:`DatasetError`; their messages name the command-line flags (``--dataset-root``,
``--splits``, ``--classes-file``, ``--image-dir``), which the tools that open datasets share.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence

from .coco import COCODetection, CustomCOCODetection, find_coco_root
from .voc import CustomVOCDetection, VOCDetection, find_voc_root

__all__ = ["KINDS", "DEFAULT_ROOTS", "TRAINING_SPLITS", "COCO_USE_CROWD", "DatasetError", "parse_voc_splits",
           "parse_splits", "expected_layout", "find_dataset_root", "open_dataset"]

KINDS = ("voc", "coco", "custom")
_PURPOSES = ("train", "eval")
DEFAULT_ROOTS = {"voc": os.path.join("~", ".mxnet", "datasets", "voc"),
                 "coco": os.path.join("~", ".mxnet", "datasets", "coco")}

#: The splits train_ssd.py reads, by role; 'val' is also what eval_ssd.py scores by default. A custom
#: dataset's 'val' split is read in training only where ``ImageSets/Main/val.txt`` exists.
TRAINING_SPLITS = {
    "voc": {"train": ((2007, "trainval"), (2012, "trainval")), "val": ((2007, "test"),)},
    "coco": {"train": ("instances_train2017",), "val": ("instances_val2017",)},
    "custom": {"train": ("train",), "val": ("val",)},
}


#: COCO crowd boxes in training and evaluation: kept, as GluonCV's train_ssd.py reads COCO (its COCODetection
#: default), so they are training targets like any box; they carry the crowd flag in label column 5, which a VOC
#: metric reads as difficult (ignored). The COCO metric scores against the JSON itself. The checker reads the same.
COCO_USE_CROWD = True


class DatasetError(ValueError):
    """A dataset that cannot be opened; the message names the root or file and what was expected."""


def _items(splits) -> list:
    if isinstance(splits, str):
        return [s.strip() for s in splits.split(",") if s.strip()]
    return list(splits)


def parse_voc_splits(splits) -> tuple:
    """VOC splits as ``(year, name)`` pairs, from ``'2007_test,2012_val'``, ``['2007_test']`` or pairs.

    A year of digits becomes an int (the folder ``VOC{year}``); another word is a folder name as it is.
    """
    out = []
    for item in _items(splits):
        if isinstance(item, (tuple, list)) and len(item) == 2:
            out.append((item[0], str(item[1])))
            continue
        m = re.fullmatch(r"(\w+?)[_:](\w+)", str(item).strip())
        if not m:
            raise DatasetError(f"--splits {item!r}: VOC splits are YEAR_NAME, e.g. 2007_test or 2007_test,2012_val")
        year, name = m.groups()
        out.append((int(year) if year.isdigit() else year, name))
    return tuple(out)


def parse_splits(kind: str, splits=None, purpose: str = "eval") -> tuple:
    """The splits to read: ``splits`` (comma-separated text or a sequence) or, when None or empty, the ones
    training reads (``purpose='train'``) or validates and evaluates on (:data:`TRAINING_SPLITS`)."""
    _check_kind(kind)
    if purpose not in _PURPOSES:
        raise ValueError(f"purpose must be one of {_PURPOSES}, got {purpose!r}")
    chosen = _items(splits) if splits is not None else []
    if not chosen:
        chosen = TRAINING_SPLITS[kind]["train" if purpose == "train" else "val"]
    if kind == "voc":
        return parse_voc_splits(chosen)
    return tuple(str(s).strip() for s in chosen)


def expected_layout(kind: str, root: str, classes_file: str = "classes.txt") -> str:
    """What a dataset root of ``kind`` holds, in words, with ``root`` as the folder (for messages)."""
    if kind == "voc":
        return (f"{root}/VOC2007/Annotations/*.xml, {root}/VOC2007/JPEGImages/*.jpg and "
                f"{root}/VOC2007/ImageSets/Main/<split>.txt (one VOC<year>/ per --splits year), or the same "
                f"under {root}/VOCdevkit/")
    if kind == "coco":
        return (f"{root}/annotations/instances_val2017.json and the images in {root}/val2017/ (one JSON per "
                "--splits name; --image-dir names another image folder)")
    return (f"a VOC-layout folder ({root}/JPEGImages/, {root}/Annotations/, {root}/ImageSets/Main/<split>.txt "
            f"and {root}/{classes_file} with the class names, one per line, or another file named by "
            "--classes-file) or a COCO instances JSON file")


def _check_kind(kind):
    if kind not in KINDS:
        raise DatasetError(f"unknown dataset kind {kind!r}; choose one of {', '.join(KINDS)}")


def _not_there(path) -> str:
    return "it is a file" if os.path.isfile(path) else "it does not exist"


def find_dataset_root(kind: str, root=None) -> str:
    """The folder (or, custom, the JSON file) that holds the dataset given as ``root``.

    Parameters
    ----------
    kind : {'voc', 'coco', 'custom'}
    root : str, optional
        As the module docstring says; default :data:`DEFAULT_ROOTS` (voc, coco).

    Raises
    ------
    DatasetError
        No dataset of ``kind`` there; the message gives the layout expected.
    """
    _check_kind(kind)
    if root is None or os.fspath(root) == "":
        if kind == "custom":
            raise DatasetError("--dataset custom needs --dataset-root: " + expected_layout(kind, "ROOT"))
        root = DEFAULT_ROOTS[kind]
    root = os.path.expanduser(os.fspath(root))
    if kind == "custom":
        if root.lower().endswith(".json"):
            if not os.path.isfile(root):
                raise DatasetError(f"--dataset-root {root} is not an existing file: --dataset custom expects "
                                   + expected_layout(kind, root))
            return root
        if not os.path.isdir(root):
            raise DatasetError(f"no custom dataset at --dataset-root {root}: {root} is not a folder "
                               f"({_not_there(root)}); expected {expected_layout(kind, root)}")
        return root
    found = find_voc_root(root) if kind == "voc" else find_coco_root(root)
    if found is None:
        holds = "no VOC<year>/ folder, nor do VOCdevkit/ or voc/ in it" if kind == "voc" else \
            "no annotations/ folder, nor does coco/ in it"
        why = f"it holds {holds}" if os.path.isdir(root) else f"{root} is not a folder ({_not_there(root)})"
        raise DatasetError(f"no {kind.upper()} dataset under --dataset-root {root}: {why}; expected "
                           + expected_layout(kind, root))
    return found


def open_dataset(kind: str, root=None, splits=None, purpose: str = "eval", classes: Sequence[str] | None = None,
                 classes_file: str = "classes.txt", image_dir=None, transform: Callable | None = None):
    """Open a dataset for training or evaluation.

    Parameters
    ----------
    kind : {'voc', 'coco', 'custom'}
    root : str, optional
        See the module docstring (:func:`find_dataset_root`).
    splits : str or sequence, optional
        voc: ``'2007_test'`` strings or ``(2007, 'test')`` pairs; coco: JSON names (``'instances_val2017'``);
        custom: split names. Comma-separated text is split. Default: see :func:`parse_splits`.
    purpose : {'train', 'eval'}
        How strictly to read (module docstring).
    classes : sequence of str, optional
        custom: the class names in label order; default read from ``classes_file`` (VOC layout) or the JSON's
        own categories. Ignored for voc and coco, whose classes are fixed.
    classes_file : str
        custom VOC layout: the class names file, relative to the root (or absolute).
    image_dir : str or sequence of str, optional
        coco: the image folder of each split, relative to the root (default ``instances_val2017`` ->
        ``val2017``); custom JSON: the image folder (default the JSON's folder).
    transform : callable, optional
        ``transform(image, label)``.

    Returns
    -------
    VOCDetection, COCODetection, CustomVOCDetection or CustomCOCODetection

    Raises
    ------
    DatasetError
        The root, a split, a folder, a classes file or an annotation cannot be read; the message says which,
        and for a missing file or folder the layout expected.
    """
    found = find_dataset_root(kind, root)
    chosen = parse_splits(kind, splits, purpose)
    strict = {"on_error": "raise" if purpose == "eval" else "skip", "transform": transform}
    try:
        if kind == "voc":
            return VOCDetection(found, splits=chosen, **strict)
        if kind == "coco":
            return COCODetection(found, splits=chosen, skip_empty=purpose == "train", use_crowd=COCO_USE_CROWD,
                                 image_dir=image_dir, **strict)
        if found.lower().endswith(".json"):
            return CustomCOCODetection(found, image_dir or os.path.dirname(found), classes=classes,
                                       skip_empty=purpose == "train", **strict)
        if classes is None and not os.path.isfile(os.path.join(found, classes_file)):
            raise DatasetError(f"the classes file {os.path.join(found, classes_file)} does not exist: write the "
                               "class names there, one per line, or name the file with --classes-file")
        return CustomVOCDetection(found, splits=chosen, classes=classes, classes_file=classes_file, **strict)
    except DatasetError:
        raise
    except FileNotFoundError as err:
        raise DatasetError(f"cannot read the {kind} dataset at {found}: {err}. Expected layout: "
                           + expected_layout(kind, found, classes_file)) from err
    except (ValueError, OSError) as err:
        raise DatasetError(f"cannot read the {kind} dataset at {found}: {err}") from err
