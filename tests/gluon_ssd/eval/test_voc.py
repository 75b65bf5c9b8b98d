"""VOC metrics against published fixture values, hand-worked cases and gluoncv's own metrics.

The tests that ask gluoncv (marked ``mxnet``) run on the MXNet stack only; on the PyTorch stack gluoncv's
answers on randomized sets come from tests/references (tests/test_references.py).
"""
from __future__ import annotations

import re
import warnings
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from gluon_ssd.eval import PRCurve, VOC07MApMetric, VOCMApMetric, voc_iou
from tests.helpers import DATA

ODM = DATA / "metrics_object_detection_metrics"
TOY = DATA / "metrics_review_toyexample"
DATABASE = DATA / "metrics_review_database"


# ----------------------------------------------------------------------------------------- fixture readers
def _object_detection_metrics():
    """Per image: GT corners (x2 = x + w, as the reference Evaluator), dets (score, corners)."""
    images = []
    for gt_file in sorted((ODM / "groundtruths").glob("*.txt")):
        gt = np.loadtxt(gt_file, usecols=(1, 2, 3, 4), ndmin=2)
        det = np.loadtxt(ODM / "detections" / gt_file.name, usecols=(1, 2, 3, 4, 5), ndmin=2)
        gt_boxes = np.hstack([gt[:, :2], gt[:, :2] + gt[:, 2:]])
        det_boxes = np.hstack([det[:, 1:3], det[:, 1:3] + det[:, 3:]])
        images.append((det_boxes, det[:, 0], gt_boxes))
    return images


def _feed_single_class(metric, images):
    for det_boxes, scores, gt_boxes in images:
        # One-image batches: the form gluoncv's metric accepts too.
        metric.update(det_boxes[None], np.zeros((1, len(scores))), scores[None], gt_boxes[None],
                      np.zeros((1, len(gt_boxes))))
    return metric


def _read_voc_xml(path, classes):
    root = ET.parse(path).getroot()
    boxes, labels, difficult = [], [], []
    for obj in root.iter("object"):
        box = obj.find("bndbox")
        boxes.append([float(box.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")])
        labels.append(classes.index(obj.find("name").text.strip()))
        flag = obj.find("difficult")
        difficult.append(int(flag.text) if flag is not None else 0)
    return np.array(boxes, dtype=float).reshape(-1, 4), np.array(labels), np.array(difficult)


def _feed_voc_folder(metric, xml_dir, det_dir, classes, det_columns, use_difficult=True):
    """det_columns: 'label score box' (database) or 'score box' (toy example, one class)."""
    for xml_path in sorted(xml_dir.glob("*.xml")):
        gt_boxes, gt_labels, gt_difficult = _read_voc_xml(xml_path, classes)
        det_path = det_dir / (xml_path.stem + ".txt")
        if det_columns == "label score box":
            det = np.loadtxt(det_path, ndmin=2) if det_path.exists() else np.zeros((0, 6))
            labels, scores, boxes = det[:, 0], det[:, 1], det[:, 2:]
        else:
            det = np.loadtxt(det_path, usecols=(1, 2, 3, 4, 5), ndmin=2) if det_path.exists() else None
            det = np.zeros((0, 5)) if det is None else det
            labels, scores, boxes = np.zeros(len(det)), det[:, 0], det[:, 1:]
        metric.update([boxes], [labels], [scores], [gt_boxes], [gt_labels],
                      [gt_difficult] if use_difficult else None)
    return metric


# ------------------------------------------------------------------------- published / staged fixture values
# review_object_detection_metrics tests/test_eval_pascal.py::test_case_1 (README of the fixture, item (3)).
PUBLISHED_ODM = {
    (0.1, "11"): 0.3333333333, (0.3, "11"): 0.2683982683, (0.5, "11"): 0.0303030303, (0.75, "11"): 0.0,
    (0.1, "all"): 0.3371980676, (0.3, "all"): 0.2456866804, (0.5, "all"): 0.0222222222, (0.75, "all"): 0.0,
}


@pytest.mark.parametrize("iou, kind", sorted(PUBLISHED_ODM))
def test_object_detection_metrics_published(iou, kind):
    # The published 11-point values use np.linspace(0, 1, 11) thresholds, identical to GluonCV's
    # np.arange(0., 1.1, 0.1): our default. exact_thresholds=True gives 0.3689 at IoU 0.1 instead.
    metric = VOC07MApMetric(iou) if kind == "11" else VOCMApMetric(iou)
    _, ap = _feed_single_class(metric, _object_detection_metrics()).get()
    assert ap == pytest.approx(PUBLISHED_ODM[iou, kind], abs=1e-9)


def test_object_detection_metrics_published_pr_curve():
    text = (ODM / "published_results" / "results.txt").read_text()
    def published(key):
        return [float(v.strip(" '")) for v in re.search(key + r": \[(.*)\]", text).group(1).split(",")]

    precision, recall = published("Precision"), published("Recall")
    curve = _feed_single_class(VOCMApMetric(0.3), _object_detection_metrics()).get_pr_curves()["0"]
    assert isinstance(curve, PRCurve) and curve.n_pos == 15
    np.testing.assert_allclose(curve.precision, precision, atol=0.005 + 1e-12)
    np.testing.assert_allclose(curve.recall, recall, atol=0.005 + 1e-12)
    assert np.all(np.diff(curve.scores) <= 0)


@pytest.mark.mxnet
def test_object_detection_metrics_tie_order(gcv):
    # Two detections tie at 0.95 (R in image 00005 is a TP, Y in 00007 a FP). The published numbers rank
    # R first (stable); gluoncv's argsort()[::-1] ranks Y first, which tie_order='gluoncv' reproduces.
    images = _object_detection_metrics()
    ref = _feed_single_class(gcv.utils.metrics.voc_detection.VOC07MApMetric(0.1), images).get()[1]
    ours = _feed_single_class(VOC07MApMetric(0.1, tie_order="gluoncv"), images).get()[1]
    stable = _feed_single_class(VOC07MApMetric(0.1), images).get()[1]
    assert ours == pytest.approx(ref, abs=1e-12)
    assert stable == pytest.approx(PUBLISHED_ODM[0.1, "11"], abs=1e-9)
    assert abs(ref - stable) > 1e-3


# Published in the toy example's README (percent, 2 decimals); exact fractions re-checked while staging.
@pytest.mark.parametrize("iou, kind, published, exact", [
    (0.5, "11", 0.8864, 39 / 44), (0.5, "all", 0.8958, 43 / 48),
    (0.75, "11", 0.4924, 65 / 132), (0.75, "all", 0.5097, 367 / 720),
])
def test_toy_example_published(iou, kind, published, exact):
    metric = VOC07MApMetric(iou) if kind == "11" else VOCMApMetric(iou)
    _feed_voc_folder(metric, TOY / "gts_vocpascal_format", TOY / "dets_classname_abs_xyx2y2", ["cat"],
                     "score box")
    ap = metric.get()[1]
    assert ap == pytest.approx(published, abs=5e-5)
    assert ap == pytest.approx(exact, abs=1e-6)


DATABASE_DIFFICULT = {  # README (B): official devkit semantics, two independent implementations
    "11": [.823485, .872727, .464646, .409091, .482517, .935065, .229091, 1, .334172, .771617,
           .242424, .485315, .974026, .303030, .383610, .636364, .636364, .676768, .742424, .747475,
           0.607511],
    "all": [.840774, .860000, .473545, .409091, .483974, .928571, .245000, 1, .339482, .787589,
            .250000, .517308, .976190, .266667, .370645, .642857, .625000, .708333, .750000, .802469,
            0.613875],
}


@pytest.mark.parametrize("kind", ["11", "all"])
def test_review_database_difficult_ignored(kind):
    classes = (DATABASE / "voc.names").read_text().split()
    metric = (VOC07MApMetric if kind == "11" else VOCMApMetric)(0.5, class_names=classes)
    _feed_voc_folder(metric, DATABASE / "gts/pascalvoc_format", DATABASE / "dets/abs_xyx2y2", classes,
                     "label score box")
    names, values = metric.get()
    assert names == classes + ["mAP"]
    np.testing.assert_allclose(values, DATABASE_DIFFICULT[kind], atol=1e-6)


def test_review_database_difficult_as_normal():
    # README (A): difficult objects counted as ordinary ground truth.
    classes = (DATABASE / "voc.names").read_text().split()
    results = []
    for metric in (VOC07MApMetric(0.5), VOCMApMetric(0.5)):
        _feed_voc_folder(metric, DATABASE / "gts/pascalvoc_format", DATABASE / "dets/abs_xyx2y2", classes,
                         "label score box", use_difficult=False)
        results.append(metric.get()[1])
    np.testing.assert_allclose(results, [0.598969, 0.610913], atol=1e-6)


# ------------------------------------------------------------------------------------- hand-worked cases
def _recall_exactly_three_tenths():
    # 10 GT, 3 perfect detections: recall tops out at exactly 0.3 with precision 1.
    gt = np.array([[[i * 20, 0, i * 20 + 10, 10] for i in range(10)]], dtype=np.float32)
    pred = gt[:, :3]
    return pred, np.zeros((1, 3)), np.array([[0.9, 0.8, 0.7]]), gt, np.zeros((1, 10))


def test_eleven_point_threshold_convention():
    # np.arange thresholds: 0.30000000000000004 is not reached -> AP = 3/11; exact j/10 -> 4/11.
    default, exact = VOC07MApMetric(), VOC07MApMetric(exact_thresholds=True)
    for m in (default, exact):
        m.update(*_recall_exactly_three_tenths())
    assert default.get()[1] == pytest.approx(3 / 11, abs=1e-12)
    assert exact.get()[1] == pytest.approx(4 / 11, abs=1e-12)


@pytest.mark.mxnet
def test_eleven_point_threshold_convention_is_gluoncvs(gcv):
    ref = gcv.utils.metrics.voc_detection.VOC07MApMetric()
    ref.update(*_recall_exactly_three_tenths())
    assert ref.get()[1] == pytest.approx(3 / 11, abs=1e-12)


def test_plus_one_pixel_iou():
    # [0,0,9,9] vs [5,0,14,9]: 5x10 pixels overlap, union 150 -> 1/3 (without +1: 4*9 / (162-36) = 0.2857).
    iou = voc_iou(np.array([[0.0, 0, 9, 9]]), np.array([[5.0, 0, 14, 9], [10.0, 0, 19, 9]]))
    np.testing.assert_allclose(iou, [[50 / 150, 0.0]], atol=1e-15)


def _iou_exactly_seven_tenths(dtype):
    # IoU = 70/100 exactly. In float32 it is 0.699999988, below the float64 0.7 but equal to float32(0.7):
    # gluoncv compares in the boxes' dtype, so the detection matches; a float64 comparison would miss it.
    gt = np.array([[[0, 0, 9, 9]]], dtype=dtype)
    pred = np.array([[[0, 0, 6, 9]]], dtype=dtype)
    return pred, np.zeros((1, 1)), np.ones((1, 1)), gt, np.zeros((1, 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_iou_threshold_boundary_in_the_boxes_dtype(dtype):
    ours = VOCMApMetric(0.7)
    ours.update(*_iou_exactly_seven_tenths(dtype))
    assert ours.get()[1] == 1.0


@pytest.mark.mxnet
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_iou_threshold_boundary_as_gluoncv(gcv, dtype):
    ref = gcv.utils.metrics.voc_detection.VOCMApMetric(0.7)
    ref.update(*_iou_exactly_seven_tenths(dtype))
    assert ref.get()[1] == 1.0


def test_matching_rules_hand_worked():
    # One image, class 0: GT a (normal), GT b (difficult).
    # det1 .9 on a -> TP; det2 .8 on a again -> FP (duplicate); det3 .7 on b -> ignored;
    # det4 .6 nowhere -> FP.
    gt = np.array([[[0, 0, 9, 9], [50, 50, 59, 59]]], dtype=np.float32)
    pred = np.array([[[0, 0, 9, 9], [1, 1, 9, 9], [50, 50, 59, 59], [100, 100, 109, 109]]], dtype=np.float32)
    metric = VOCMApMetric(class_names=["a"])
    metric.update(pred, np.zeros((1, 4, 1)), np.array([[[0.9], [0.8], [0.7], [0.6]]]), gt, np.zeros((1, 2)),
                  np.array([[0, 1]]))
    curve = metric.get_pr_curves()["a"]
    assert curve.n_pos == 1
    np.testing.assert_allclose(curve.precision, [1, 1 / 2, 1 / 3])
    np.testing.assert_allclose(curve.recall, [1, 1, 1])
    assert metric.get() == (["a", "mAP"], [1.0, 1.0])


def test_padding_rows_are_stripped():
    gt = np.array([[[0, 0, 9, 9], [-1, -1, -1, -1]]], dtype=np.float32)
    pred = np.array([[[0, 0, 9, 9], [0, 0, 9, 9], [0, 0, 9, 9]]], dtype=np.float32)
    metric = VOCMApMetric()
    metric.update(pred, np.array([[0, -1, -1]]), np.array([[0.5, 0.9, 0.8]]), gt, np.array([[0, -1]]))
    assert metric.get()[1] == 1.0


# --------------------------------------------------------------------------------------- against gluoncv
def _random_batch(rng, batch, max_pred, max_gt, n_classes, ties):
    """Integer boxes, -1 padding, difficult flags; predictions near GT, some random, some mislabeled."""
    gt_boxes = np.full((batch, max_gt, 4), -1, np.float32)
    gt_labels = -np.ones((batch, max_gt, 1), np.float32)
    gt_diff = np.zeros((batch, max_gt, 1), np.float32)
    boxes = np.full((batch, max_pred, 4), -1, np.float32)
    labels = -np.ones((batch, max_pred, 1), np.float32)
    scores = -np.ones((batch, max_pred, 1), np.float32)
    for b in range(batch):
        m = rng.integers(0, max_gt + 1)
        xy = rng.integers(0, 80, (m, 2))
        gt_boxes[b, :m] = np.hstack([xy, xy + rng.integers(5, 40, (m, 2))])
        gt_labels[b, :m, 0] = rng.integers(0, n_classes, m)
        gt_diff[b, :m, 0] = rng.random(m) < 0.2
        n = rng.integers(0, max_pred + 1)
        source = rng.integers(0, max(m, 1), n)
        base = gt_boxes[b, source] if m else np.tile([10, 10, 30, 30], (n, 1))
        box = base + rng.integers(-6, 7, (n, 4))
        box[:, 2:] = np.maximum(box[:, 2:], box[:, :2] + 1)
        far = rng.random(n) < 0.3
        box[far] = np.tile(rng.integers(0, 80, (far.sum(), 2)), 2) + [0, 0, 20, 20]
        boxes[b, :n] = box
        label = gt_labels[b, source, 0] if m else rng.integers(0, n_classes, n)
        relabel = (rng.random(n) < 0.2) | (label < 0)
        labels[b, :n, 0] = np.where(relabel, rng.integers(0, n_classes, n), label)
        scores[b, :n, 0] = np.round(rng.random(n), 1) if ties else rng.random(n)
    return boxes, labels, scores, gt_boxes, gt_labels, gt_diff


def _compare(gcv, batches, n_classes, tie_order, as_ndarray=False, iou=0.5):
    import mxnet as mx

    names = [f"c{i}" for i in range(n_classes)]
    ref_module = gcv.utils.metrics.voc_detection
    pairs = ((VOC07MApMetric(iou, names, tie_order=tie_order), ref_module.VOC07MApMetric(iou, names)),
             (VOCMApMetric(iou, names, tie_order=tie_order), ref_module.VOCMApMetric(iou, names)))
    for ours, ref in pairs:
        for batch in batches:
            if as_ndarray:
                batch = [mx.nd.array(x) for x in batch]
            ours.update(*batch)
            ref.update(*batch)
        ours_names, ours_values = ours.get()
        ref_names, ref_values = ref.get()
        assert ours_names == ref_names
        np.testing.assert_allclose(ours_values, ref_values, atol=1e-9, rtol=0, equal_nan=True)


@pytest.mark.mxnet
@pytest.mark.parametrize("seed", range(6))
def test_equal_to_gluoncv_with_ties(gcv, seed):
    rng = np.random.default_rng(seed)
    batches = [_random_batch(rng, 8, 40, 10, 5, ties=True) for _ in range(3)]
    _compare(gcv, batches, 5, tie_order="gluoncv", as_ndarray=seed % 2 == 1, iou=(0.5, 0.7, 0.3)[seed % 3])


@pytest.mark.mxnet
@pytest.mark.parametrize("seed", range(3))
def test_equal_to_gluoncv_long_tied_groups(gcv, seed):
    # >16 tied detections of one class in one image: numpy's introsort (not insertion sort) orders them.
    rng = np.random.default_rng(100 + seed)
    batches = [_random_batch(rng, 4, 100, 30, 2, ties=True) for _ in range(2)]
    _compare(gcv, batches, 2, tie_order="gluoncv")


@pytest.mark.mxnet
@pytest.mark.parametrize("seed", range(3))
def test_equal_to_gluoncv_default_without_ties(gcv, seed):
    rng = np.random.default_rng(200 + seed)
    batches = [_random_batch(rng, 8, 40, 10, 5, ties=False) for _ in range(3)]
    _compare(gcv, batches, 5, tie_order="stable")


@pytest.mark.mxnet
def test_list_inputs_equal_to_gluoncv(gcv):
    import mxnet as mx

    rng = np.random.default_rng(7)
    batch = _random_batch(rng, 6, 30, 8, 4, ties=False)
    ref_module = gcv.utils.metrics.voc_detection
    # Per-device lists, as gluoncv's multi-GPU eval loop passes them.
    ours, ref = VOC07MApMetric(), ref_module.VOC07MApMetric()
    per_device = [[mx.nd.array(x[:3]), mx.nd.array(x[3:])] for x in batch]
    ours.update(*per_device)
    ref.update(*per_device)
    assert ours.get() == pytest.approx(ref.get(), abs=1e-12)
    # Per-image lists with a different number of detections each (gluoncv needs one update per image).
    ours, ref = VOC07MApMetric(), ref_module.VOC07MApMetric()
    boxes, labels, scores, gt_boxes, gt_labels, gt_diff = batch
    ours.update([boxes[i, :5 + i] for i in range(6)], [labels[i, :5 + i] for i in range(6)],
                [scores[i, :5 + i] for i in range(6)], list(gt_boxes), list(gt_labels), list(gt_diff))
    for i in range(6):
        one = slice(i, i + 1)
        ref.update(boxes[one, :5 + i], labels[one, :5 + i], scores[one, :5 + i], gt_boxes[one],
                   gt_labels[one], gt_diff[one])
    assert ours.get()[1] == pytest.approx(ref.get()[1], abs=1e-12)


# ------------------------------------------------------------------------------------ edge cases, errors
def test_empty_predictions_give_zero_without_warning():
    gt = np.array([[[0, 0, 9, 9]]], dtype=np.float32)
    for metric in (VOC07MApMetric(class_names=["a", "b"]), VOCMApMetric(class_names=["a", "b"])):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            metric.update(np.zeros((1, 0, 4)), np.zeros((1, 0)), np.zeros((1, 0)), gt, np.zeros((1, 1)))
            metric.update(np.full((1, 2, 4), -1.0), -np.ones((1, 2)), -np.ones((1, 2)), gt, np.zeros((1, 1)))
            names, values = metric.get()
        assert names == ["a", "b", "mAP"]
        assert values[0] == 0.0 and np.isnan(values[1]) and values[2] == 0.0


def test_nothing_seen_gives_nan_without_warning():
    metric = VOC07MApMetric()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(metric.get()[1])
        metric.update(np.array([[[0, 0, 9, 9]]]), np.zeros((1, 1)), np.ones((1, 1)), np.zeros((1, 0, 4)),
                      np.zeros((1, 0)))
        assert np.isnan(metric.get()[1])  # predictions but no ground truth: AP undefined
    metric.reset()
    assert metric.get_pr_curves() == {}


def test_reset_forgets():
    gt = np.array([[[0, 0, 9, 9]]], dtype=np.float32)
    metric = VOCMApMetric()
    metric.update(gt, np.zeros((1, 1)), np.ones((1, 1)), gt, np.zeros((1, 1)))
    assert metric.get()[1] == 1.0
    metric.reset()
    metric.update(gt + 100, np.zeros((1, 1)), np.ones((1, 1)), gt, np.zeros((1, 1)))
    assert metric.get()[1] == 0.0


def test_bad_input_messages():
    with pytest.raises(ValueError, match="tie_order"):
        VOCMApMetric(tie_order="random")
    with pytest.raises(ValueError, match="iou_thresh"):
        VOCMApMetric(iou_thresh=1.5)
    with pytest.raises(TypeError, match="class_names"):
        VOCMApMetric(class_names="cat")
    metric = VOCMApMetric()
    with pytest.raises(ValueError, match="batch size 1 but pred_bboxes has 2"):
        metric.update(np.zeros((2, 3, 4)), np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((1, 3, 4)),
                      np.zeros((1, 3)))
    with pytest.raises(ValueError, match="batched"):
        metric.update(np.zeros((3, 4)), np.zeros(3), np.zeros(3), np.zeros((3, 4)), np.zeros(3))


# ------------------------------------------------------------- numpy 1.23's order of equal scores
def _sort_probes():
    from tests.references import load

    ref = load("voc_metrics")
    sizes = sorted(int(k.split("_")[2]) for k in ref if k.startswith("sort_probe_") and k.endswith("_argsort"))
    return ref, sizes


def test_numpy123_argsort_gives_the_stored_numpy_1_23_orders():
    """gluoncv ranks detections with numpy's default argsort; its order of equal values is the algorithm's.
    numpy123_argsort gives what numpy 1.23.5 (the numpy gluoncv runs with) wrote into tests/references for
    tie-heavy probes with NaNs (16 to 5000 values: insertion sort, quicksort partitions), and the introsort's
    heapsort gives numpy's heapsort, on whatever numpy runs the test (numpy 2's own argsort orders ties otherwise
    on AVX-512 CPUs)."""
    from gluon_ssd.eval.argsort import _heapsort, numpy123_argsort

    ref, sizes = _sort_probes()
    assert sizes == [16, 17, 33, 100, 1000, 5000]
    for size in sizes:
        values = ref[f"sort_probe_{size}"]
        np.testing.assert_array_equal(numpy123_argsort(values), ref[f"sort_probe_{size}_argsort"], err_msg=str(size))
        keys = [(1.0, 0.0) if x != x else (0.0, float(x)) for x in values.tolist()]
        order = list(range(size))
        _heapsort(keys, order, 0, size - 1)
        np.testing.assert_array_equal(order, ref[f"sort_probe_{size}_heapsort"], err_msg=f"heapsort {size}")


@pytest.mark.mxnet
def test_numpy123_argsort_is_numpy_1_23s_argsort_live():
    """Against numpy 1.23 itself (the MXNet stack's numpy): random tie-heavy arrays of every size up to 3000."""
    from gluon_ssd.eval.argsort import numpy123_argsort

    assert np.__version__.startswith("1.23."), np.__version__
    rng = np.random.default_rng(7)
    for trial in range(300):
        size = int(rng.integers(0, 40)) if trial % 3 == 0 else int(rng.integers(0, 3000))
        values = np.round(rng.random(size), int(rng.integers(0, 3))).astype(np.float32 if trial % 2 else np.float64)
        if trial % 5 == 0:
            values[rng.random(size) < 0.1] = np.nan
        np.testing.assert_array_equal(numpy123_argsort(values), values.argsort(), err_msg=f"trial {trial}")
