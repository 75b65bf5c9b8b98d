"""demo_ssd.py and gluon_ssd.vis / gluon_ssd.predict.

References: gluoncv's own model (seeded random weights, written to a parameter file that the demo
loads), gluoncv's own preprocessing (``load_test`` / ``SSDDefaultValTransform``), image sizes read
with OpenCV, hand-worked colour contrasts, and the synthetic dataset's exact boxes.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import subprocess
import sys

import cv2
import mxnet as mx
import numpy as np
import pytest

from gluon_ssd.boxes import box_iou, iou_voc, nms_iou
from tests.helpers import DATA, ROOT, build_reference, randomize

DEMO_IMAGES = DATA / "demo_images"
NETWORK = "ssd_300_mobilenet0.25_voc"
THRESH = 0.4
# Scores within this of a cut (the threshold, or the 100th score when post-NMS keeps 100) may fall on
# either side of it in two implementations; such detections are left out of the comparisons.
CUT_MARGIN = 1e-4


def run_demo(argv):
    """demo_ssd.main(argv) in this process: (exit status, stdout, stderr)."""
    sys.path.insert(0, str(ROOT))
    try:
        import demo_ssd
    finally:
        sys.path.remove(str(ROOT))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = demo_ssd.main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def run_demo_subprocess(argv, env=None):
    """The CLI as users run it: (exit status, stdout, stderr)."""
    proc = subprocess.run([sys.executable, str(ROOT / "demo_ssd.py"), *map(str, argv)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=env)
    return proc.returncode, proc.stdout, proc.stderr


def image_size(path):
    """(width, height) of an image file, read with OpenCV."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, f"{path} is not a readable image"
    return img.shape[1], img.shape[0]


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def reference(gcv, tmp_path_factory):
    """gluoncv's ssd_300_mobilenet0.25_voc with seeded random weights, and the file it wrote.

    The class heads are scaled down from randomize()'s calibration so that scores spread over (0, 1)
    on the demo's 512-pixel inputs and the threshold keeps some detections but not all.
    """
    net = build_reference(gcv, NETWORK)
    probe, _ = gcv.data.transforms.presets.ssd.load_test(str(DEMO_IMAGES / "darknet/dog.jpg"), short=512)
    randomize(net, seed=0, probe=probe)
    for head in net.class_predictors:
        for p in (head.predictor.weight, head.predictor.bias):
            p.set_data(p.data() * 0.5)
    net.set_nms(0.45, 400, 100)  # GluonCV's demo_ssd.py keeps its SSD's defaults, and so does ours
    path = tmp_path_factory.mktemp("demo_model") / "mobilenet025_random.params"
    net.save_parameters(str(path))
    return net, path


@pytest.fixture(scope="module")
def broken_jpg(tmp_path_factory):
    path = tmp_path_factory.mktemp("broken") / "broken.jpg"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


@pytest.fixture(scope="module")
def demo_run(reference, broken_jpg, tmp_path_factory):
    """One demo run over a folder, a glob, a grey PNG, a broken file, a missing file and an empty glob."""
    _, params = reference
    out_dir = tmp_path_factory.mktemp("demo_out")
    missing = out_dir.parent / "no_such_image.jpg"
    empty_glob = str(DEMO_IMAGES / "darknet" / "*.nothing")
    argv = ["--network", NETWORK, "--pretrained", params, "--thresh", THRESH, "--batch-size", 4,
            "--out-dir", out_dir, "--images", DEMO_IMAGES / "darknet",
            str(DEMO_IMAGES / "voc2007_test_unannotated" / "00000*.jpg"),
            DEMO_IMAGES / "pip_packages/scikit-image/camera.png", broken_jpg, missing, empty_glob]
    rc, out, err = run_demo(argv)
    inputs = sorted(str(p) for p in (DEMO_IMAGES / "darknet").glob("*.jpg"))
    inputs += sorted(str(p) for p in (DEMO_IMAGES / "voc2007_test_unannotated").glob("00000*.jpg"))
    inputs.append(str(DEMO_IMAGES / "pip_packages/scikit-image/camera.png"))
    return {"rc": rc, "out": out, "err": err, "dir": out_dir, "inputs": inputs, "broken": str(broken_jpg),
            "missing": str(missing), "empty_glob": empty_glob}


def test_demo_exit_and_bad_inputs_named(demo_run):
    assert demo_run["rc"] == 0, demo_run["err"]
    err = demo_run["err"]
    assert demo_run["broken"] in err
    assert demo_run["missing"] in err
    assert f"no file matches {demo_run['empty_glob']!r}" in err
    assert "Traceback" not in err
    assert str(demo_run["dir"]) in demo_run["out"].splitlines()[-1]


def test_demo_jsonl_schema_and_boxes_inside(demo_run, reference):
    net, _ = reference
    records = read_jsonl(demo_run["dir"] / "detections.jsonl")
    assert [r["image"] for r in records] == demo_run["inputs"]
    total = 0
    for rec in records:
        assert set(rec) >= {"image", "width", "height", "detections"}
        assert (rec["width"], rec["height"]) == image_size(rec["image"])
        scores = [d["score"] for d in rec["detections"]]
        assert scores == sorted(scores, reverse=True)
        for d in rec["detections"]:
            assert set(d) == {"class", "class_id", "score", "box"}
            assert isinstance(d["class_id"], int) and d["class"] == net.classes[d["class_id"]]
            assert THRESH <= d["score"] <= 1
            x1, y1, x2, y2 = d["box"]
            assert 0 <= x1 <= x2 <= rec["width"] and 0 <= y1 <= y2 <= rec["height"], (rec["image"], d)
        total += len(rec["detections"])
    assert total > 0, "the random model should detect something at this threshold"


def test_demo_annotated_images_readable_same_size(demo_run):
    records = read_jsonl(demo_run["dir"] / "detections.jsonl")
    names = set()
    for rec in records:
        out = pathlib.Path(rec["annotated"])
        assert out.parent == demo_run["dir"]
        assert out.suffix == pathlib.Path(rec["image"]).suffix
        assert image_size(out) == image_size(rec["image"])
        names.add(out.name)
    assert len(names) == len(records)
    # One summary line per image on stdout, naming the image and its detection count.
    lines = demo_run["out"].splitlines()
    for rec in records:
        n = len(rec["detections"])
        assert any(line.startswith(f"{rec['image']}: {n} detection") for line in lines), rec["image"]


def test_demo_draws_boxes(demo_run):
    """Annotated pixels differ from the input exactly where there are detections."""
    records = read_jsonl(demo_run["dir"] / "detections.jsonl")
    for rec in records:
        src = cv2.imread(rec["image"], cv2.IMREAD_COLOR).astype(int)
        out = cv2.imread(rec["annotated"], cv2.IMREAD_COLOR).astype(int)
        lossy = rec["annotated"].endswith(".jpg")
        changed = np.abs(out - src).max(axis=2) > (60 if lossy else 0)
        if rec["detections"]:
            assert changed.any(), rec["image"]
        elif not lossy:
            assert not changed.any(), rec["image"]


def _reference_detections(net, x, width, height, thresh):
    """gluoncv's detections for one preprocessed image, scaled to the original size by hand."""
    ids, scores, boxes = (a.asnumpy()[0] for a in net(x))
    ids, scores = ids[:, 0], scores[:, 0]
    valid = ids >= 0
    ids, scores, boxes = ids[valid], scores[valid], boxes[valid]
    in_h, in_w = x.shape[2], x.shape[3]
    boxes = boxes.astype(np.float64) * [width / in_w, height / in_h, width / in_w, height / in_h]
    boxes = np.clip(boxes, 0, [width, height, width, height])
    # Scores at the cuts (threshold; 100th kept score) can fall either way in another implementation.
    low = max(thresh, scores.min() if len(scores) == net.post_nms else 0)
    keep = scores >= thresh
    sure = scores >= low + CUT_MARGIN
    return ids[keep], scores[keep], boxes[keep], sure[keep], low


def _assert_same_detections(rec, ref, context):
    ids, scores, boxes, sure, low = ref
    got = rec["detections"]
    unmatched = list(range(len(got)))
    for cid, score, box, certain in zip(ids, scores, boxes, sure):
        cands = [j for j in unmatched if got[j]["class_id"] == int(cid)
                 and np.abs(np.array(got[j]["box"]) - box).max() < 0.02
                 and abs(got[j]["score"] - score) < 2e-4]
        if certain:
            assert cands, f"{context}: reference detection {int(cid)} {score:.4f} {box} not in the output"
        if cands:
            unmatched.remove(cands[0])
    extra = [got[j] for j in unmatched if got[j]["score"] >= low + CUT_MARGIN]
    assert not extra, f"{context}: detections without a reference: {extra}"


def test_boxes_in_original_pixels_match_direct_network_call(demo_run, reference, gcv):
    """Independent path: gluoncv's load_test and gluoncv's network, boxes scaled by W/w and H/h."""
    net, _ = reference
    records = {r["image"]: r for r in read_jsonl(demo_run["dir"] / "detections.jsonl")}
    sizes, compared = set(), 0
    for path in demo_run["inputs"]:
        x, _ = gcv.data.transforms.presets.ssd.load_test(path, short=512, max_size=1024)
        width, height = image_size(path)
        sizes.add((width, height))
        ref = _reference_detections(net, x, width, height, THRESH)
        compared += int(ref[3].sum())
        _assert_same_detections(records[path], ref, path)
    assert len(sizes) >= 4
    assert compared > 20


def test_fixed_data_shape_matches_val_transform(reference, gcv, tmp_path):
    """--data-shape 300: gluoncv's SSDDefaultValTransform(300, 300), boxes scaled by W/300 and H/300."""
    net, params = reference
    paths = [str(DEMO_IMAGES / "darknet/dog.jpg"), str(DEMO_IMAGES / "pip_packages/scikit-image/coffee.png")]
    rc, _, err = run_demo(["--network", NETWORK, "--pretrained", params, "--data-shape", 300,
                           "--thresh", 0.3, "--batch-size", 2, "--out-dir", tmp_path, "--images", *paths])
    assert rc == 0, err
    records = {r["image"]: r for r in read_jsonl(tmp_path / "detections.jsonl")}
    transform = gcv.data.transforms.presets.ssd.SSDDefaultValTransform(300, 300)
    for path in paths:
        x, _ = transform(mx.image.imread(path), np.zeros((1, 6), dtype=np.float32))
        width, height = image_size(path)
        ref = _reference_detections(net, x.expand_dims(0), width, height, 0.3)
        assert ref[3].sum() > 0, f"{path}: the reference has no detection to compare"
        _assert_same_detections(records[path], ref, path)


def test_only_unreadable_inputs_exit_nonzero(broken_jpg, reference, tmp_path):
    _, params = reference
    missing = tmp_path / "missing.png"
    rc, out, err = run_demo_subprocess(["--network", NETWORK, "--pretrained", params, "--out-dir",
                                        tmp_path / "out", "--images", broken_jpg, missing])
    assert rc == 1
    assert str(broken_jpg) in err and str(missing) in err
    assert "Traceback" not in err


def test_missing_weights_give_model_store_message(tmp_path):
    env = dict(os.environ, MXNET_HOME=str(tmp_path / "home"), MXNET_GLUON_REPO="http://127.0.0.1:9/")
    rc, out, err = run_demo_subprocess(["--images", DEMO_IMAGES / "darknet/dog.jpg", "--out-dir",
                                        tmp_path / "out"], env=env)
    assert rc == 2
    assert "Traceback" not in err
    assert "could not download the pretrained weights for ssd_300_vgg16_atrous_coco" in err
    assert str(tmp_path / "home" / "models") in err  # where to put the file


def test_video_every_nth_frame(reference, tmp_path):
    _, params = reference
    video = tmp_path / "clip.avi"
    src = cv2.resize(cv2.imread(str(DEMO_IMAGES / "darknet/giraffe.jpg")), (160, 120))
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (160, 120))
    assert writer.isOpened()
    for i in range(5):
        writer.write(np.roll(src, 10 * i, axis=1))
    writer.release()
    out_dir = tmp_path / "out"
    rc, out, err = run_demo(["--network", NETWORK, "--pretrained", params, "--thresh", 0.3, "--video", video,
                             "--every", 2, "--out-dir", out_dir])
    assert rc == 0, err
    records = read_jsonl(out_dir / "detections.jsonl")
    assert [r["image"] for r in records] == [f"{video}#frame={i}" for i in (0, 2, 4)]
    for rec in records:
        assert (rec["width"], rec["height"]) == (160, 120)
        assert image_size(rec["annotated"]) == (160, 120)
        assert rec["annotated"].endswith(".png")
        for d in rec["detections"]:
            x1, y1, x2, y2 = d["box"]
            assert 0 <= x1 <= x2 <= 160 and 0 <= y1 <= y2 <= 120


@pytest.fixture(scope="module")
def custom_model(gcv, tmp_path_factory):
    classes = ("circle", "square", "triangle")
    net = randomize(build_reference(gcv, "ssd_300_mobilenet0.25_custom", classes=classes), seed=3)
    path = tmp_path_factory.mktemp("custom_model") / "custom.params"
    net.save_parameters(str(path))
    return classes, path


def test_custom_network_with_classes(custom_model, tmp_path):
    classes, params = custom_model
    classes_file = tmp_path / "classes.txt"
    classes_file.write_text("\n".join(classes) + "\n")
    for spec in (",".join(classes), classes_file):
        out_dir = tmp_path / f"out{len(str(spec))}"
        rc, _, err = run_demo(["--network", "ssd_300_mobilenet0.25_custom", "--pretrained", params,
                               "--classes", spec, "--thresh", 0.0, "--out-dir", out_dir,
                               "--images", DEMO_IMAGES / "darknet/giraffe.jpg"])
        assert rc == 0, err
        (rec,) = read_jsonl(out_dir / "detections.jsonl")
        assert rec["detections"]
        assert {d["class"] for d in rec["detections"]} <= set(classes)
        assert all(d["class"] == classes[d["class_id"]] for d in rec["detections"])


@pytest.mark.parametrize("extra, message", [
    ([], "--classes"),                                   # a custom network needs its classes
    (["--classes", "circle,square"], "are they the classes the file was trained with"),
    (["--data-shape", 300, "--short", 400], "exclude each other"),
])
def test_usage_errors_exit_2(custom_model, tmp_path, extra, message):
    _, params = custom_model
    rc, _, err = run_demo(["--network", "ssd_300_mobilenet0.25_custom", "--pretrained", params,
                           "--out-dir", tmp_path, "--images", DEMO_IMAGES / "darknet/giraffe.jpg", *extra])
    assert rc == 2
    assert message in err


def test_voc_network_class_subset(reference, tmp_path):
    """--classes on a VOC network keeps only those classes (their weights reused)."""
    net, params = reference
    rc, _, err = run_demo(["--network", NETWORK, "--pretrained", params, "--classes", "person,dog",
                           "--thresh", 0.0, "--out-dir", tmp_path, "--images", DEMO_IMAGES / "darknet/dog.jpg"])
    assert rc == 0, err
    (rec,) = read_jsonl(tmp_path / "detections.jsonl")
    assert rec["detections"] and {d["class"] for d in rec["detections"]} <= {"person", "dog"}
    rc, _, err = run_demo(["--network", NETWORK, "--pretrained", params, "--classes", "unicorn",
                           "--out-dir", tmp_path, "--images", DEMO_IMAGES / "darknet/dog.jpg"])
    assert rc == 2 and "unicorn" in err


# ---- gluon_ssd.predict ---------------------------------------------------------------------------

class _TaggingDetector:
    """Stands in for a network: one detection per image whose score is the image's first (normalized)
    pixel, boxes given in input pixels; records the batch shapes it was called with."""

    classes = ("thing",)

    def __init__(self, boxes):
        self.boxes = np.asarray(boxes, dtype=np.float32)
        self.calls = []

    def __call__(self, batch):
        self.calls.append(batch.shape)
        b = len(batch)
        ids = np.array([[0, -1]] * b, dtype=np.float32)
        scores = np.stack([batch[:, 0, 0, 0], -np.ones(b, np.float32)], axis=1)
        boxes = np.stack([np.broadcast_to(self.boxes, (b, 4)), -np.ones((b, 4), np.float32)], axis=1)
        return ids, scores, boxes


def _identity_preprocess(img):
    """(H, W, 3) uint8 -> (3, H, W) with pixel/255: the input is the image itself (scale 1)."""
    return np.asarray(img.asnumpy() if hasattr(img, "asnumpy") else img, np.float32).transpose(2, 0, 1) / 255


def test_detect_images_batches_equal_shapes_and_keeps_order():
    from gluon_ssd.predict import detect_images

    sizes = [(40, 30), (50, 20), (40, 30), (40, 30), (50, 20), (40, 30)]   # (W, H), interleaved
    images = [(f"img{i}", np.full((h, w, 3), 10 * (i + 1), np.uint8)) for i, (w, h) in enumerate(sizes)]
    det = _TaggingDetector([5, 6, 100, 7])           # x2 beyond every image: clipped to W
    out = list(detect_images(det, images, _identity_preprocess, batch_size=2, thresh=0.0))
    assert [d.key for d in out] == [k for k, _ in images]
    for d, (w, h), i in zip(out, sizes, range(len(sizes))):
        assert (d.width, d.height) == (w, h)
        np.testing.assert_allclose(d.scores, [10 * (i + 1) / 255], rtol=1e-6)
        np.testing.assert_allclose(d.boxes, [[5, 6, w, 7]])
        assert d.class_ids.tolist() == [0]
    # Four 40x30 images in batches of 2, two 50x20 images in one batch: only equal shapes together.
    assert sorted(det.calls) == sorted([(2, 3, 30, 40), (2, 3, 30, 40), (2, 3, 20, 50)])


class _FixedInput:
    """Preprocessing stub: every image becomes a (3, 512, 683) input, as load_test makes of 768x576."""

    def __call__(self, img):
        return np.zeros((3, 512, 683), np.float32)


def test_detect_images_scales_boxes_to_original_pixels():
    """Hand-worked: a 768x576 image resized to 683x512; input box (10, 20, 30, 40) maps to
    (10*768/683, 20*576/512, 30*768/683, 40*576/512) = (11.2445, 22.5, 33.7335, 45.0)."""
    from gluon_ssd.predict import detect_images

    det = _TaggingDetector([10, 20, 30, 40])
    (d,) = detect_images(det, [("a", np.zeros((576, 768, 3), np.uint8))], _FixedInput(), thresh=-1)
    np.testing.assert_allclose(d.boxes, [[11.244510, 22.5, 33.733529, 45.0]], atol=1e-5)
    assert d.input_shape == (512, 683)
    # Below the threshold (score 0 here): dropped.
    (d,) = detect_images(det, [("a", np.zeros((576, 768, 3), np.uint8))], _FixedInput(), thresh=0.5)
    assert len(d.scores) == 0 and d.boxes.shape == (0, 4)


def test_gpus_without_gpu_is_a_usage_error(reference, tmp_path):
    if mx.context.num_gpus() > 0:
        pytest.skip("this machine has a GPU visible to mxnet")
    _, params = reference
    rc, _, err = run_demo(["--network", NETWORK, "--pretrained", params, "--gpus", "0", "--out-dir", tmp_path,
                           "--images", DEMO_IMAGES / "darknet/dog.jpg"])
    assert rc == 2 and "--gpus" in err


# ---- gluon_ssd.vis -------------------------------------------------------------------------------

def test_class_colours_stable_and_distinct():
    from gluon_ssd.vis import class_colour

    colours = [class_colour(i) for i in range(80)]
    assert colours == [class_colour(i) for i in range(80)]
    assert len(set(colours)) == 80
    for c in colours:
        assert all(0 <= v <= 255 for v in c)


@pytest.mark.parametrize("fill, text", [
    ((255, 255, 255), (0, 0, 0)),
    ((0, 0, 0), (255, 255, 255)),
    ((0, 0, 255), (255, 255, 255)),    # luminance 0.0722: contrast 8.6 with white, 2.4 with black
    ((255, 255, 0), (0, 0, 0)),        # luminance 0.9278: contrast 19.6 with black
    ((128, 128, 128), (0, 0, 0)),      # luminance 0.2159: contrast 5.3 with black, 3.9 with white
])
def test_text_colour_has_higher_contrast(fill, text):
    from gluon_ssd.vis import text_colour

    assert text_colour(fill) == text


def test_draw_detections_edges_labels_and_skips():
    from gluon_ssd.vis import class_colour, draw_detections

    img = np.full((200, 300, 3), 90, np.uint8)
    boxes = np.array([[50, 60, 150, 160], [250, 0, 299, 40], [10, 10, 20, 20], [10, 10, 20, 20]], float)
    out = draw_detections(img, boxes, [2, 5, -1, 1], scores=[0.9, 0.8, 0.99, 0.1], class_names=list("abcdef"),
                          thresh=0.5, line_width=1)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert (img == 90).all(), "the input must not be modified"
    assert tuple(out[110, 50]) == class_colour(2)      # left edge of box 0, below its label
    assert tuple(out[160, 100]) == class_colour(2)     # bottom edge (row round(y2))
    assert (out[100:150, 60:140] == 90).all()          # inside stays untouched
    assert (out[12:19, 12:19] == 90).all()             # id -1 (padding) and score 0.1 < thresh: not drawn
    # The label of the box at the right edge stays inside the image, filled with the class colour.
    assert (out[0:40, 250:300] == class_colour(5)).all(axis=2).sum() > 50
    grey = draw_detections(img[:, :, 0], boxes[:1], [0])
    assert grey.shape == (200, 300, 3)


def test_save_image_round_trip(tmp_path):
    from gluon_ssd.vis import save_image

    img = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    path = save_image(tmp_path / "x.png", img)
    back = cv2.imread(path)[:, :, ::-1]
    np.testing.assert_array_equal(back, img)
    with pytest.raises(ValueError, match="xyz"):
        save_image(tmp_path / "x.xyz", img)


# ---- a model trained on the synthetic dataset ----------------------------------------------------

# BENCHMARKS.md's learning recipe: MobileNet-1.0 SSD from scratch on the full synthetic dataset (five shapes,
# textured backgrounds) at 256 px, about 19 minutes on two cores (VOC07 mAP 0.83 on the val split).
LEARNING_RECIPE = ["--network", "mobilenet1.0", "--data-shape", "256", "--dataset", "synthetic", "--gpus", "",
                   "--pretrained-base", "False", "--batch-size", "16", "--epochs", "21", "--lr", "0.01",
                   "--lr-mode", "cosine", "--warmup-epochs", "0.5", "--max-expand", "2", "-j", "2",
                   "--val-interval", "2", "--save-interval", "0", "--no-progress"]
LEARNING_MODEL = "ssd_512_mobilenet1.0_custom"
LONG_TESTS = "GLUON_SSD_LONG_TESTS"


def _voc_objects(xml_path):
    """[(class name, (x1, y1, x2, y2))] of a VOC XML, as continuous pixel corners.

    VOC stores 1-based inclusive pixel indices: pixel columns xmin..xmax cover [xmin - 1, xmax)."""
    import xml.etree.ElementTree as ET

    objects = []
    for obj in ET.parse(xml_path).getroot().iter("object"):
        bb = obj.find("bndbox")
        x1, y1, x2, y2 = (float(bb.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
        objects.append((obj.find("name").text.strip(), (x1 - 1, y1 - 1, x2, y2)))
    return objects


def _iou(a, b) -> float:
    """IoU of two corner boxes in the demo's convention (no +1): :func:`gluon_ssd.boxes.box_iou`."""
    return float(box_iou(np.array([a], dtype=np.float64), np.array([b], dtype=np.float64))[0, 0])


def test_voc_objects_and_iou_hand_worked(tmp_path):
    xml = tmp_path / "a.xml"
    xml.write_text("<annotation><object><name>ring</name><bndbox><xmin>1</xmin><ymin>11</ymin>"
                   "<xmax>10</xmax><ymax>30</ymax></bndbox></object></annotation>")
    assert _voc_objects(xml) == [("ring", (0.0, 10.0, 10.0, 30.0))]
    # 10x20 box vs the same box shifted right by 5: intersection 5x20=100, union 300.
    assert _iou((0, 10, 10, 30), (5, 10, 15, 30)) == pytest.approx(1 / 3)
    assert _iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    # VOC's +1 pixel: 11x21 boxes (231 px each) overlapping on 6x21 = 126 px, union 336.
    assert iou_voc(np.array([[0.0, 10, 10, 30]]), np.array([[5.0, 10, 15, 30]]))[0, 0] == pytest.approx(126 / 336)
    # Two empty boxes: box_iou's guard gives 0, the NMS overlap 0/0 = NaN (which suppresses nothing).
    empty = np.array([[3.0, 3, 3, 3]])
    assert box_iou(empty, empty)[0, 0] == 0.0 and np.isnan(nms_iou(empty, empty)[0, 0])
    assert nms_iou(np.array([[0.0, 10, 10, 30]]), np.array([[5.0, 10, 15, 30]]))[0, 0] == pytest.approx(1 / 3)


def _assert_detections_on_shapes(data, network, params, data_shape, tmp_path, thresh, found_min, hits_min,
                                 extra=()):
    """The demo's detections (score >= thresh) on the val images of the synthetic dataset ``data`` land on the
    drawn shapes: for at least ``found_min`` of the objects a detection of the same class has IoU >= 0.5 with
    the object's exact box, and at least ``hits_min`` of the detections are such hits."""
    val = [data / "JPEGImages" / f"{line.strip()}.jpg" for line in open(data / "ImageSets" / "Main" / "val.txt")
           if line.strip()]
    out_dir = tmp_path / "demo"
    rc, _, err = run_demo(["--network", network, "--pretrained", params, "--classes", data / "classes.txt",
                           "--data-shape", data_shape, "--thresh", thresh, "--out-dir", out_dir, *extra,
                           "--images", *val])
    assert rc == 0, err
    found, objects, hits, detections = 0, 0, 0, 0
    records = read_jsonl(out_dir / "detections.jsonl")
    assert len(records) == len(val)
    for rec in records:
        truth = _voc_objects(data / "Annotations" / (pathlib.Path(rec["image"]).stem + ".xml"))
        dets = [(d["class"], d["box"]) for d in rec["detections"]]
        objects += len(truth)
        found += sum(any(c == name and _iou(box, b) >= 0.5 for c, b in dets) for name, box in truth)
        detections += len(dets)
        hits += sum(any(c == name and _iou(box, b) >= 0.5 for name, box in truth) for c, b in dets)
    assert objects > 0
    assert found / objects >= found_min, f"{found} of {objects} shapes found"
    assert detections and hits / detections >= hits_min, f"{hits} of {detections} detections on a shape"


def _train(recipe, data, tmp_path, timeout):
    prefix = str(tmp_path / "run") + os.sep
    proc = subprocess.run([sys.executable, str(ROOT / "train_ssd.py"), *recipe, "--dataset-root", str(data),
                           "--save-prefix", prefix], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return prefix


def test_small_trained_model_finds_the_shapes(small_trained_model, tmp_path):
    """train_ssd.py trains a small detector from scratch (about two minutes, tests/conftest.py); the demo finds
    most shapes of the val split, in original image pixels, with their class."""
    trained = small_trained_model
    # Floats summed in another order (another CPU) train another model; the bounds hold for all three seeds
    # measured (conftest.py). The untrained network sprays 100 boxes per image over the threshold: 0.75 of the
    # shapes "found" but 0.02 of its boxes hits, so the hit rate is what fails it.
    _assert_detections_on_shapes(trained.data, trained.network, trained.params, trained.data_shape, tmp_path,
                                 thresh=0.4, found_min=0.6, hits_min=0.55)


@pytest.mark.slow
def test_trained_synthetic_model_finds_the_shapes(tmp_path):
    """train_ssd.py trains the learning recipe from scratch; the demo finds the shapes of the val split."""
    if os.environ.get(LONG_TESTS) != "1":
        pytest.skip(f"trains an SSD from scratch for about 19 minutes on 2 cores: set {LONG_TESTS}=1 to run it")
    data = tmp_path / "shapes"
    prefix = _train(LEARNING_RECIPE, data, tmp_path, timeout=7200)
    # A from-scratch model at mAP 0.83 is under-confident: measured 0.74 found and 0.84 hits at 0.4, 0.66
    # found at 0.5.
    _assert_detections_on_shapes(data, LEARNING_MODEL, f"{prefix}{LEARNING_MODEL}_best.params", 256, tmp_path,
                                 thresh=0.4, found_min=0.7, hits_min=0.7)
