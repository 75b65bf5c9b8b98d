"""COCO evaluation against published fixture values, pycocotools run directly, and gluoncv's metric."""
from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import sys
import warnings

import numpy as np
import pytest

from gluon_ssd.eval import COCO_STAT_NAMES, COCODetectionMetric, coco_stats
from tests.helpers import DATA

REVIEW_COCO = DATA / "metrics_review_coco"
TOY = DATA / "metrics_review_toyexample"
DATABASE = DATA / "metrics_review_database"
TINYCOCO_GT = DATA / "coco_sample/tinycoco/annotations/instances_train2017.json"  # holds val2017 images

# The optional faster-coco-eval backend is pinned in both stacks' test requirements.
BACKENDS = ["pycocotools", "faster"]


def _load(path):
    with open(path) as f:
        return json.load(f)


def _pycocotools_stats(gt_dataset, detections, cat_ids=None):
    """The reference: pycocotools' own COCOeval on the same inputs, nothing of ours in between (``cat_ids``:
    evaluate those categories only)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(gt_dataset)
        gt.createIndex()
        dt = gt.loadRes(copy.deepcopy(detections))
        evaluator = COCOeval(gt, dt, "bbox")
        if cat_ids is not None:
            evaluator.params.catIds = list(cat_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def _stat_list(stats):
    return [stats[name] for name in COCO_STAT_NAMES]


# ------------------------------------------------------------------------------ published fixture values
# review_object_detection_metrics tests/gluon_ssd/eval/test_coco.py, "obtained with coco's official implementation".
PUBLISHED_REVIEW_COCO = [0.503647, 0.696973, 0.571667, 0.593252, 0.557991, 0.489363,
                         0.386813, 0.593680, 0.595353, 0.654764, 0.603130, 0.553744]


@pytest.mark.parametrize("backend", BACKENDS)
def test_review_coco_published(backend):
    stats = coco_stats(REVIEW_COCO / "gts/sampled_gts_bbox_area.json",
                       REVIEW_COCO / "dets/sampled_bbox_results.json", backend=backend)
    np.testing.assert_allclose(_stat_list(stats), PUBLISHED_REVIEW_COCO, atol=1e-6)
    assert len(stats["per_class"]) == 80
    # Per class: pycocotools itself restricted to one category gives that category's AP@[.5:.95] as stats[0].
    gt = _load(REVIEW_COCO / "gts/sampled_gts_bbox_area.json")
    for name in ("person", "dog"):
        cat_id = next(c["id"] for c in gt["categories"] if c["name"] == name)
        dets = _load(REVIEW_COCO / "dets/sampled_bbox_results.json")["annotations"]
        alone = _pycocotools_stats(gt, dets, cat_ids=[cat_id])
        assert alone.stats[0] > 0.1, name  # a class the fixture has: the comparison below compares numbers
        assert stats["per_class"][name] == pytest.approx(alone.stats[0], abs=1e-9), name


def test_annotation_id_zero_is_renumbered(caplog):
    gt_path = TOY / "gts_coco_format/toy_example_coco.JSON"
    dets = _load(TOY / "dets_coco_format/coco_dets.json")["annotations"]
    gt = _load(gt_path)
    assert 0 in [a["id"] for a in gt["annotations"]]
    # The trap is real: pycocotools on the file as it is loses a true positive.
    trap = _pycocotools_stats(gt, dets).stats
    assert trap[0] == pytest.approx(0.495217, abs=1e-6)
    # Reference: pycocotools on a copy with ids shifted by +1
    # (README of the fixture: AP .597923, AP50 .890264).
    shifted = copy.deepcopy(gt)
    for ann in shifted["annotations"]:
        ann["id"] += 1
    reference = _pycocotools_stats(shifted, dets).stats
    with caplog.at_level(logging.WARNING, logger="gluon_ssd.eval.coco"):
        stats = coco_stats(gt_path, TOY / "dets_coco_format/coco_dets.json")
    assert "renumbered" in caplog.text
    np.testing.assert_allclose(_stat_list(stats), reference, atol=1e-12)
    assert stats["AP"] == pytest.approx(0.597923, abs=1e-6)
    assert stats["AP50"] == pytest.approx(0.890264, abs=1e-6)
    assert stats["per_class"] == {"cat": pytest.approx(0.597923, abs=1e-6)}
    assert _load(gt_path) == gt  # the file itself is untouched


# README (C): pycocotools 2.0.11 == upstream coco_evaluator, after mapping by file_name / category name.
DATABASE_COCO = [0.346958, 0.610030, 0.353714, 0.075181, 0.339482, 0.497881,
                 0.373505, 0.520647, 0.522570, 0.158333, 0.446662, 0.580923]


def _database_detections_remapped():
    gt = _load(DATABASE / "gts/coco_format_v1/instances_default.json")
    det = _load(DATABASE / "dets/coco_format/coco_dets.json")
    image_by_name = {img["file_name"]: img["id"] for img in gt["images"]}
    category_by_name = {cat["name"]: cat["id"] for cat in gt["categories"]}
    image_map = {img["id"]: image_by_name[img["file_name"]] for img in det["images"]}
    category_map = {cat["id"]: category_by_name[cat["name"]] for cat in det["categories"]}
    return [dict(a, image_id=image_map[a["image_id"]], category_id=category_map[a["category_id"]])
            for a in det["annotations"]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_review_database_matched_by_name(tmp_path, backend):
    results = tmp_path / "remapped.json"
    results.write_text(json.dumps(_database_detections_remapped()))
    stats = coco_stats(DATABASE / "gts/coco_format_v1/instances_default.json", results, backend=backend)
    np.testing.assert_allclose(_stat_list(stats), DATABASE_COCO, atol=1e-6)


def test_unknown_ids_raise_clear_error():
    det_path = DATABASE / "dets/coco_format/coco_dets.json"
    with pytest.raises(ValueError) as err:
        coco_stats(DATABASE / "gts/coco_format_v1/instances_default.json", det_path)
    message = str(err.value)
    assert str(det_path) in message
    assert "image ids not in the ground truth: 0" in message
    assert "category ids not in the ground truth: 0" in message
    assert "file_name" in message


# ------------------------------------------------------------------------------------- randomized sets
def _random_coco(rng, n_images=24, n_dets=12):
    categories = [{"id": cid, "name": f"cls{cid}"} for cid in (1, 3, 4, 9, 20)]  # id 20: no ground truth
    images, annotations, detections = [], [], []
    for image_id in range(1, n_images + 1):
        width, height = int(rng.integers(200, 640)), int(rng.integers(200, 640))
        images.append({"id": image_id * 7, "width": width, "height": height, "file_name": f"{image_id}.jpg"})
        boxes = []
        for _ in range(int(rng.integers(0, 6))):
            w, h = rng.uniform(4, 200), rng.uniform(4, 200)
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
            cat = int(rng.choice([1, 3, 4, 9]))
            annotations.append({"id": len(annotations) + 1, "image_id": image_id * 7, "category_id": cat,
                                "bbox": [x, y, w, h], "area": w * h * rng.uniform(0.5, 1.0),
                                "iscrowd": int(rng.random() < 0.1)})
            boxes.append((x, y, w, h, cat))
        for _ in range(int(rng.integers(0, n_dets))):
            if boxes and rng.random() < 0.7:
                x, y, w, h, cat = boxes[int(rng.integers(len(boxes)))]
                x, y = x + rng.normal(0, 0.1 * w), y + rng.normal(0, 0.1 * h)
                w, h = w * rng.uniform(0.8, 1.2), h * rng.uniform(0.8, 1.2)
                if rng.random() < 0.15:
                    cat = int(rng.choice([1, 3, 4, 9]))
            else:
                w, h = rng.uniform(4, 150), rng.uniform(4, 150)
                x, y, cat = rng.uniform(0, width - 4), rng.uniform(0, height - 4), int(rng.choice([1, 3, 4]))
            detections.append({"image_id": image_id * 7, "category_id": cat, "bbox": [x, y, w, h],
                               "score": float(np.round(rng.random(), 2))})
    return {"images": images, "annotations": annotations, "categories": categories}, detections


@pytest.mark.parametrize("seed", range(3))
def test_coco_stats_equal_to_pycocotools(tmp_path, seed):
    gt, detections = _random_coco(np.random.default_rng(seed))
    gt_path, det_path = tmp_path / "gt.json", tmp_path / "det.json"
    gt_path.write_text(json.dumps(gt))
    det_path.write_text(json.dumps(detections))
    reference = _pycocotools_stats(gt, detections)
    ours = coco_stats(gt_path, det_path)
    np.testing.assert_allclose(_stat_list(ours), reference.stats, atol=1e-12, rtol=0)
    precision = reference.eval["precision"][:, :, :, 0, -1]
    for k, cat_id in enumerate(reference.params.catIds):
        p = precision[:, :, k]
        expected = p[p > -1].mean() if (p > -1).any() else np.nan
        np.testing.assert_allclose(ours["per_class"][f"cls{cat_id}"], expected, atol=1e-12, equal_nan=True)
    assert np.isnan(ours["per_class"]["cls20"])


@pytest.mark.parametrize("seed", range(3))
def test_coco_stats_faster_equal_to_pycocotools(tmp_path, seed):
    gt, detections = _random_coco(np.random.default_rng(seed))
    det_path = tmp_path / "det.json"
    det_path.write_text(json.dumps(detections))
    reference = _pycocotools_stats(gt, detections)
    ours = coco_stats(gt, det_path)
    before = copy.deepcopy(gt)
    faster = coco_stats(gt, det_path, backend="faster")
    assert gt == before  # a dict given as ground truth is not modified
    np.testing.assert_allclose(_stat_list(faster), reference.stats, atol=1e-12, rtol=0)
    assert faster["per_class"].keys() == ours["per_class"].keys()
    np.testing.assert_allclose(list(faster["per_class"].values()), list(ours["per_class"].values()),
                               atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_results_give_zero_without_warning(tmp_path, backend):
    gt, _ = _random_coco(np.random.default_rng(5))
    det_path = tmp_path / "empty.json"
    det_path.write_text("[]")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stats = coco_stats(gt, det_path, backend=backend)
    assert stats["AP"] == 0.0 and stats["AR100"] == 0.0
    assert stats["per_class"]["cls1"] == 0.0 and np.isnan(stats["per_class"]["cls20"])


def test_faster_backend_missing_says_what_to_do(monkeypatch):
    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)
    with pytest.raises(ImportError, match="pip install faster-coco-eval"):
        coco_stats(REVIEW_COCO / "gts/sampled_gts_bbox_area.json", [], backend="faster")


def test_missing_area_and_iscrowd_are_filled(caplog):
    gt, detections = _random_coco(np.random.default_rng(9))
    bare = copy.deepcopy(gt)
    for ann in bare["annotations"]:
        ann["area"] = ann["bbox"][2] * ann["bbox"][3]
        ann["iscrowd"] = 0
    reference = _pycocotools_stats(bare, detections).stats
    for ann in bare["annotations"]:
        del ann["area"], ann["iscrowd"]
    with caplog.at_level(logging.WARNING, logger="gluon_ssd.eval.coco"):
        stats = coco_stats(bare, detections)
    assert "lack 'area'" in caplog.text
    np.testing.assert_allclose(_stat_list(stats), reference, atol=1e-12)


def test_bad_arguments():
    with pytest.raises(ValueError, match="backend"):
        coco_stats(REVIEW_COCO / "gts/sampled_gts_bbox_area.json", [], backend="fast")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        coco_stats(REVIEW_COCO / "nope.json", [])
    with pytest.raises(ValueError, match="entry 0"):
        coco_stats(REVIEW_COCO / "gts/sampled_gts_bbox_area.json", [{"image_id": 42, "bbox": [0, 0, 1, 1]}])


# ----------------------------------------------------------------------- COCODetectionMetric vs gluoncv
class _GluoncvDatasetView:
    """The three attributes gluoncv's COCODetectionMetric reads from a COCODetection dataset."""

    def __init__(self, path):
        from pycocotools.coco import COCO

        with contextlib.redirect_stdout(io.StringIO()):
            self.coco = COCO(str(path))
        cat_ids = self.coco.getCatIds()
        self.classes = [c["name"] for c in self.coco.loadCats(cat_ids)]
        self.contiguous_id_to_json = dict(enumerate(cat_ids))


def _network_outputs(rng, gt, data_shape, batch_size, n_pred=40):
    """Per batch (sorted image ids): boxes in network-input pixels near the GT, labels with -1 padding."""
    height, width = data_shape
    json_to_contiguous = {c["id"]: i for i, c in enumerate(gt["categories"])}
    images = sorted(gt["images"], key=lambda img: img["id"])
    anns_by_image = {}
    for ann in gt["annotations"]:
        anns_by_image.setdefault(ann["image_id"], []).append(ann)
    batches = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        boxes = np.zeros((len(chunk), n_pred, 4), np.float32)
        labels = -np.ones((len(chunk), n_pred, 1), np.float32)
        scores = -np.ones((len(chunk), n_pred, 1), np.float32)
        for b, img in enumerate(chunk):
            anns = anns_by_image.get(img["id"], [])
            n = int(rng.integers(0, n_pred))
            sx, sy = width / img["width"], height / img["height"]
            for k in range(n):
                if anns and rng.random() < 0.7:
                    ann = anns[int(rng.integers(len(anns)))]
                    x, y, w, h = ann["bbox"]
                    box = np.array([x * sx, y * sy, (x + w) * sx, (y + h) * sy]) + rng.normal(0, 3, 4)
                    label = json_to_contiguous[ann["category_id"]]
                else:
                    xy = rng.uniform(0, width - 20, 2)
                    box = np.concatenate([xy, xy + rng.uniform(5, 100, 2)])
                    label = int(rng.integers(0, 80))
                boxes[b, k] = box
                labels[b, k, 0] = label
                scores[b, k, 0] = rng.random()
        batches.append((boxes, labels, scores))
    return batches


@pytest.mark.mxnet
def test_coco_detection_metric_equal_to_gluoncv(gcv, tmp_path):
    gt = _load(TINYCOCO_GT)
    data_shape = (300, 300)
    batches = _network_outputs(np.random.default_rng(0), gt, data_shape, batch_size=8)
    from gluoncv.utils.metrics.coco_detection import COCODetectionMetric as GluoncvMetric

    ref = GluoncvMetric(_GluoncvDatasetView(TINYCOCO_GT), str(tmp_path / "gcv"), use_time=False,
                        cleanup=False, data_shape=data_shape)
    ours = COCODetectionMetric(TINYCOCO_GT, data_shape=data_shape, save_prefix=str(tmp_path / "ours"),
                               cleanup=False)
    for boxes, labels, scores in batches:
        ref.update(boxes, labels, scores)
        ours.update(boxes, labels, scores)
    with warnings.catch_warnings():
        # gluoncv averages empty per-class arrays for the categories without ground truth.
        warnings.simplefilter("ignore", RuntimeWarning)
        ref_names, ref_values = ref.get()
    names, values = ours.get()

    ref_results = _load(tmp_path / "gcv.json")
    our_results = _load(ours.results_path)
    assert len(our_results) == len(ref_results) > 100
    for mine, theirs in zip(our_results, ref_results):
        assert mine["image_id"] == theirs["image_id"] and mine["category_id"] == theirs["category_id"]
        assert mine["score"] == theirs["score"]
        np.testing.assert_allclose(mine["bbox"], theirs["bbox"], atol=1e-9, rtol=0)
    np.testing.assert_allclose(_stat_list(ours.stats), ref._coco_eval.stats, atol=1e-12, rtol=0)
    assert names[:-1] == ref_names[1:-1] and names[-1] == "mAP"
    assert [f"{100 * v:.1f}" for v in values] == ref_values[1:]
    assert values[-1] > 0.05


def test_coco_detection_metric_explicit_ids_sizes_and_names(tmp_path):
    gt = _load(TINYCOCO_GT)
    data_shape = (256, 320)
    batches = _network_outputs(np.random.default_rng(1), gt, data_shape, batch_size=32)
    boxes, labels, scores = batches[0]
    images = sorted(gt["images"], key=lambda img: img["id"])
    names = [c["name"] for c in gt["categories"]]
    in_order = COCODetectionMetric(TINYCOCO_GT, classes=names, data_shape=data_shape)
    in_order.update(boxes, labels, scores)
    # Same outputs, reversed order, ids and (width, height) given explicitly, category ids as a dict.
    shuffled = COCODetectionMetric(TINYCOCO_GT, classes={i: c["id"] for i, c in enumerate(gt["categories"])},
                                   data_shape=data_shape)
    order = np.arange(len(images))[::-1]
    shuffled.update(boxes[order], labels[order], scores[order], image_ids=[images[i]["id"] for i in order],
                    image_sizes=np.array([[images[i]["width"], images[i]["height"]] for i in order]))
    names_a, values_a = in_order.get()
    names_b, values_b = shuffled.get()
    assert names_a == names_b == names + ["mAP"]
    np.testing.assert_allclose(values_a, values_b, atol=1e-12, equal_nan=True)
    assert values_a[-1] > 0.05
    assert in_order.results_path is None  # cleaned up
    with pytest.raises(ValueError, match="image ids \\[12345\\]"):
        shuffled.update(boxes[:1], labels[:1], scores[:1], image_ids=[12345])
    with pytest.raises(ValueError, match="not categories"):
        COCODetectionMetric(TINYCOCO_GT, classes=["person", "unicorn"])


def test_coco_detection_metric_no_predictions(caplog):
    metric = COCODetectionMetric(TINYCOCO_GT)
    with caplog.at_level(logging.WARNING, logger="gluon_ssd.eval.coco"), warnings.catch_warnings():
        warnings.simplefilter("error")
        names, values = metric.get()
    assert names[-1] == "mAP" and values[-1] == 0.0
    assert "0 of the 32" in caplog.text
