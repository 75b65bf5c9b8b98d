"""GluonCV's utils API (``gluon_ssd.utils``: viz, random, metrics, export_block) and demo_ssd.py used as GluonCV's.

References: gluoncv itself (its ``plot_bbox``, ``random.seed``, ``COCODetectionMetric``, ``export_block`` and
preprocessing ``load_test``, on a seeded network and real photos), pycocotools through gluoncv, numpy's and
Python's own seeding, and hand-worked boxes. The tests not marked ``mxnet`` also run on the PyTorch stack.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import random
import subprocess
import sys
import warnings

import numpy as np
import pytest

from tests.helpers import DATA, ROOT

DEMO_IMAGES = DATA / "demo_images" / "darknet"
VOC_ROOT = DATA / "voc_sample" / "VOCdevkit"
TINYCOCO = DATA / "coco_sample" / "tinycoco"
NETWORK = "ssd_300_mobilenet0.25_voc"
DEMO_NETWORK = "ssd_512_mobilenet1.0_voc"  # the brief's GluonCV command line


@pytest.fixture
def agg():
    """matplotlib drawing off-screen; every figure closed afterwards."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    yield plt
    plt.close("all")


def headless_env(tmp_path):
    """The environment of a machine without a display (DISPLAY unset, matplotlib drawing to files)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(MPLBACKEND="Agg", PYTHONPATH=str(ROOT), MXNET_HOME=str(tmp_path / "mxnet_home"), OMP_NUM_THREADS="1")
    return env


def run_demo_headless(argv, cwd, env):
    proc = subprocess.run([sys.executable, str(ROOT / "demo_ssd.py"), *map(str, argv)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def check_default_folder(rc, out, err, cwd, network, images):
    """Exit 0, one line naming ./{network}_demo, and in it an annotated image and a jsonl line per input."""
    assert rc == 0, err
    folder = f"{network}_demo"
    named = [line for line in out.splitlines() if "no --out-dir" in line]
    assert len(named) == 1 and os.path.join(os.curdir, folder) in named[0], out
    written = cwd / folder
    records = [json.loads(line) for line in (written / "detections.jsonl").read_text().splitlines()]
    assert [r["image"] for r in records] == [str(p) for p in images]
    assert sorted(os.listdir(written)) == sorted(["detections.jsonl", *(p.name for p in images)])


# ------------------------------------------------------------------------------------------------ demo_ssd.py
def test_split_comma_lists(tmp_path):
    from gluon_ssd.annotate import split_comma_lists

    comma_file = tmp_path / "a,b.jpg"  # exists: one file, not two
    comma_file.write_bytes(b"")
    (tmp_path / "c,1.png").write_bytes(b"")
    assert split_comma_lists(["x.jpg,y.jpg", "z.jpg", " u.jpg , ,v.jpg,"]) == ["x.jpg", "y.jpg", "z.jpg", "u.jpg",
                                                                              "v.jpg"]
    assert split_comma_lists([str(comma_file), f"{comma_file},w.jpg"]) == [str(comma_file), str(tmp_path / "a"),
                                                                           "b.jpg", "w.jpg"]
    pattern = str(tmp_path / "c,*.png")  # a glob that matches stays whole; one that matches nothing is split
    assert split_comma_lists([pattern, str(tmp_path / "*.gif,*.bmp")]) == [pattern, str(tmp_path / "*.gif"), "*.bmp"]


def test_demo_gluoncv_usage_headless_torch_backend(tmp_path):
    """GluonCV's command line (comma list, no --out-dir) on a machine without a display, with the PyTorch twin."""
    pytest.importorskip("torch")
    from convert import get_torch_model, save_torch_model

    pth = save_torch_model(get_torch_model(DEMO_NETWORK), tmp_path / "random.pth")
    images = [DEMO_IMAGES / "dog.jpg", DEMO_IMAGES / "giraffe.jpg"]
    rc, out, err = run_demo_headless(["--network", DEMO_NETWORK, "--backend", "torch", "--pretrained", pth,
                                      "--images", ",".join(map(str, images))], tmp_path, headless_env(tmp_path))
    check_default_folder(rc, out, err, tmp_path, DEMO_NETWORK, images)


def test_demo_shows_each_image_with_matplotlib_where_there_is_a_display(agg, monkeypatch):
    """Without --out-dir and with a display, each annotated image is shown in a matplotlib window (plt.show) and
    closed after, as GluonCV's demo shows it; without a display, or with a file-only backend, nothing is shown."""
    from gluon_ssd.cli import demo

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert not demo.Shower(False, gluoncv=True).enabled
    monkeypatch.setenv("DISPLAY", ":0")
    assert not demo.Shower(False, gluoncv=True).enabled  # Agg draws to files only
    monkeypatch.setattr(demo, "interactive_matplotlib", lambda: True)
    shown = []
    monkeypatch.setattr(agg, "show", lambda *a, **k: shown.append([im.get_array() for ax in agg.gcf().axes
                                                                   for im in ax.images]))
    shower = demo.Shower(False, gluoncv=True)
    assert shower.mode == "matplotlib" and not demo.Shower(False).enabled
    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3)).astype(np.uint8)
    shower(image, False)
    assert len(shown) == 1 and np.array_equal(shown[0][0], image) and agg.get_fignums() == []


@pytest.mark.mxnet
def test_demo_gluoncv_usage_headless_mxnet(tmp_path):
    """demo_ssd.py --network ssd_512_mobilenet1.0_voc --pretrained False --images a.jpg,b.jpg, as GluonCV's."""
    images = [DEMO_IMAGES / "dog.jpg", DEMO_IMAGES / "horses.jpg"]
    rc, out, err = run_demo_headless(["--network", DEMO_NETWORK, "--pretrained", "False", "--images",
                                      ",".join(map(str, images))], tmp_path, headless_env(tmp_path))
    check_default_folder(rc, out, err, tmp_path, DEMO_NETWORK, images)


# ---------------------------------------------------------------------------------------------- utils.viz
def _rects(ax):
    return [(p.get_x(), p.get_y(), p.get_width(), p.get_height()) for p in ax.patches]


def _texts(ax):
    return [(t.get_text(), tuple(t.get_position())) for t in ax.texts]


def test_plot_bbox_on_numpy_hand_computed(agg):
    from gluon_ssd.utils.viz import plot_bbox

    img = np.zeros((60, 80, 3), np.uint8)
    boxes = np.array([[10.7, 5.2, 30.9, 25.5], [1, 2, 3, 4], [40, 10, 70, 50], [0, 0, 5, 5]], np.float32)
    scores = np.array([[0.9], [0.2], [0.5], [0.95]], np.float32)
    labels = np.array([[1], [0], [7], [-1]], np.float32)
    colors = {}
    ax = plot_bbox(img, boxes, scores, labels, thresh=0.5, class_names=["a", "b"], colors=colors)
    assert isinstance(ax, agg.Axes)
    # below thresh (row 1) and padding (row 3) are not drawn; corners are truncated to ints as GluonCV's
    assert _rects(ax) == [(10, 5, 20, 20), (40, 10, 30, 40)]
    assert _texts(ax) == [("b 0.900", (10, 3)), ("7 0.500", (40, 8))]
    assert set(colors) == {1, 7}
    relative = boxes / np.array([80, 60, 80, 60], np.float32)
    before = relative.copy()
    ax = plot_bbox(img, relative, absolute_coordinates=False)
    assert np.array_equal(relative, before)  # not scaled in place
    assert len(ax.patches) == 4 and len(ax.texts) == 0  # no scores, labels or names: boxes only
    with pytest.raises(ValueError, match="scores and bboxes mismatch, 3 vs 4"):
        plot_bbox(img, boxes, scores[:3])


@pytest.mark.mxnet
def test_plot_bbox_draws_what_gluoncv_draws(gcv, agg):
    import mxnet as mx

    from gluon_ssd.utils.viz import plot_bbox

    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (120, 160, 3)).astype(np.uint8)
    xy = rng.uniform(0, 100, (12, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(3, 60, (12, 2))], axis=1).astype(np.float32)
    scores = rng.uniform(0, 1, (12, 1)).astype(np.float32)
    labels = rng.integers(-1, 6, (12, 1)).astype(np.float32)
    names = ["cat", "dog", "person", "car"]  # ids 4 and 5 have no name: labelled with the number
    cases = [dict(scores=scores, labels=labels, class_names=names, thresh=0.3),
             dict(scores=scores, labels=labels, thresh=0.6, reverse_rgb=True),
             dict(scores=scores, thresh=0.5),  # no labels, no names: the score alone
             dict(labels=labels, class_names=names)]
    for case in cases:
        ref = gcv.utils.viz.plot_bbox(img, boxes.copy(), **case)
        ours = plot_bbox(mx.nd.array(img), mx.nd.array(boxes),
                         **{k: mx.nd.array(v) if isinstance(v, np.ndarray) else v for k, v in case.items()})
        assert _rects(ours) == _rects(ref) and len(ref.patches) > 2, case.keys()
        assert _texts(ours) == _texts(ref), case.keys()
        assert np.array_equal(ours.images[0].get_array(), ref.images[0].get_array())
    relative = boxes / np.array([160, 120, 160, 120], np.float32)
    ref = gcv.utils.viz.plot_bbox(img, relative.copy(), scores, labels, absolute_coordinates=False)
    ours = plot_bbox(img, relative, scores, labels, absolute_coordinates=False)
    assert _rects(ours) == _rects(ref) and _texts(ours) == _texts(ref)


# -------------------------------------------------------------------------------------------- utils.random
def _draws():
    from gluon_ssd._mxnet import mx

    values = [random.random(), random.randint(0, 10**9), *np.random.rand(3).tolist()]
    if mx is not None:
        values += mx.nd.random.uniform(shape=(3,)).asnumpy().tolist()
    return values


def test_random_seed_seeds_python_and_numpy():
    from gluon_ssd.utils.random import seed

    seed(11)
    ours = _draws()[:5]
    random.seed(11)
    np.random.seed(11)
    assert ours == [random.random(), random.randint(0, 10**9), *np.random.rand(3).tolist()]
    seed(None)  # from the system's entropy; not an error where MXNet is installed (GluonCV's raises there)
    assert _draws() != ours


@pytest.mark.mxnet
def test_random_seed_reproduces_gluoncv_draws(gcv):
    from gluon_ssd.utils.random import seed

    gcv.utils.random.seed(233)
    theirs = _draws()
    seed(233)
    assert _draws() == theirs and len(theirs) == 8


# ------------------------------------------------------------------------------------------- utils.metrics
def test_utils_names_at_gluoncv_paths():
    from gluon_ssd import utils
    from gluon_ssd.eval import VOC07MApMetric, VOCMApMetric
    from gluon_ssd.utils.metrics import COCODetectionMetric
    from gluon_ssd.utils.metrics.voc_detection import VOC07MApMetric as V07
    from gluon_ssd.utils.metrics.voc_detection import VOCMApMetric as V

    assert (V07, V) == (VOC07MApMetric, VOCMApMetric)
    assert utils.metrics.COCODetectionMetric is COCODetectionMetric
    assert callable(utils.viz.plot_bbox) and callable(utils.viz.plot_image) and callable(utils.random.seed)


def _coco_predictions(rng, coco, data_shape, batch_size, n_pred=30):
    """Seeded network outputs per batch of images (sorted ids): boxes near the ground truth in network-input
    pixels or anywhere, random classes among 80 and the -1 padding, with GluonCV's six update arrays."""
    import mxnet as mx

    height, width = data_shape
    json_to_contig = {c: i for i, c in enumerate(coco.getCatIds())}
    ids = sorted(coco.getImgIds())
    batches = []
    for start in range(0, len(ids), batch_size):
        chunk = ids[start:start + batch_size]
        boxes = np.zeros((len(chunk), n_pred, 4), np.float32)
        labels = -np.ones((len(chunk), n_pred, 1), np.float32)
        scores = -np.ones((len(chunk), n_pred, 1), np.float32)
        for b, image_id in enumerate(chunk):
            info = coco.imgs[image_id]
            anns = coco.imgToAnns[image_id]
            sx, sy = width / info["width"], height / info["height"]
            for k in range(int(rng.integers(0, n_pred))):
                if anns and rng.random() < 0.7:
                    ann = anns[int(rng.integers(len(anns)))]
                    x, y, w, h = ann["bbox"]
                    boxes[b, k] = np.array([x * sx, y * sy, (x + w) * sx, (y + h) * sy]) + rng.normal(0, 3, 4)
                    labels[b, k, 0] = json_to_contig[ann["category_id"]]
                else:
                    corner = rng.uniform(0, width - 20, 2)
                    boxes[b, k] = np.concatenate([corner, corner + rng.uniform(5, 100, 2)])
                    labels[b, k, 0] = rng.integers(0, 80)
                scores[b, k, 0] = rng.random()
        half = (len(chunk) + 1) // 2  # GluonCV's eval script passes lists (one array per device)
        split = [[mx.nd.array(a[:half]), mx.nd.array(a[half:])] for a in (boxes, labels, scores)]
        gt = [[mx.nd.zeros((len(chunk), 2, d))] for d in (4, 1, 1)]  # ignored by both metrics
        batches.append(split + gt)
    return batches


@pytest.mark.mxnet
@pytest.mark.parametrize("split", ["instances_train2017", "instances_val2017"])
def test_coco_detection_metric_front_equals_gluoncv(gcv, coco_url_root, tmp_path, split):
    from gluon_ssd.data import COCODetection
    from gluon_ssd.utils.metrics.coco_detection import COCODetectionMetric

    folder = "images/" + split.split("_")[1]
    ours_data = COCODetection(TINYCOCO, split, skip_empty=False, image_dir=folder, use_crowd=False)
    ref_data = gcv.data.COCODetection(str(coco_url_root), split, skip_empty=False)
    data_shape = (512, 384)
    batches = _coco_predictions(np.random.default_rng(5), ours_data.coco, data_shape, batch_size=4)
    ref = gcv.utils.metrics.COCODetectionMetric(ref_data, str(tmp_path / "gcv_eval"), use_time=False,
                                                data_shape=data_shape)
    ours = COCODetectionMetric(ours_data, str(tmp_path / "ours_eval"), use_time=False, data_shape=data_shape)
    for batch in batches:  # as GluonCV's eval_ssd.py calls it: six arguments, the ground truth ignored
        ref.update(*batch)
        ours.update(*batch)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", RuntimeWarning)  # gluoncv averages the empty arrays of absent classes
        ref_names, ref_values = ref.get()
    names, values = ours.get()
    assert names == ref_names and values == ref_values
    assert len(values) == 82 and values[0].count("Average") == 12 and float(values[-1]) > 5
    results = json.loads((tmp_path / "ours_eval.json").read_text())
    assert results == json.loads((tmp_path / "gcv_eval.json").read_text()) and len(results) > 50
    precision = ref._coco_eval.eval["precision"][:, :, :, 0, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref_per_class = [np.mean(p[p > -1]) for p in np.moveaxis(precision, 2, 0)]
    np.testing.assert_allclose(list(ours.stats["per_class"].values()), ref_per_class, atol=1e-12, rtol=0)
    np.testing.assert_allclose([ours.stats["AP"], ours.stats["AP50"]], ref._coco_eval.stats[:2], atol=1e-12, rtol=0)

    cleaned = COCODetectionMetric(ours_data, str(tmp_path / "cleaned"), cleanup=True, data_shape=data_shape)
    assert len(list(tmp_path.glob("cleaned_*.json"))) == 1  # created (empty) at once, as GluonCV's
    for batch in batches:
        cleaned.update(*batch[:3])
    assert cleaned.get() == (names, values) and not list(tmp_path.glob("cleaned_*.json"))


def test_coco_detection_metric_front_refuses_what_it_cannot_use(tmp_path):
    from gluon_ssd.data import COCODetection
    from gluon_ssd.utils.metrics import COCODetectionMetric

    data = COCODetection(TINYCOCO, "instances_val2017", skip_empty=False, image_dir="images/val2017", use_crowd=False)
    with pytest.raises(RuntimeError, match="pass a save_prefix in a writable folder"):
        COCODetectionMetric(data, str(tmp_path / "missing" / "x"))
    with pytest.raises(ValueError, match="give data_shape"):
        COCODetectionMetric(data, str(tmp_path / "y"), post_affine=lambda *a: np.eye(2, 3))
    with pytest.raises(TypeError, match="lacks coco, contiguous_id_to_json"):
        COCODetectionMetric(object.__new__(type("Plain", (), {"classes": ()})), str(tmp_path / "z"))


# ------------------------------------------------------------------------------------------ export_block
@pytest.fixture(scope="module")
def seeded(gcv, tmp_path_factory):
    """gluoncv's NETWORK with seeded weights, its file, ours loaded from it, and a photo as gluoncv's demo
    prepares it: (normalized (1, 3, H, W) NDArray, the resized (H, W, 3) uint8 pixels)."""
    from gluon_ssd import get_model
    from tests.helpers import build_reference, randomize

    x, pixels = gcv.data.transforms.presets.ssd.load_test(str(DEMO_IMAGES / "dog.jpg"), short=512)
    ref = randomize(build_reference(gcv, NETWORK), seed=0, probe=x)
    params = tmp_path_factory.mktemp("seeded") / "seeded.params"
    ref.save_parameters(str(params))
    net = get_model(NETWORK, pretrained=str(params))
    return ref, net, params, x, pixels


def _outputs(block, x):
    import mxnet as mx

    with mx.autograd.predict_mode():
        return [o.asnumpy() for o in block(x)]


@pytest.mark.mxnet
def test_export_block_takes_raw_pixels_and_detects_as_the_network(seeded, tmp_path):
    import mxnet as mx

    from gluon_ssd.deploy import ExportedInput, load_exported
    from gluon_ssd.utils import export_block

    _, net, _, x, pixels = seeded
    sym_file, params_file = export_block(str(tmp_path / "raw"), net)
    assert (sym_file, params_file) == (f"{tmp_path}/raw-symbol.json", f"{tmp_path}/raw-0000.params")
    graph = mx.gluon.SymbolBlock.imports(sym_file, ["data"], params_file)
    ids, scores, boxes = _outputs(graph, mx.nd.array(pixels[None].astype(np.float32)))  # (1, H, W, 3) 0-255
    ref_ids, ref_scores, ref_boxes = _outputs(net, x)  # the network on its normalized (1, 3, H, W) input
    # The graph normalizes as GluonCV's export does, (x - 123.675) / 58.395, the network's transform as
    # (x / 255 - 0.485) / 0.229: equal up to float32 rounding.
    assert (ref_scores > 0.05).sum() > 20
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5, rtol=0)
    np.testing.assert_allclose(boxes, ref_boxes, atol=1e-3, rtol=0)
    # load_exported (what --deploy runs) feeds the network's input to the whole graph: exactly the raw run
    wrapped = load_exported(str(tmp_path / "raw"))
    assert wrapped.input == ExportedInput(True, "HWC", "meta") and wrapped.classes == net.classes
    for got, want in zip(_outputs(wrapped, x), (ids, scores, boxes)):
        np.testing.assert_array_equal(got, want)
    assert load_exported(str(tmp_path / "raw"), raw=True).input.preprocess


@pytest.mark.mxnet
def test_export_block_graph_equals_gluoncv_export_block(seeded, gcv, tmp_path):
    import mxnet as mx

    from gluon_ssd.deploy import ExportedInput, load_exported
    from gluon_ssd.utils import export_block

    ref, net, _, x, pixels = seeded
    _gluoncv_export_block(gcv, str(tmp_path / "gcv"), ref)
    _gluoncv_export_block(gcv, str(tmp_path / "gcv_nchw"), ref, preprocess=False, layout="CHW")
    export_block(str(tmp_path / "ours"), net, data_shape=(300, 300, 3))
    export_block(str(tmp_path / "ours_nchw"), net, preprocess=False, layout="CHW")
    raw = mx.nd.array(pixels[None].astype(np.float32))
    for prefix, feed in (("", raw), ("_nchw", x)):
        theirs = mx.gluon.SymbolBlock.imports(f"{tmp_path}/gcv{prefix}-symbol.json", ["data"],
                                              f"{tmp_path}/gcv{prefix}-0000.params")
        ours = mx.gluon.SymbolBlock.imports(f"{tmp_path}/ours{prefix}-symbol.json", ["data"],
                                            f"{tmp_path}/ours{prefix}-0000.params")
        for got, want in zip(_outputs(ours, feed), _outputs(theirs, feed)):
            np.testing.assert_array_equal(got, want)
    # gluoncv's exports have no meta file: what they take is read from the graph
    assert not (tmp_path / "gcv-meta.json").exists()
    loaded = load_exported(str(tmp_path / "gcv"), classes=net.classes)
    assert loaded.input == ExportedInput(True, "HWC", "graph")
    assert load_exported(str(tmp_path / "gcv_nchw"), classes=net.classes).input == ExportedInput(False, "CHW", "graph")
    theirs = mx.gluon.SymbolBlock.imports(f"{tmp_path}/gcv-symbol.json", ["data"], f"{tmp_path}/gcv-0000.params")
    for got, want in zip(_outputs(loaded, x), _outputs(theirs, raw)):  # normalized in, the pixels run
        np.testing.assert_array_equal(got, want)


def _gluoncv_export_block(gcv, *args, **kwargs):
    """gluoncv's export_block, which removes box_encode from mx.sym.contrib for the rest of the process: put back."""
    import mxnet as mx

    box_encode = mx.sym.contrib.__dict__.get("box_encode")
    try:
        gcv.utils.export_block(*args, **kwargs)
    finally:
        if box_encode is not None:
            mx.sym.contrib.__dict__["box_encode"] = box_encode


@pytest.mark.mxnet
def test_eval_deploy_reads_gluoncv_pixel_export_without_meta(seeded, gcv, tmp_path, capsys):
    """eval_ssd.py --deploy on GluonCV's export_block graph (raw pixels in, no meta file) scores as eval_ssd.py
    --pretrained on the same weights: the same COCO detections (within float32 rounding) and mAP."""
    from gluon_ssd.cli.eval import main as eval_main
    from tests.helpers import build_reference, randomize

    name = "ssd_300_mobilenet0.25_coco"
    ref = randomize(build_reference(gcv, name), seed=1, probe=seeded[3])
    params = tmp_path / f"{name}.params"
    ref.save_parameters(str(params))
    _gluoncv_export_block(gcv, str(tmp_path / "gcv"), ref)  # GluonCV's NMS defaults: eval_ssd.py's
    common = ["--data-shape", 300, "--dataset", "coco", "--dataset-root", TINYCOCO, "--splits", "instances_val2017",
              "--image-dir", "images/val2017", "--batch-size", 4, "-j", 0, "--no-progress", "--no-plots"]
    runs = {"zoo": ["--network", name, "--pretrained", params], "deploy": ["--deploy", "--model-prefix",
                                                                        tmp_path / "gcv"]}
    for out, extra in runs.items():
        assert eval_main([str(a) for a in [*common, *extra, "--out-dir", tmp_path / out]]) == 0, capsys.readouterr()
    capsys.readouterr()
    zoo, deployed = (json.loads((tmp_path / out / "results.json").read_text()) for out in runs)
    assert deployed["settings"]["backend"] == "deploy" and deployed["map"] == pytest.approx(zoo["map"], abs=1e-6)
    zoo, deployed = (json.loads((tmp_path / out / "coco_detections.json").read_text()) for out in runs)
    assert len(zoo) == len(deployed) > 100
    key = [(d["image_id"], d["category_id"]) for d in zoo]
    assert key == [(d["image_id"], d["category_id"]) for d in deployed]
    np.testing.assert_allclose([d["score"] for d in zoo], [d["score"] for d in deployed], atol=1e-5, rtol=0)
    np.testing.assert_allclose([d["bbox"] for d in zoo], [d["bbox"] for d in deployed], atol=1e-3, rtol=0)


@pytest.mark.mxnet
def test_demo_deploy_reads_our_pixel_export(seeded, tmp_path, capsys):
    """demo_ssd.py --deploy on export_block's graph (raw pixels in, meta file) detects as --pretrained does."""
    from gluon_ssd import get_model
    from gluon_ssd.cli.demo import main as demo_main
    from gluon_ssd.utils import export_block

    params = seeded[2]
    net = get_model(NETWORK, pretrained=str(params))
    net.set_nms(0.45, 200, 100)  # the demo's NMS, baked into the graph
    export_block(str(tmp_path / "ours"), net)
    photos = [str(DEMO_IMAGES / "dog.jpg"), str(DEMO_IMAGES / "person.jpg")]
    assert demo_main(["--network", NETWORK, "--pretrained", str(params), "--thresh", "0.2", "--out-dir",
                      str(tmp_path / "zoo"), "--images", ",".join(photos)]) == 0
    assert demo_main(["--deploy", "--model-prefix", str(tmp_path / "ours"), "--thresh", "0.2", "--out-dir",
                      str(tmp_path / "deploy"), "--images", *photos]) == 0
    capsys.readouterr()
    zoo, deployed = ([json.loads(line) for line in (tmp_path / d / "detections.jsonl").open()]
                     for d in ("zoo", "deploy"))
    assert [r["image"] for r in zoo] == [r["image"] for r in deployed] == photos
    for a, b in zip((r["detections"] for r in zoo), (r["detections"] for r in deployed)):
        assert len(a) == len(b) > 3 and [d["class"] for d in a] == [d["class"] for d in b]
        np.testing.assert_allclose([d["score"] for d in a], [d["score"] for d in b], atol=2e-4, rtol=0)
        np.testing.assert_allclose([d["box"] for d in a], [d["box"] for d in b], atol=0.02, rtol=0)


def conv_then_pixel_like_ops():
    """A block whose graph subtracts and transposes (0, 3, 1, 2) after its first convolution only: no
    preprocessing, however much those operators look like one."""
    import mxnet as mx

    class Block(mx.gluon.HybridBlock):
        def __init__(self):
            super().__init__()
            with self.name_scope():
                self.conv = mx.gluon.nn.Conv2D(3, 1)

        def hybrid_forward(self, F, x):
            y = F.transpose(self.conv(x), axes=(0, 3, 1, 2))
            return F.broadcast_sub(y, F.mean(y, axis=1, keepdims=True))

    return Block()


@pytest.mark.mxnet
@pytest.mark.parametrize("preprocess", [False, True])
def test_graph_without_meta_read_as_exported(tmp_path, preprocess):
    """An export without its meta file (GluonCV's, an older one) is read from the graph alike, also for the VGG
    network, whose graph scales its input (broadcast_mul) before the first convolution, for int8, and for a graph
    with pixel-like operators after its first convolution."""
    from gluon_ssd import get_model, quantize
    from gluon_ssd.deploy import ExportedInput, export, exported_input

    vgg = get_model("ssd_300_vgg16_atrous_voc", pretrained=False, pretrained_base=False)
    small = get_model(NETWORK, pretrained=False, pretrained_base=False)
    int8 = quantize(small, [np.zeros((1, 3, 300, 300), np.float32)], calib_mode="naive")
    conv_first = conv_then_pixel_like_ops()
    conv_first.initialize()
    for name, net in (("vgg", vgg), ("int8", int8), ("conv_first", conv_first)):
        prefix = str(tmp_path / f"{name}_{preprocess}")
        export(net, prefix, preprocess=preprocess)
        from_meta = exported_input(prefix)
        os.remove(f"{prefix}-meta.json")
        assert exported_input(prefix) == ExportedInput(preprocess, "HWC" if preprocess else "CHW", "graph")
        assert from_meta == ExportedInput(preprocess, "HWC" if preprocess else "CHW", "meta")
