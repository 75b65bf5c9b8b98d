"""The dataset checker's driver: which splits of which dataset, by which rules (see :mod:`gluon_ssd.data.check`)."""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence

import numpy as np

from ... import specs
from ...classes import VOC_CLASSES
from ...fileio import atomic_write
from ..open import TRAINING_SPLITS, find_dataset_root, parse_voc_splits
from ..voc_xml import class_index, read_classes_file
from .coco import check_coco
from .report import DATASETS, Checker, CheckReport, anchor_sizes, split_role
from .voc import check_voc_like

logger = logging.getLogger(__package__)  # "gluon_ssd.data.check", the checker's one logger


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
    model_name = specs.resolve_model_name(network, int(data_shape), dataset, int8=False)
    root = find_dataset_root(dataset, root)  # the root that training and evaluation would read
    if not os.path.isdir(root):
        raise ValueError(f"--dataset-root {root}: the checker reads VOC-layout folders; a COCO JSON is checked "
                         "with --dataset coco")
    report = CheckReport(dataset, root, (), model_name, int(data_shape), anchor_sizes=anchor_sizes(model_name))
    ck = Checker(report, int(data_shape), progress)
    if dataset == "voc":
        if splits:
            roles = [(split_role("voc", p), p) for p in parse_voc_splits(splits)]
        else:
            roles = [(r, p) for r, ps in TRAINING_SPLITS["voc"].items() for p in ps]
        entries = [(f"{y}_{n}", r, os.path.join(root, f"VOC{y}" if isinstance(y, int) else str(y)), n)
                   for r, (y, n) in roles]
        check_voc_like(ck, entries, VOC_CLASSES)
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
        check_voc_like(ck, [(s, r, root, s) for r, s in roles], classes)
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
        check_coco(ck, [(s, r, os.path.join(root, "annotations", f"{s}.json"), os.path.join(root, d))
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
        save_report(report, os.path.join(out_dir, "dataset_check.json"))
    n_fatal = len(report.find(severity="fatal"))
    logger.info("checked %s at %s: %d problem(s), %d fatal; %d of %d objects smaller than the smallest anchor",
                dataset, report.root, len(report.problems), n_fatal, report.below_smallest_anchor,
                report.box_sizes.size)
    return report

def save_report(report: CheckReport, path: str) -> str:
    """Write :meth:`CheckReport.to_dict` as JSON to ``path`` (atomically) and note it as ``report.report_path``."""
    report.report_path = os.fspath(path)
    with atomic_write(report.report_path, "w") as f:
        json.dump(report.to_dict(), f, indent=1)
    return report.report_path
