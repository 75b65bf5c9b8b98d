"""INT8 on the CPU: MXNet's quantization of gluon_ssd models against gluoncv's own call, GluonCV's int8 zoo,
eval_ssd.py --calibration / --deploy / --backend torch --dtype int8|bf16 on a trained model, bad input."""
from __future__ import annotations

import json

import mxnet as mx
import numpy as np
import pytest

import eval_ssd
import gluon_ssd
from gluon_ssd.quantization import INT8_MODELS, get_int8_model, int8_symbol_file
from tests.helpers import DATA, build_reference, photo_batch, randomize, smallest_size

PHOTO = str(DATA / "voc_sample/VOCdevkit/VOC2007/JPEGImages/000001.jpg")
CALIB = [str(DATA / "demo_images/darknet/dog.jpg"), str(DATA / "voc_sample/VOCdevkit/VOC2007/JPEGImages/000004.jpg")]


def _cli(*argv):
    return eval_ssd.main([str(a) for a in argv])


def _gluoncv_int8(gcv, monkeypatch, name, params):
    """gluoncv's own int8 model ``name`` built by its get_model, with its fp32 parameter file taken from
    ``params`` instead of the model store (no download here)."""
    import gluoncv.model_zoo.model_store as store
    import gluoncv.model_zoo.model_zoo as zoo

    monkeypatch.setattr(store, "get_model_file", lambda *a, **k: params)
    build = zoo.get_model
    # Its fp32 twin is built with the ImageNet backbone (a download) and then overwritten by ``params``.
    monkeypatch.setattr(zoo, "get_model", lambda n, **kw: build(n, **{**kw, "pretrained_base": False}))
    return gcv.model_zoo.get_model(name, pretrained=True)


@pytest.mark.parametrize("int8_name", list(INT8_MODELS))
def test_int8_zoo_and_quantize_match_gluoncv(gcv, monkeypatch, tmp_path, int8_name):
    """Seeded random weights of a zoo model. (1) GluonCV's int8 graph (the JSON inside the installed gluoncv)
    with those weights: gluon_ssd's loader gives gluoncv's outputs. (2) gluon_ssd.quantize on gluon_ssd's model
    and MXNet's quantize_net on gluoncv's model (GluonCV's eval_ssd.py call), same naive calibration images:
    the same detections. Measured difference 0 on both, for all four models (the same oneDNN int8 graph), where
    quantize_heads='auto' quantizes every class head."""
    name = INT8_MODELS[int8_name]
    size = smallest_size(name)  # the int8 graphs take any input size (anchors sliced to the feature maps)
    x = photo_batch(gcv, [PHOTO], size, size)
    calib = photo_batch(gcv, CALIB[:1], size, size)  # one calibration image: calibration is most of the time
    ref = randomize(build_reference(gcv, name), seed=7, probe=x)
    params = str(tmp_path / "fp32.params")
    ref.save_parameters(params)

    theirs = _gluoncv_int8(gcv, monkeypatch, int8_name, params)(x)
    ours = get_int8_model(int8_name, pretrained=params)(x)
    for a, b, what in zip(ours, theirs, ("ids", "scores", "boxes")):
        np.testing.assert_array_equal(a.asnumpy(), b.asnumpy(), err_msg=f"int8 zoo {what}")

    from mxnet.contrib.quantization import quantize_net

    ref.hybridize()
    loader = mx.gluon.data.DataLoader(mx.gluon.data.ArrayDataset(calib, mx.nd.zeros((len(calib), 1))), batch_size=2)
    gq = quantize_net(ref, quantized_dtype="auto", exclude_layers=[], exclude_layers_match=["flatten", "concat"],
                      calib_data=loader, calib_mode="naive", num_calib_examples=len(calib), ctx=mx.cpu())
    net = gluon_ssd.get_model(name, pretrained=params)
    # The default quantize_heads='auto' makes every class head int8 here (random weights' logits move no score
    # by more than 0.05; measured 0.005-0.03), i.e. GluonCV's graph.
    qnet = gluon_ssd.quantize(net, [calib], calib_mode="naive")
    assert qnet.float_heads == [], f"auto kept heads {qnet.float_heads} float32, score errors {qnet.head_errors}"
    fp32 = net(x)
    theirs, ours = gq(x), qnet(x)
    ids, scores, boxes = (o.asnumpy() for o in ours)
    assert (ids >= 0).sum() > 10, "too few detections for the comparison to mean anything"
    np.testing.assert_array_equal(ids, theirs[0].asnumpy())
    np.testing.assert_allclose(scores, theirs[1].asnumpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(boxes, theirs[2].asnumpy(), rtol=1e-6, atol=1e-4)
    # And it is an int8 model: its scores are near, not equal to, the float32 model's.
    assert not np.array_equal(scores, fp32[1].asnumpy())


def test_quantized_model_exports_and_loads_back(gcv, tmp_path):
    size = 300
    x = photo_batch(gcv, [PHOTO], size, size)
    net = gluon_ssd.get_model("ssd_300_mobilenet0.25_voc", pretrained=False, pretrained_base=False)
    qnet = gluon_ssd.quantize(net, [photo_batch(gcv, CALIB, size, size).asnumpy()], calib_mode="entropy")
    sym_file, params_file = gluon_ssd.export(qnet, str(tmp_path / "q"))
    meta = json.loads((tmp_path / "q-meta.json").read_text())
    assert meta["model"] == "ssd_300_mobilenet0.25_voc" and meta["calib_mode"] == "entropy"
    assert '"_contrib_quantize_v2"' in open(sym_file).read()
    back = gluon_ssd.load_exported(str(tmp_path / "q"))
    assert back.classes == net.classes
    for a, b in zip(qnet(x), back(x)):
        np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())
    # A plain SymbolBlock.imports (what C++ and GluonCV's --deploy do) reads the same files.
    plain = mx.gluon.SymbolBlock.imports(sym_file, ["data"], params_file)
    np.testing.assert_array_equal(plain(x)[1].asnumpy(), back(x)[1].asnumpy())
    with pytest.raises(ValueError, match="exported for 20 classes"):
        gluon_ssd.load_exported(str(tmp_path / "q"), classes=["cat", "dog"])


def test_int8_head_check_by_hand():
    """One class (2 channels per anchor), two anchors on a 1x2 map. Logits (bg 0, fg 0.25) and (0, 12.7).
    Symmetric int8: step 12.7/127 = 0.1, so 0.25 rounds (half to even) to 0.2: the fg score moves from
    sigmoid(0.25) = 0.562177 to sigmoid(0.2) = 0.549834, by 0.012343; 12.7 is a level. Asymmetric uint8 over
    [0, 12.7]: step 12.7/255 = 0.0498, 0.25 -> 5 steps = 0.249020: the score moves by 0.000241."""
    from gluon_ssd.int8_heads import float_heads, head_score_error

    logits = np.array([[[[0.0, 0.0]], [[0.25, 12.7]]]], np.float32)  # (B, A*(C+1), H, W) = (1, 2, 1, 2)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    assert head_score_error(logits, 1) == pytest.approx(sig(0.25) - sig(0.2), abs=1e-6)
    assert head_score_error(logits, 1) == pytest.approx(0.012343, abs=1e-6)
    step = np.float32(12.7) / 255
    assert head_score_error(logits, 1, "asymmetric") == pytest.approx(sig(0.25) - sig(5 * step), abs=1e-6)
    wide = np.array([[[[0.0, 0.0]], [[0.25, 127.0]]]], np.float32)  # step 1: 0.25 -> 0, score 0.5622 -> 0.5
    kept, errors = float_heads([logits, wide], 1, tolerance=0.05)
    assert kept == [1] and errors[1] == pytest.approx(sig(0.25) - 0.5, abs=1e-6)
    with pytest.raises(ValueError, match="anchors\\*\\(classes\\+1\\)"):
        head_score_error(np.zeros((1, 5, 2, 2)), 1)
    from gluon_ssd.int8_heads import choose_float_heads

    assert choose_float_heads(True, 2, None, 1, "symmetric") == ([], None)
    assert choose_float_heads(0, 2, None, 1, "symmetric") == ([0, 1], None)
    assert choose_float_heads("auto", 2, None, 1, "symmetric") == ([0, 1], None)  # no images: all float32
    assert choose_float_heads("auto", 2, lambda: [logits, wide], 1, "symmetric")[0] == [1]
    with pytest.raises(ValueError, match="expected True, False or 'auto'"):
        choose_float_heads("yes", 2, None, 1, "symmetric")


def test_quantize_refuses_bad_input():
    net = gluon_ssd.get_model("ssd_300_mobilenet0.25_voc", pretrained=False, pretrained_base=False)
    batch = np.zeros((1, 3, 300, 300), dtype=np.float32)
    with pytest.raises(ValueError, match="CPU only"):
        gluon_ssd.quantize(net, [batch], ctx=mx.gpu(0))
    with pytest.raises(ValueError, match="at least one batch"):
        gluon_ssd.quantize(net, [])
    with pytest.raises(ValueError, match="calib_mode 'minmax'"):
        gluon_ssd.quantize(net, [batch], calib_mode="minmax")
    with pytest.raises(ValueError, match="uint8 cannot hold"):
        gluon_ssd.quantize(net, [batch - 1], quantized_dtype="uint8")
    with pytest.raises(ValueError, match="needs calib_data"):
        gluon_ssd.quantize(net, None)
    with pytest.raises(ValueError, match="quantize_heads 'some': expected True, False or 'auto'"):
        gluon_ssd.quantize(net, [batch], quantize_heads="some")
    with pytest.raises(ValueError, match="no int8 version of 'ssd_512_resnet18_v1_voc_int8'"):
        gluon_ssd.get_model("ssd_512_resnet18_v1_voc_int8")


def test_missing_int8_json_says_where_to_find_it(tmp_path, monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)  # as if gluoncv were not installed
    with pytest.raises(FileNotFoundError) as err:
        int8_symbol_file("ssd_512_mobilenet1.0_voc_int8", root=str(tmp_path))
    msg = str(err.value)
    assert "gluoncv/model_zoo/quantized/ssd_512_mobilenet1.0_voc_int8-symbol.json" in msg
    assert str(tmp_path / "ssd_512_mobilenet1.0_voc_int8-symbol.json") in msg


@pytest.mark.parametrize("args, message", [
    (["--network", "resnet18_v1", "--data-shape", "512", "--quantized"], "GluonCV has no int8 version of"),
    (["--network", "mobilenet1.0", "--data-shape", "512", "--quantized", "--num-gpus", "1"], "CPU only"),
    (["--calibration", "--num-calib-batches", "0"], "--num-calib-batches must be at least 1"),
    (["--calibration", "--backend", "torch"], "--backend torch --dtype int8"),
    (["--dtype", "int8"], "--backend torch"),
    (["--backend", "torch", "--dtype", "int8", "--device", "cuda"], "CPU only"),
    (["--calibration", "--quantize-heads", "some"], "invalid choice: 'some'"),
])
def test_eval_cli_refuses_bad_int8_requests(tmp_path, capsys, args, message):
    rc = _cli("--benchmark", "--out-dir", tmp_path, "--no-progress", *args)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert message in err and "Traceback" not in err


# ------------------------------------------------------------------------ a model trained in the suite
def _eval(trained, out_dir, *extra):
    rc = _cli("--network", trained.network, "--data-shape", trained.data_shape, "--dataset", "custom",
              "--dataset-root", trained.data, "--splits", "val", "--pretrained", trained.params, "--batch-size", 8,
              "-j", 0, "--no-progress", "--no-plots", "--out-dir", out_dir, *extra)
    assert rc == 0
    return json.loads((out_dir / "results.json").read_text())


def test_int8_and_bf16_keep_the_trained_models_map(small_trained_model, tmp_path, capsys):
    """On the ResNet-18 SSD trained in the suite (VOC07 mAP about 0.8 on its 64 val images): MXNet int8
    (--calibration), the int8 export evaluated again (--deploy), the twin in int8 (ONNX Runtime) and in
    bf16 all score within 0.02 of float32."""
    trained = small_trained_model
    fp32 = _eval(trained, tmp_path / "fp32")["map"]
    assert fp32 > 0.5, "the trained model does not detect: the comparison would prove little"
    int8 = _eval(trained, tmp_path / "int8", "--calibration", "--num-calib-batches", 2)
    assert int8["settings"]["precision"] == "int8" and int8["settings"]["cpu_features"] is not None
    prefix = tmp_path / "int8" / "model" / f"{trained.network}-quantized-naive"
    assert f"wrote the int8 model (naive calibration on 16 images): {prefix}-symbol.json" in capsys.readouterr().out
    deployed = _cli("--deploy", "--model-prefix", prefix, "--data-shape", trained.data_shape, "--dataset", "custom",
                    "--dataset-root", trained.data, "--splits", "val", "--batch-size", 8, "-j", 0, "--no-progress",
                    "--no-plots", "--out-dir", tmp_path / "deploy")
    assert deployed == 0
    deploy_map = json.loads((tmp_path / "deploy" / "results.json").read_text())["map"]
    twin8 = _eval(trained, tmp_path / "twin8", "--backend", "torch", "--dtype", "int8", "--num-calib-batches", 2)
    bf16 = _eval(trained, tmp_path / "bf16", "--backend", "torch", "--dtype", "bf16")
    maps = {"mxnet int8": int8["map"], "deployed int8": deploy_map, "twin int8": twin8["map"], "twin bf16": bf16["map"]}
    for what, value in maps.items():
        assert abs(value - fp32) <= 0.02, f"{what} mAP {value:.4f} vs float32 {fp32:.4f}"
    assert deploy_map == pytest.approx(int8["map"], abs=1e-9)  # the same graph and weights, read back
    # quantize_heads='auto' kept float32 exactly the two heads whose int8 logits move scores (measured score
    # errors 0.38 and 0.11 on the widest logit ranges; the other four 0.0003-0.0008), in both frameworks.
    assert json.loads(open(f"{prefix}-meta.json").read())["float_heads"] == [0, 1]
    import onnx

    onnx_file = tmp_path / "twin8" / "model" / f"{trained.network}-int8-naive.onnx"
    meta = json.loads(next(p.value for p in onnx.load(str(onnx_file)).metadata_props if p.key == "gluon_ssd"))
    assert meta["float_heads"] == [0, 1], meta["head_errors"]


def test_int8_export_of_another_model_is_refused(small_trained_model, tmp_path, capsys):
    """The trained two-class model's int8 export evaluated on VOC (20 classes): a message, exit 2."""
    trained = small_trained_model
    net = gluon_ssd.get_model(trained.network, pretrained=trained.params, classes=["circle", "cross"])
    qnet = gluon_ssd.quantize(net, [np.zeros((2, 3, 128, 128), np.float32)], calib_mode="none")
    gluon_ssd.export(qnet, str(tmp_path / "q"), data_shape=(128, 128))
    rc = _cli("--deploy", "--model-prefix", tmp_path / "q", "--data-shape", 128, "--dataset", "voc",
              "--dataset-root", DATA / "voc_sample/VOCdevkit", "--splits", "2007_test", "--no-progress",
              "--out-dir", tmp_path / "out")
    err = capsys.readouterr().err
    assert rc == 2 and "exported for 2 classes" in err and "Traceback" not in err


def test_int8_models_detect_in_the_demo(small_trained_model, tmp_path, capsys):
    """The trained model's MXNet int8 export (demo_ssd.py --deploy) and its int8 twin written by
    ``python -m convert --quantize int8`` (demo_ssd.py --backend torch --pretrained X.onnx) find the shapes
    like the float32 model does (tests/gluon_ssd/cli/test_demo.py, same bounds)."""
    from convert.cli import main as convert_main
    from tests.gluon_ssd.cli.test_demo import _assert_detections_on_shapes

    trained = small_trained_model
    classes = (trained.data / "classes.txt").read_text().split()
    net = gluon_ssd.get_model(trained.network, pretrained=trained.params, classes=classes)
    net.set_nms(0.45, 200, 100)
    calib = [str(trained.data / "JPEGImages" / f"{line.strip()}.jpg")
             for line in open(trained.data / "ImageSets" / "Main" / "train.txt")][:16]
    from gluon_ssd.data.custom import read_image
    from gluon_ssd.predict import Preprocessor

    preprocess = Preprocessor(data_shape=trained.data_shape)
    qnet = gluon_ssd.quantize(net, [np.stack([preprocess(read_image(p)) for p in calib])])
    prefix = tmp_path / "int8"
    gluon_ssd.export(qnet, str(prefix), data_shape=(trained.data_shape, trained.data_shape))
    _assert_detections_on_shapes(trained.data, trained.network, trained.params, trained.data_shape, tmp_path / "a",
                                 thresh=0.4, found_min=0.6, hits_min=0.55, extra=("--deploy", "--model-prefix", prefix))

    onnx_path = tmp_path / "twin-int8.onnx"
    rc = convert_main(["--network", trained.network, "--params", trained.params, "--classes", ",".join(classes),
                       "--quantize", "int8", "--calib-images", ",".join(calib), "--num-calib-images", "16",
                       "--data-shape", str(trained.data_shape), "--out", str(onnx_path)])
    assert rc == 0 and f"wrote {onnx_path}" in capsys.readouterr().out
    _assert_detections_on_shapes(trained.data, trained.network, onnx_path, trained.data_shape, tmp_path / "b",
                                 thresh=0.4, found_min=0.6, hits_min=0.55, extra=("--backend", "torch"))
    # Bad input to the converter: no calibration images, a folder without images.
    assert convert_main(["--network", trained.network, "--params", trained.params, "--classes", "circle,cross",
                         "--quantize", "int8"]) == 2
    (tmp_path / "empty").mkdir()
    assert convert_main(["--network", trained.network, "--params", trained.params, "--classes", "circle,cross",
                         "--quantize", "int8", "--calib-images", str(tmp_path / "empty")]) == 2
    assert "no images found" in capsys.readouterr().err


def test_cpu_features_are_read_from_the_cpu():
    from gluon_ssd import cpu

    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split(":")[1].split()
    except (OSError, StopIteration):
        pytest.skip("no /proc/cpuinfo here")
    features = cpu.vector_features()
    assert ("AVX2" in features) == ("avx2" in flags)
    assert ("VNNI" in features) == ("avx512_vnni" in flags)
    assert ("AMX-INT8" in features) == ("amx_int8" in flags)
    assert cpu.has_int8_dot_product() == bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags))
    assert all(f in cpu.describe() for f in features)
