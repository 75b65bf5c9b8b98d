"""COCO bbox evaluation: ``coco_stats`` (pycocotools or faster-coco-eval) and ``COCODetectionMetric``.

``coco_stats`` runs the official ``COCOeval('bbox')`` protocol over all ground-truth images and guards
against the traps that silently give wrong numbers:

- an annotation id 0 (or missing or repeated ids) in the ground truth: pycocotools stores matched
  ground-truth ids in its match tables and reads 0 as "unmatched", so such a ground truth can never be
  a true positive. Annotation ids are then re-numbered 1..N in a copy (logged).
- results whose ``image_id`` or ``category_id`` is not in the ground truth: pycocotools fails with a bare
  assertion (images) or silently ignores them (categories). Here they raise a ``ValueError`` naming the
  ids and the file.
- ground-truth annotations without ``area`` or ``iscrowd`` (e.g. hand-made or CVAT exports): filled with
  the box area ``w * h`` and 0 in the copy (logged).
"""
from __future__ import annotations

import contextlib
import copy
import datetime
import io
import json
import logging
import os
import tempfile

import numpy as np

from .._mxnet import EvalMetric, is_ndarray
from .voc import _as_batch, _flat_rows, _single_flags

__all__ = ["COCO_STAT_NAMES", "coco_stats", "COCODetectionMetric"]

logger = logging.getLogger(__name__)

#: The 12 summary numbers of ``COCOeval.summarize()`` for bbox, in pycocotools order.
COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
_BACKENDS = ("pycocotools", "faster")
_MAX_IDS_IN_MESSAGE = 10


def _describe(source):
    return str(source) if isinstance(source, (str, os.PathLike)) else f"<in-memory {type(source).__name__}>"


def _load_gt_dataset(gt):
    """GT as a COCO-format dict: from a path, a dict, or a pycocotools / faster-coco-eval COCO object."""
    if isinstance(gt, (str, os.PathLike)):
        if not os.path.isfile(gt):
            raise FileNotFoundError(f"ground-truth COCO json not found: {gt}")
        with open(gt) as f:
            dataset = json.load(f)
    elif isinstance(gt, dict):
        dataset = gt
    elif hasattr(gt, "dataset") and isinstance(gt.dataset, dict):
        dataset = gt.dataset
    else:
        raise TypeError(f"ground truth must be a COCO json path, a COCO-format dict or a COCO object, got "
                        f"{type(gt).__name__}")
    missing = [k for k in ("images", "annotations", "categories") if k not in dataset]
    if missing:
        raise ValueError(f"ground truth {_describe(gt)} is not a COCO instances file: missing keys {missing}")
    return dataset


def _sanitized_gt(dataset, source):
    """A copy of ``dataset`` safe for pycocotools (ids 1..N when needed, area/iscrowd present).

    Annotation dicts are always copied: pycocotools writes an 'ignore' key into them.
    """
    anns = dataset["annotations"]
    ids = [a.get("id") for a in anns]
    bad_ids = any(i is None or i == 0 for i in ids) or len(set(ids)) != len(ids)
    no_area = sum("area" not in a for a in anns)
    no_crowd = sum("iscrowd" not in a for a in anns)
    fixed = [dict(ann) for ann in anns]
    if bad_ids:
        for index, ann in enumerate(fixed):
            ann["id"] = index + 1
        logger.warning("%s: annotation ids contain 0, None or duplicates (pycocotools reads id 0 as "
                       "'unmatched'); evaluating a copy with annotation ids renumbered 1..%d",
                       _describe(source), len(anns))
    if no_area or no_crowd:
        for ann in fixed:
            if "area" not in ann:
                ann["area"] = float(ann["bbox"][2]) * float(ann["bbox"][3])
            ann.setdefault("iscrowd", 0)
        logger.warning("%s: %d annotations lack 'area' and %d lack 'iscrowd'; using the box area w*h and "
                       "iscrowd=0 for them", _describe(source), no_area, no_crowd)
    out = dict(dataset)
    out["annotations"] = fixed
    return out


def _load_results(results):
    """Detections as a list of dicts, from a path, a list, or a COCO-format dict with 'annotations'."""
    if isinstance(results, (str, os.PathLike)):
        if not os.path.isfile(results):
            raise FileNotFoundError(f"COCO results json not found: {results}")
        with open(results) as f:
            data = json.load(f)
    else:
        data = results
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        logger.info("%s is a COCO dict; using its 'annotations' list as the detections", _describe(results))
        data = data["annotations"]
    if not isinstance(data, (list, tuple)):
        raise ValueError(f"COCO results {_describe(results)} must be a list of "
                         "{image_id, category_id, bbox, score} dicts")
    for i, det in enumerate(data):
        if not isinstance(det, dict) or not {"image_id", "category_id", "bbox", "score"} <= det.keys():
            raise ValueError(f"COCO results {_describe(results)}: entry {i} is {det!r}; each detection needs "
                             "image_id, category_id, bbox [x, y, w, h] and score")
    return [dict(det) for det in data]


def _check_ids(dets, dataset, gt_source, results_source):
    known_images = {img["id"] for img in dataset["images"]}
    known_cats = {cat["id"] for cat in dataset["categories"]}
    problems = []
    for field, known, what in (("image_id", known_images, "image"), ("category_id", known_cats, "category")):
        unknown = sorted({d[field] for d in dets} - known, key=str)
        if unknown:
            shown = ", ".join(map(str, unknown[:_MAX_IDS_IN_MESSAGE]))
            extra = len(unknown) - _MAX_IDS_IN_MESSAGE
            more = f" and {extra} more" if extra > 0 else ""
            problems.append(f"{len(unknown)} {what} ids not in the ground truth: {shown}{more}")
    if problems:
        raise ValueError(f"COCO results {_describe(results_source)} do not match ground truth "
                         f"{_describe(gt_source)}: " + "; ".join(problems) + ". Map the detections' ids to "
                         "the ground truth's (e.g. by image file_name and category name) before evaluating.")


def _run_cocoeval(dataset, dets, backend):
    """Evaluate bbox detections; returns (COCOeval after accumulate+summarize, summary text)."""
    text = io.StringIO()
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        with contextlib.redirect_stdout(text):
            gt = COCO()
            gt.dataset = dataset
            gt.createIndex()
            if dets:
                dt = gt.loadRes(dets)
            else:
                # pycocotools' loadRes indexes the first result, so an empty list needs a hand-made set.
                dt = COCO()
                dt.dataset = {"images": list(dataset["images"]), "annotations": [],
                              "categories": copy.deepcopy(dataset["categories"])}
                dt.createIndex()
            evaluator = COCOeval(gt, dt, "bbox")
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
    else:
        try:
            from faster_coco_eval import COCO, COCOeval_faster
        except ImportError as err:
            raise ImportError("backend='faster' needs the faster-coco-eval package "
                              "(pip install faster-coco-eval); or use backend='pycocotools'") from err
        lines = []
        gt = COCO(dataset, print_function=logger.debug)
        dt = gt.loadRes(dets)
        evaluator = COCOeval_faster(gt, dt, "bbox", print_function=lines.append)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        text.write("\n".join(str(line) for line in lines if str(line).lstrip().startswith("Average")))
    return evaluator, text.getvalue()


def _per_class_ap(evaluator, dataset):
    names = {cat["id"]: cat.get("name", str(cat["id"])) for cat in dataset["categories"]}
    precision = np.asarray(evaluator.eval["precision"])  # (iou, recall, class, area, max dets)
    out = {}
    for k, cat_id in enumerate(evaluator.params.catIds):
        p = precision[:, :, k, 0, -1]
        valid = p > -1
        name = names.get(cat_id, str(cat_id))
        if name in out:
            name = f"{name} (id {cat_id})"
        out[name] = float(p[valid].mean()) if valid.any() else float("nan")
    return out


def coco_stats(gt_json_path, results_json_path, backend="pycocotools"):
    """COCO bbox mAP and friends of a results file against a ground-truth file.

    Parameters
    ----------
    gt_json_path : str or os.PathLike, dict, or COCO object
        COCO instances json (images, annotations, categories). Every image in it is evaluated.
    results_json_path : str or os.PathLike, list of dict, or dict
        Detections ``[{image_id, category_id, bbox: [x, y, w, h], score}, ...]``, or a COCO-format dict
        whose ``'annotations'`` are the detections. May be empty (every AP and AR is then 0).
    backend : {'pycocotools', 'faster'}
        ``'faster'`` uses faster-coco-eval (same numbers, several times faster on large sets).

    Returns
    -------
    dict
        The 12 stats of ``COCOeval.summarize()`` under :data:`COCO_STAT_NAMES` (AP, AP50, AP75, APs, APm,
        APl, AR1, AR10, AR100, ARs, ARm, ARl; -1 where an area range has no ground truth, as
        pycocotools), plus ``'per_class'``: ``{category name: AP@[.5:.95]}`` in the ground truth's
        category-id order (``nan`` for a category without ground truth), and ``'summary'``: the text
        summary.

    Raises
    ------
    ValueError
        Results refer to image or category ids that the ground truth does not have.
    """
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    dataset = _sanitized_gt(_load_gt_dataset(gt_json_path), gt_json_path)
    dets = _load_results(results_json_path)
    _check_ids(dets, dataset, gt_json_path, results_json_path)
    evaluator, summary = _run_cocoeval(dataset, dets, backend)
    stats = {name: float(v) for name, v in zip(COCO_STAT_NAMES, np.asarray(evaluator.stats)[:12])}
    stats["per_class"] = _per_class_ap(evaluator, dataset)
    stats["summary"] = summary
    logger.info("COCO bbox evaluation (%s, %d detections):\n%s", backend, len(dets), summary)
    return stats


class COCODetectionMetric(EvalMetric):
    """COCO bbox mAP for an evaluation loop: collects network outputs, evaluates with :func:`coco_stats`.

    Parameters
    ----------
    gt : str or os.PathLike, dict, or COCO object
        The validation set's COCO instances json (or its loaded form).
    classes : None, sequence of str, or dict of int -> int
        How the network's contiguous class ids map to COCO category ids. ``None``: id ``i`` is the
        ``i``-th category of the json, in file order (as GluonCV's COCODetection). Names: id ``i`` is the
        category named ``classes[i]``. Dict: ``{contiguous id: category id}``. Predictions of other ids
        are dropped.
    data_shape : None, int, or (height, width)
        Network input size. When given, boxes are scaled from it to each image's original size
        (``x * W / width``, ``y * H / height``).
    score_thresh : float
        Detections scoring below this are dropped before evaluation (GluonCV: 0.05).
    save_prefix : str, optional
        Results are written to ``{save_prefix}_{YYYY_mm_dd_HH_MM_SS}.json``; without it, to a temporary file.
    cleanup : bool
        Delete the results json after evaluating.
    backend : {'pycocotools', 'faster'}
        See :func:`coco_stats`.

    Notes
    -----
    Boxes are converted to COCO ``[x, y, w, h]`` as GluonCV does, with the +1 pixel convention:
    ``w = x2 - (x1 - 1)``, ``h = y2 - (y1 - 1)`` (after rescaling). ``get`` returns floats in [0, 1] with
    names ``[*class names, 'mAP']`` (GluonCV returns strings x100 and a summary entry first; the summary
    text is in ``self.summary`` and all 12 stats in ``self.stats``). Images of the ground truth that never
    received predictions count as images with no detections.
    """

    def __init__(self, gt, classes=None, data_shape=None, score_thresh=0.05, save_prefix=None,
                 cleanup=True, backend="pycocotools"):
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
        self._gt_source = gt
        self._dataset = _sanitized_gt(_load_gt_dataset(gt), gt)
        self._images = {img["id"]: img for img in self._dataset["images"]}
        self._sorted_image_ids = sorted(self._images)
        self._category_ids, self.class_names = self._resolve_classes(classes)
        self._data_shape = self._resolve_shape(data_shape)
        self._score_thresh = float(score_thresh)
        self._save_prefix = save_prefix
        self._cleanup = bool(cleanup)
        self._backend = backend
        self.stats = None
        self.summary = ""
        self.results_path = None
        super().__init__("COCOMeanAP")

    def _resolve_classes(self, classes):
        cats = self._dataset["categories"]
        by_id = {c["id"]: c.get("name", str(c["id"])) for c in cats}
        if classes is None:
            mapping = {i: c["id"] for i, c in enumerate(cats)}
        elif isinstance(classes, dict):
            unknown = sorted(set(classes.values()) - set(by_id), key=str)
            if unknown:
                raise ValueError(f"classes maps to category ids {unknown} that {_describe(self._gt_source)} "
                                 f"does not have (it has {sorted(by_id)})")
            mapping = {int(k): v for k, v in classes.items()}
        elif isinstance(classes, (list, tuple)) and all(isinstance(c, str) for c in classes):
            by_name = {}
            for c in cats:
                by_name.setdefault(c.get("name"), c["id"])
            unknown = [c for c in classes if c not in by_name]
            if unknown:
                raise ValueError(f"class names {unknown} are not categories of {_describe(self._gt_source)}; "
                                 f"its names are {[c.get('name') for c in cats]}")
            mapping = {i: by_name[c] for i, c in enumerate(classes)}
        else:
            raise TypeError(f"classes must be None, a list of category names or a dict "
                            f"{{contiguous id: category id}}, got {type(classes).__name__}")
        size = max(mapping) + 1 if mapping else 0
        if min(mapping, default=0) < 0:
            raise ValueError(f"contiguous class ids must be >= 0, got {sorted(mapping)}")
        lookup = np.full(size, -1, dtype=np.int64)
        lookup[list(mapping)] = list(mapping.values())
        names = [by_id[mapping[i]] if i in mapping else str(i) for i in range(size)]
        return lookup, names

    @staticmethod
    def _resolve_shape(data_shape):
        if data_shape is None or data_shape == 0:
            return None
        if np.isscalar(data_shape):
            return (int(data_shape), int(data_shape))
        if len(data_shape) != 2:
            raise ValueError(f"data_shape must be None, an int or (height, width), got {data_shape!r}")
        return (int(data_shape[0]), int(data_shape[1]))

    def reset(self):
        """Forget every update."""
        self._records = []
        self._next_image = 0
        self._seen_images = set()

    def update(self, pred_bboxes, pred_labels, pred_scores, image_ids=None, image_sizes=None):
        """Add one batch of network outputs.

        Parameters
        ----------
        pred_bboxes : NDArray or np.ndarray, (B, N, 4), or list of them
            Corner boxes ``x1, y1, x2, y2`` in network-input pixels (original pixels if no data_shape).
        pred_labels : (B, N) or (B, N, 1)
            Contiguous class ids; negative rows are padding.
        pred_scores : (B, N) or (B, N, 1)
        image_ids : sequence of B ints, optional
            COCO image id of each image. ``None``: the next B ids of the ground truth in sorted order (the
            GluonCV convention, which needs the validation set in that order without skipped images).
        image_sizes : (B, 2) original (width, height), optional
            Only used with ``data_shape``; ``None``: read from the ground truth's image records.
        """
        flags = _single_flags(pred_bboxes, 2)
        boxes = _as_batch(pred_bboxes, 2, flags, name="pred_bboxes")[..., :4].astype(np.float64)
        batch = boxes.shape[0]
        labels = _flat_rows(_as_batch(pred_labels, 1, flags, -1, "pred_labels"), batch, "pred_labels")
        scores = _flat_rows(_as_batch(pred_scores, 1, flags, 0, "pred_scores"), batch, "pred_scores")
        if labels.shape[1] != boxes.shape[1] or scores.shape[1] != boxes.shape[1]:
            raise ValueError(f"pred_bboxes {boxes.shape}, pred_labels {labels.shape} and pred_scores "
                             f"{scores.shape} must have the same number of rows per image")
        ids = self._image_ids_for(image_ids, batch)

        if self._data_shape is not None:
            if image_sizes is None:
                sizes = np.array([[self._images[i]["width"], self._images[i]["height"]] for i in ids],
                                 dtype=np.float64)
            else:
                sizes = np.asarray(_to_numpy_any(image_sizes), dtype=np.float64).reshape(batch, 2)
            height, width = self._data_shape
            boxes[..., 0::2] *= (sizes[:, 0] / width)[:, None, None]
            boxes[..., 1::2] *= (sizes[:, 1] / height)[:, None, None]

        contiguous = np.where(labels >= 0, labels, -1).astype(np.int64)
        in_map = (contiguous >= 0) & (contiguous < self._category_ids.size)
        category = np.full(contiguous.shape, -1, dtype=np.int64)
        category[in_map] = self._category_ids[contiguous[in_map]]
        keep = in_map & (category >= 0) & (scores >= self._score_thresh) & np.isfinite(scores)
        rows, cols = np.nonzero(keep)
        x1, y1, x2, y2 = (boxes[rows, cols, k] for k in range(4))
        self._records.append(np.column_stack([
            np.asarray(ids, dtype=np.float64)[rows], category[rows, cols].astype(np.float64),
            x1, y1, x2 - (x1 - 1), y2 - (y1 - 1), scores[rows, cols].astype(np.float64)]))

    def _image_ids_for(self, image_ids, batch):
        if image_ids is None:
            end = self._next_image + batch
            if end > len(self._sorted_image_ids):
                raise ValueError(f"received predictions for {end} images but the ground truth "
                                 f"{_describe(self._gt_source)} has {len(self._sorted_image_ids)}; pass "
                                 "image_ids explicitly or reset() between evaluations")
            ids = self._sorted_image_ids[self._next_image:end]
            self._next_image = end
        else:
            ids = [int(i) for i in np.asarray(_to_numpy_any(image_ids)).reshape(-1)]
            if len(ids) != batch:
                raise ValueError(f"got {len(ids)} image_ids for a batch of {batch} images")
            unknown = sorted(set(ids) - self._images.keys())
            if unknown:
                raise ValueError(f"image ids {unknown[:_MAX_IDS_IN_MESSAGE]} are not in the ground truth "
                                 f"{_describe(self._gt_source)}")
        self._seen_images.update(ids)
        return ids

    def _results(self):
        if not self._records:
            return []
        table = np.concatenate(self._records, axis=0)
        return [{"image_id": int(r[0]), "category_id": int(r[1]), "bbox": [r[2], r[3], r[4], r[5]],
                 "score": r[6]} for r in table.tolist()]

    def _results_file(self):
        if self._save_prefix is not None:
            stamp = datetime.datetime.now().strftime("_%Y_%m_%d_%H_%M_%S")
            path = os.path.abspath(os.path.expanduser(str(self._save_prefix)) + stamp + ".json")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            return path
        handle, path = tempfile.mkstemp(prefix="coco_results_", suffix=".json")
        os.close(handle)
        return path

    def get(self):
        """Evaluate everything collected so far.

        Returns
        -------
        names : list of str
            The class names (contiguous-id order), then ``'mAP'``.
        values : list of float
            AP@[.5:.95] of each class (``nan`` without ground truth), then the mAP@[.5:.95]
            (``stats['AP']``).
        """
        if len(self._seen_images) < len(self._images):
            logger.warning("predictions received for %d of the %d ground-truth images; the others count as "
                           "images without detections", len(self._seen_images), len(self._images))
        results = self._results()
        path = self._results_file()
        try:
            with open(path, "w") as f:
                json.dump(results, f)
            self.results_path = path
            self.stats = coco_stats(self._dataset, path, backend=self._backend)
        finally:
            if self._cleanup and os.path.exists(path):
                os.remove(path)
                self.results_path = None
        self.summary = self.stats["summary"]
        per_class = self.stats["per_class"]
        values = [per_class.get(name, float("nan")) for name in self.class_names]
        self.num_inst, self.sum_metric = 1, self.stats["AP"]
        return self.class_names + ["mAP"], values + [self.stats["AP"]]


def _to_numpy_any(x):
    if is_ndarray(x):
        return x.asnumpy()
    if isinstance(x, (list, tuple)):
        return [_to_numpy_any(v) for v in x]
    return x
