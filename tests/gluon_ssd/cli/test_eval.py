"""The evaluation loop (gluon_ssd.eval.loop) and eval_ssd.py, end to end on real images.

Reference: gluoncv itself. A seeded gluoncv model writes the parameter file; gluoncv's own network,
``SSDDefaultValTransform``, dataset readers and metrics score the same images (every one of them, the
last partial batch included), the way GluonCV's eval_ssd.py feeds its metrics. Our CLI and ``evaluate``
must give the same numbers.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import mxnet as mx
import numpy as np
import pytest

import eval_ssd
from gluon_ssd import get_model
from gluon_ssd.data import VOCDetection
from gluon_ssd.eval import VOC07MApMetric
from gluon_ssd.eval.loop import EvalResult, benchmark, evaluate
from tests.helpers import DATA, ROOT, build_reference, photo_batch, randomize

VOC_ROOT = DATA / "voc_sample" / "VOCdevkit"
TINYCOCO = DATA / "coco_sample" / "tinycoco"
COCO_SPLIT = "instances_train2017"  # 32 images; the folder names are swapped upstream
COCO_IMAGES = "images/train2017"
SHAPE = 300
VOC_BATCH = 7  # 45 = 6 * 7 + 3: the last batch is partial
COCO_BATCH = 5  # 32 = 6 * 5 + 2
# Random weights rarely hit a COCO box at IoU >= 0.5 among 80 classes; mobilenet0.25's anchors cover only
# the top-left of the image (a GluonCV config bug), so the COCO comparison uses mobilenet1.0 (at 300).
COCO_MODEL = "ssd_512_mobilenet1.0_coco"
PROBE = str(VOC_ROOT / "VOC2012/JPEGImages/2007_000027.jpg")


def _cli(*argv):
    return eval_ssd.main([str(a) for a in argv])


def _voc_args(params, out_dir, *extra):
    return ["--network", "mobilenet0.25", "--data-shape", SHAPE, "--dataset", "voc", "--dataset-root", VOC_ROOT,
            "--splits", "2012_test", "--batch-size", VOC_BATCH, "-j", 0, "--pretrained", params,
            "--out-dir", out_dir, "--no-progress", *extra]


def _coco_args(params, out_dir, *extra, network=COCO_MODEL):
    return ["--network", network, "--data-shape", SHAPE, "--dataset", "coco", "--dataset-root", TINYCOCO,
            "--splits", COCO_SPLIT, "--image-dir", COCO_IMAGES, "--batch-size", COCO_BATCH, "-j", 0,
            "--pretrained", params, "--out-dir", out_dir, "--no-progress", *extra]


def _gluoncv_predictions(gcv, net, dataset, batch_size):
    """GluonCV's validation loop (eval_ssd.py's ``validate``) with ``last_batch='keep'``: per batch the
    network outputs with boxes clipped to the input, and the labels."""
    from gluoncv.data.batchify import Pad, Stack, Tuple
    from gluoncv.data.transforms.presets.ssd import SSDDefaultValTransform

    loader = mx.gluon.data.DataLoader(
        dataset.transform(SSDDefaultValTransform(SHAPE, SHAPE)), batch_size, shuffle=False,
        last_batch="keep", batchify_fn=Tuple(Stack(), Pad(pad_val=-1)), num_workers=0)
    net.set_nms(nms_thresh=0.45, nms_topk=400)
    net.hybridize()
    batches = []
    for x, y in loader:
        x = x.as_in_context(mx.cpu())  # gluoncv's Stack allocates in shared memory
        ids, scores, boxes = net(x)
        batches.append((ids, scores, boxes.clip(0, x.shape[2]), y))
    return batches


def _feed_voc(metric, batches):
    metric.reset()
    for ids, scores, boxes, y in batches:
        metric.update(boxes, ids, scores, y.slice_axis(axis=-1, begin=0, end=4),
                      y.slice_axis(axis=-1, begin=4, end=5), y.slice_axis(axis=-1, begin=5, end=6))
    return metric.get()


def _save_seeded(gcv, name, path):
    ref = build_reference(gcv, name)
    randomize(ref, seed=0, probe=photo_batch(gcv, [PROBE], SHAPE, SHAPE))
    ref.save_parameters(str(path))
    return ref


@pytest.fixture(scope="module")
def voc_model(gcv, tmp_path_factory):
    """(gluoncv reference net, its parameter file, gluoncv's per-batch outputs on the 45 VOC2012 images)."""
    path = tmp_path_factory.mktemp("voc_model") / "ssd_300_mobilenet0.25_voc.params"
    ref = _save_seeded(gcv, "ssd_300_mobilenet0.25_voc", path)
    dataset = gcv.data.VOCDetection(str(VOC_ROOT), splits=[(2012, "test")])
    assert len(dataset) == 45
    return ref, path, _gluoncv_predictions(gcv, ref, dataset, VOC_BATCH)


@pytest.fixture(scope="module")
def coco_url_root(tmp_path_factory):
    """tinycoco in the folders its coco_url names (what gluoncv's COCODetection reads): symlinks only."""
    root = tmp_path_factory.mktemp("coco_url_layout")
    (root / "annotations").symlink_to(TINYCOCO / "annotations")
    (root / "val2017").symlink_to(TINYCOCO / "images/train2017")
    return root


@pytest.fixture(scope="module")
def coco_model(gcv, tmp_path_factory, coco_url_root):
    """(parameter file, gluoncv's COCODetectionMetric stats, per-class values and detections JSON)."""
    from gluoncv.utils.metrics.coco_detection import COCODetectionMetric as GluoncvCOCOMetric

    tmp = tmp_path_factory.mktemp("coco_model")
    path = tmp / f"{COCO_MODEL}.params"
    ref = _save_seeded(gcv, COCO_MODEL, path)
    dataset = gcv.data.COCODetection(str(coco_url_root), splits=COCO_SPLIT, skip_empty=False)
    assert len(dataset) == 32
    metric = GluoncvCOCOMetric(dataset, str(tmp / "gluoncv"), use_time=False, cleanup=False,
                               data_shape=(SHAPE, SHAPE))
    for ids, scores, boxes, _ in _gluoncv_predictions(gcv, ref, dataset, COCO_BATCH):
        metric.update(boxes, ids, scores)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # gluoncv averages empty arrays
        names, values = metric.get()
    detections = json.loads((tmp / "gluoncv.json").read_text())
    return path, np.asarray(metric._coco_eval.stats), dict(zip(names[1:-1], values[1:-1])), detections


# ------------------------------------------------------------------------------------- end to end
def test_cli_voc_equals_gluoncv_on_every_image(gcv, voc_model, tmp_path, capsys):
    _, params, batches = voc_model
    gcv_metric = gcv.utils.metrics.voc_detection.VOC07MApMetric(
        iou_thresh=0.5, class_names=VOCDetection(VOC_ROOT, splits=((2012, "test"),)).classes)
    # What GluonCV's own eval_ssd.py reports (its rollover loader never scores the last 3 images) ...
    _, rollover_values = _feed_voc(gcv_metric, batches[:-1])
    # ... and the reference: all 45 images.
    ref_names, ref_values = _feed_voc(gcv_metric, batches)
    assert ref_values[-1] != rollover_values[-1]  # with this seed the only true positive is in the last 3

    assert _cli(*_voc_args(params, tmp_path)) == 0
    out = capsys.readouterr().out
    results = json.loads((tmp_path / "results.json").read_text())

    assert results["images_evaluated"] == 45
    assert results["map"] == pytest.approx(ref_values[-1], abs=1e-12)
    assert results["map"] > 0  # the seeded model detects something
    for name, ap in zip(ref_names[:-1], ref_values[:-1]):
        mine = results["per_class_ap"][name]
        assert (mine is None and np.isnan(ap)) or mine == pytest.approx(ap, abs=1e-12), name
    assert f"mAP          {ref_values[-1]:.4f}" in out
    assert results["settings"]["batch_size"] == VOC_BATCH and results["metric"] == "voc07"
    assert (tmp_path / "pr_curves.png").stat().st_size > 10_000


def test_evaluate_counts_last_partial_batch(gcv, voc_model):
    """API level, at IoU 0.1 where the random model scores well above 0: same per-class APs as gluoncv
    over all 45 images, and these differ from gluoncv's over the first 42 (what its rollover loader
    scores), so the last 3 images do count. Predictions are gluoncv's, mapped to original pixels."""
    ref, params, batches = voc_model
    dataset = VOCDetection(VOC_ROOT, splits=((2012, "test"),), on_error="raise")
    classes = list(dataset.classes)
    gcv_metric = gcv.utils.metrics.voc_detection.VOC07MApMetric(iou_thresh=0.1, class_names=classes)
    _, all_values = _feed_voc(gcv_metric, batches)
    _, first_values = _feed_voc(gcv_metric, batches[:-1])

    net = get_model("ssd_300_mobilenet0.25_voc", pretrained=str(params))
    net.hybridize()
    result = evaluate(net, dataset, SHAPE, batch_size=VOC_BATCH,
                      metric=VOC07MApMetric(iou_thresh=0.1, class_names=classes), progress=False)
    assert isinstance(result, EvalResult) and result.num_images == 45
    np.testing.assert_allclose(result.values, all_values, atol=1e-12, rtol=0)
    assert all_values[-1] > 0.02 and abs(all_values[-1] - first_values[-1]) > 1e-3
    assert result.images_per_second > 0 and result.seconds > 0

    # raw predictions: gluoncv's rows (valid only), boxes scaled from 300x300 to the image
    assert [p.image_id for p in result.predictions] == dataset.image_ids
    k = 0
    for ids, scores, boxes, _ in batches:
        ids, scores, boxes = ids.asnumpy()[..., 0], scores.asnumpy()[..., 0], boxes.asnumpy()
        for row in range(len(ids)):
            mine = result.predictions[k]
            w, h = dataset.image_size(k)
            keep = ids[row] >= 0
            np.testing.assert_array_equal(mine.class_ids, ids[row][keep])
            np.testing.assert_allclose(mine.scores, scores[row][keep], atol=1e-6, rtol=0)
            scale = np.array([w, h, w, h]) / SHAPE
            np.testing.assert_allclose(mine.boxes, boxes[row][keep] * scale, atol=1e-3, rtol=0)
            k += 1
    assert k == 45
    # the network's own NMS settings are restored
    assert (net.nms_thresh, net.nms_topk, net.post_nms) == (0.45, 400, 100)

    # batches split over two contexts (45 = 5 * 8 + 5: the last one 3 + 2), as training's validation does
    two = evaluate(net, dataset, SHAPE, batch_size=8, ctx=[mx.cpu(0), mx.cpu(1)],
                   metric=VOC07MApMetric(iou_thresh=0.1, class_names=classes), progress=False)
    np.testing.assert_allclose(two.values, all_values, atol=1e-12, rtol=0)


def test_cli_coco_equals_gluoncv(coco_model, tmp_path, capsys):
    params, ref_stats, ref_per_class, ref_detections = coco_model
    assert _cli(*_coco_args(params, tmp_path)) == 0
    out = capsys.readouterr().out
    results = json.loads((tmp_path / "results.json").read_text())

    assert results["images_evaluated"] == 32 and results["metric"] == "coco"
    stats = [results["coco_stats"][k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10",
                                                 "AR100", "ARs", "ARm", "ARl")]
    np.testing.assert_allclose(stats, ref_stats, atol=1e-12, rtol=0)
    assert results["map"] == pytest.approx(ref_stats[0], abs=1e-12)
    assert ref_stats[0] > 0 and ref_stats[8] > 0  # something was found
    for name, text in ref_per_class.items():  # gluoncv: '%.1f' of AP x 100
        mine = results["per_class_ap"][name]
        assert f"{100 * (mine or 0.0):.1f}" == text or (mine is None and text == "nan"), name
    assert "Average Precision  (AP) @[ IoU=0.50:0.95" in out

    detections = json.loads((tmp_path / "coco_detections.json").read_text())
    assert len(detections) == len(ref_detections) > 0
    for mine, theirs in zip(detections, ref_detections):
        assert (mine["image_id"], mine["category_id"]) == (theirs["image_id"], theirs["category_id"])
        assert mine["score"] == pytest.approx(theirs["score"], abs=1e-6)
        np.testing.assert_allclose(mine["bbox"], theirs["bbox"], atol=1e-3, rtol=0)
    assert (tmp_path / "pr_curves.png").stat().st_size > 10_000


def test_cli_deploy_matches_zoo_model(voc_model, tmp_path, capsys):
    from gluon_ssd.deploy import export

    _, params, _ = voc_model
    net = get_model("ssd_300_mobilenet0.25_voc", pretrained=str(params))
    net.set_nms(0.45, 400, 100)
    export(net, str(tmp_path / "deployed"))
    assert _cli(*_voc_args(params, tmp_path / "zoo", "--no-plots")) == 0
    assert _cli(*_voc_args(params, tmp_path / "deploy", "--no-plots", "--deploy", "--model-prefix",
                           tmp_path / "deployed")) == 0
    zoo = json.loads((tmp_path / "zoo/results.json").read_text())
    deployed = json.loads((tmp_path / "deploy/results.json").read_text())
    assert deployed["map"] == zoo["map"] and deployed["settings"]["backend"] == "deploy"


def test_cli_benchmark(voc_model, tmp_path, capsys):
    _, params, _ = voc_model
    argv = ["--network", "mobilenet0.25", "--data-shape", SHAPE, "--benchmark", "--num-iterations", 2,
            "--batch-size", 2, "--pretrained", params, "--out-dir", tmp_path, "--no-progress"]
    assert _cli(*argv) == 0
    out = capsys.readouterr().out
    record = json.loads((tmp_path / "benchmark.json").read_text())
    assert record["images"] == 4 and record["images_per_second"] > 0
    assert f"with batchsize 2 is {record['images_per_second']:.2f} img/sec" in out
    stats = benchmark(get_model("ssd_300_mobilenet0.25_voc", pretrained=str(params)), SHAPE, batch_size=1,
                      num_iterations=1, warmup=0)
    assert stats["images"] == 1


# -------------------------------------------------------------------------------------- bad input
def _error(capsys):
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return captured.err


def test_missing_dataset_root(tmp_path):
    missing = tmp_path / "no_such_VOCdevkit"
    proc = subprocess.run([sys.executable, str(ROOT / "eval_ssd.py"), "--dataset", "voc", "--dataset-root",
                           str(missing), "--pretrained", str(tmp_path / "x.params"), "--out-dir", str(tmp_path)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={**os.environ, "MXNET_HOME": str(tmp_path)})
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert str(missing) in proc.stderr and "VOC2007/Annotations" in proc.stderr


def test_missing_coco_images_and_custom_classes(tmp_path, capsys):
    assert _cli("--dataset", "coco", "--dataset-root", TINYCOCO, "--splits", COCO_SPLIT, "--pretrained",
                "x.params", "--out-dir", tmp_path) == 2
    err = _error(capsys)  # the default image folder train2017/ does not exist in tinycoco
    assert str(TINYCOCO / "train2017") in err and "--image-dir" in err
    (tmp_path / "custom").mkdir()
    assert _cli("--dataset", "custom", "--dataset-root", tmp_path / "custom", "--out-dir", tmp_path) == 2
    err = _error(capsys)
    assert "classes.txt" in err and "--classes-file" in err


def test_model_classes_differ_from_dataset(gcv, tmp_path, capsys):
    params = tmp_path / "coco.params"
    _save_seeded(gcv, "ssd_300_mobilenet0.25_coco", params)  # an 80-class model evaluated on VOC
    assert _cli(*_voc_args(params, tmp_path)) == 2
    err = _error(capsys)
    assert str(params) in err and "80 classes" in err and "20 classes" in err and "'aeroplane'" in err

    net = get_model("ssd_300_mobilenet0.25_custom", classes=("cat", "dog", "person"), pretrained_base=False)
    dataset = VOCDetection(VOC_ROOT, splits=((2012, "test"),))
    with pytest.raises(ValueError, match=r"\['cat', 'dog', 'person'\].*'aeroplane', 'bicycle'"):
        evaluate(net, dataset, SHAPE, progress=False)


def _silenced(gcv, name, path):
    """A seeded model whose background logit always wins: it detects nothing."""
    ref = _save_seeded(gcv, name, path)
    for head in ref.class_predictors:
        bias = head.predictor.bias.data().asnumpy()
        bias[:: ref.num_classes + 1] = 1e4  # channel a * (C + 1) is the background of anchor a
        head.predictor.bias.set_data(mx.nd.array(bias))
    ref.save_parameters(str(path))
    return path


def test_empty_predictions_give_zero(gcv, tmp_path, capsys):
    params = _silenced(gcv, "ssd_300_mobilenet0.25_voc", tmp_path / "silent_voc.params")
    assert _cli(*_voc_args(params, tmp_path / "voc")) == 0
    results = json.loads((tmp_path / "voc/results.json").read_text())
    assert results["map"] == 0.0 and results["images_evaluated"] == 45
    assert {v for v in results["per_class_ap"].values()} <= {0.0, None}
    assert (tmp_path / "voc/pr_curves.png").is_file()

    params = _silenced(gcv, "ssd_300_mobilenet0.25_coco", tmp_path / "silent_coco.params")
    assert _cli(*_coco_args(params, tmp_path / "coco", "--splits", "instances_val2017", "--image-dir",
                            "images/val2017", network="mobilenet0.25")) == 0
    results = json.loads((tmp_path / "coco/results.json").read_text())
    assert results["map"] == 0.0 and results["images_evaluated"] == 6
    assert json.loads((tmp_path / "coco/coco_detections.json").read_text()) == []
    assert "mAP" in capsys.readouterr().out


def test_results_file_with_unknown_ids(tmp_path, capsys):
    gt = json.loads((TINYCOCO / "annotations" / f"{COCO_SPLIT}.json").read_text())
    image_id, cat_id = gt["images"][0]["id"], gt["categories"][0]["id"]
    good = [{"image_id": image_id, "category_id": cat_id, "bbox": [10, 10, 50, 50], "score": 0.9}]
    bad = good + [{"image_id": 999999999, "category_id": cat_id, "bbox": [1, 1, 5, 5], "score": 0.5}]
    base = ["--dataset", "coco", "--dataset-root", TINYCOCO, "--splits", COCO_SPLIT, "--image-dir", COCO_IMAGES,
            "--out-dir", tmp_path]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    assert _cli(*base, "--results", tmp_path / "bad.json") == 2
    err = _error(capsys)
    assert "999999999" in err and "bad.json" in err

    (tmp_path / "good.json").write_text(json.dumps(good))
    assert _cli(*base, "--results", tmp_path / "good.json") == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["mode"] == "results_file" and 0 <= results["map"] <= 1


@pytest.mark.parametrize("argv, message", [
    (["--quantized"], "GluonCV has no int8 version of ssd_300_mobilenet0.25_voc"),
    (["--calibration", "--calib-mode", "none", "--num-calib-batches", "0"], "--num-calib-batches must be at least 1"),
    (["--network", "nonet"], "unknown --network 'nonet'"),
    (["--deploy"], "--model-prefix"),
    (["--deploy", "--model-prefix", "nowhere/model"], "nowhere/model-symbol.json, nowhere/model-0000.params not found"),
    (["--backend", "nope"], "--backend 'nope' is not available; choose from"),
    (["--pretrained", "False"], "random weights"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--splits", "test"], "YEAR_NAME"),
    (["--pretrained", "no_such.params"], "parameter file not found: no_such.params"),
])
def test_bad_flags(argv, message, tmp_path, capsys):
    base = ["--dataset-root", VOC_ROOT, "--splits", "2012_test", "--network", "mobilenet0.25",
            "--pretrained", "x.params", "--out-dir", tmp_path, "--no-progress"]
    assert _cli(*base, *argv) == 2
    assert message in _error(capsys)


def test_missing_gpus(tmp_path, capsys):
    if mx.context.num_gpus() > 0:
        pytest.skip("this mxnet sees a GPU")
    assert _cli("--dataset-root", VOC_ROOT, "--num-gpus", 1, "--out-dir", tmp_path) == 2
    assert "MXNet sees 0 GPU(s)" in _error(capsys)


def test_published_weights_unavailable(tmp_path, capsys, monkeypatch):
    from gluon_ssd import model_store

    def offline(name, root=None, progress=True):
        raise model_store.ModelStoreError(f"cannot download {name}: no network")

    monkeypatch.setattr(model_store, "get_model_file", offline)
    assert _cli("--dataset-root", VOC_ROOT, "--splits", "2012_test", "--out-dir", tmp_path) == 2
    err = _error(capsys)
    assert "cannot download ssd_300_vgg16_atrous_voc" in err and "--pretrained PATH" in err


def test_cli_custom_datasets(gcv, tmp_path, capsys):
    """--dataset custom: a VOC-layout folder (classes.txt) and a COCO JSON; the *_custom model takes the
    dataset's classes. Reference for the VOC layout: gluoncv's VOCDetection over the same folder."""
    from gluoncv.utils.metrics.voc_detection import VOC07MApMetric as GluoncvVOC07

    from gluon_ssd.data import SHAPE_CLASSES, write_synthetic_dataset

    write_synthetic_dataset(str(tmp_path / "shapes"), 0, 5, seed=0, progress=False)
    params = tmp_path / "shapes.params"
    ref = build_reference(gcv, "ssd_300_mobilenet0.25_custom", classes=SHAPE_CLASSES)
    randomize(ref, seed=0, probe=photo_batch(gcv, [PROBE], SHAPE, SHAPE))
    ref.save_parameters(str(params))
    assert _cli("--network", "mobilenet0.25", "--dataset", "custom", "--dataset-root", tmp_path / "shapes",
                "--splits", "val", "--batch-size", 2, "-j", 0, "--pretrained", params, "--out-dir",
                tmp_path / "out_voc", "--no-progress") == 0
    results = json.loads((tmp_path / "out_voc/results.json").read_text())
    assert list(results["per_class_ap"]) == list(SHAPE_CLASSES) and results["images_evaluated"] == 5
    assert results["settings"]["network"] == "ssd_300_mobilenet0.25_custom"

    class Shapes(gcv.data.VOCDetection):
        CLASSES = SHAPE_CLASSES

    (tmp_path / "gcv_root").mkdir()
    (tmp_path / "gcv_root/shapes").symlink_to(tmp_path / "shapes")
    batches = _gluoncv_predictions(gcv, ref, Shapes(str(tmp_path / "gcv_root"), splits=[("shapes", "val")]), 2)
    _, values = _feed_voc(GluoncvVOC07(iou_thresh=0.5, class_names=SHAPE_CLASSES), batches)
    assert results["map"] == pytest.approx(values[-1], abs=1e-12)

    # a COCO instances JSON as the dataset: its 80 categories are the classes, the COCO metric by default
    gt = TINYCOCO / "annotations/instances_val2017.json"
    names = [c["name"] for c in json.loads(gt.read_text())["categories"]]
    params = tmp_path / "coco_custom.params"
    _ = build_reference(gcv, "ssd_300_mobilenet0.25_custom", classes=names).save_parameters(str(params))
    assert _cli("--network", "mobilenet0.25", "--dataset", "custom", "--dataset-root", gt, "--image-dir",
                TINYCOCO / "images/val2017", "-j", 0, "--pretrained", params, "--out-dir", tmp_path / "out_coco",
                "--no-progress", "--no-plots") == 0
    results = json.loads((tmp_path / "out_coco/results.json").read_text())
    assert results["metric"] == "coco" and results["images_evaluated"] == 6
    assert list(results["per_class_ap"]) == names
