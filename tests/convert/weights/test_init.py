"""convert.weights.init, .names and convert.train.start: a PyTorch twin starts as
``gluon_ssd.get_model(name, pretrained_base=...)`` does, without MXNet.

The oracle is gluon_ssd on MXNet: its freshly initialized networks (tensor by tensor, in distribution: the random
numbers differ) and its backbone loading (bit for bit, after convert.gluon_to_torch).
"""
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
import torch
from mxnet.gluon.model_zoo import vision

import gluon_ssd
from convert import get_torch_model, key_map
from convert.weights.init import Constant, Xavier, init_like_gluon, initializer_for
from convert.weights.mapping import gluon_to_torch, ignored_gluon_keys
from convert.weights.names import load_backbone, vgg_legacy_names, vision_layer_names
from gluon_ssd.model_zoo import build_ssd
from gluon_ssd.params import param_arrays
from tests.helpers import ROOT as HELPERS_ROOT
from tests.helpers import WITHOUT_MXNET

ROOT = str(HELPERS_ROOT)

# One model per architecture kind: VGG 300 and 512, vision ResNet v1 (bottleneck, biased 1x1 convs) and v2
# (pre-activation, fix_gamma input BN), MobileNet (the 'lite' one: 1x1 heads, reduced extras), ResNet34-v1b.
INIT_MODELS = ["ssd_300_vgg16_atrous_voc", "ssd_512_vgg16_atrous_voc", "ssd_512_resnet50_v1_voc",
               "ssd_512_resnet101_v2_voc", "ssd_300_mobilenet1.0_lite_coco", "ssd_300_resnet34_v1b_voc"]
VISION_BACKBONES = sorted({s.backbone.replace("_lite", "") for s in gluon_ssd.model_zoo.MODEL_SPECS.values()}
                          - {"vgg16_atrous", "resnet34_v1b"})


def _moments(a: np.ndarray):
    a = a.astype(np.float64).ravel()
    mean = a.mean()
    centered = a - mean
    var = (centered ** 2).mean()
    kurtosis = (centered ** 4).mean() / var ** 2
    return mean, np.sqrt(var), kurtosis, np.abs(a).max()


def _check_distribution(key, gluon, twin):
    """``twin`` is drawn as ``gluon`` was: same constant, or same mean, std, shape (kurtosis) and range."""
    assert twin.shape == gluon.shape, key
    init, _ = initializer_for(key)
    if isinstance(init, Constant):
        np.testing.assert_array_equal(twin, gluon, err_msg=key)
        return
    assert isinstance(init, Xavier), key
    n = gluon.size
    std = init.std(gluon.shape)
    moments = {"gluon": _moments(gluon), "twin": _moments(twin)}
    for who, (mean, sd, _, _) in moments.items():
        # The rule's own prediction (this checks the rule against MXNet, and the twin against the rule).
        assert abs(mean) <= 5 * std / np.sqrt(n), (key, who, mean, std)
        assert abs(sd / std - 1) <= 5 / np.sqrt(n) + 1e-3, (key, who, sd, std)
    (mg, sg, kg, xg), (mt, st, kt, xt) = moments["gluon"], moments["twin"]
    assert abs(mt - mg) <= 5 * sg * np.sqrt(2 / n), (key, mt, mg)
    assert abs(st / sg - 1) <= 5 / np.sqrt(n) + 1e-3, (key, st, sg)
    if n >= 2000:  # sampling error of the kurtosis ~ sqrt(24/n) each; uniform 1.8 vs gaussian 3
        assert abs(kt - kg) <= 35 / np.sqrt(n), (key, kt, kg)
    if init.rnd_type == "uniform":
        bound = init.scale(gluon.shape)
        assert xt <= bound and xg <= bound * (1 + 1e-6), (key, xt, xg, bound)
    else:
        assert xt > std and xg > std, key  # a gaussian's tail: not a constant or a narrow uniform


@pytest.mark.parametrize("name", INIT_MODELS)
def test_init_matches_gluon_per_parameter(name):
    mx.random.seed(7)
    gluon = param_arrays(gluon_ssd.get_model(name, pretrained_base=False))
    model = get_torch_model(name)
    init_like_gluon(model, torch.Generator().manual_seed(7))
    state = model.state_dict()
    twin = {g: state[t].numpy() for t, g in key_map(model).items()}
    ignored = set(ignored_gluon_keys(model))
    for key, value in gluon.items():
        if key.startswith("anchor_generators."):
            continue  # the twin computes anchors from the formula (convert.weights.mapping checks them)
        if key in ignored:
            np.testing.assert_array_equal(value, 1.0, err_msg=key)  # fix_gamma: stored, unused
            continue
        assert key in twin, key
        _check_distribution(key, value, twin[key])
    assert set(twin) <= set(gluon)
    assert all(int(v) == 0 for k, v in model.state_dict().items() if k.endswith("num_batches_tracked"))


def test_init_is_deterministic_given_the_generator():
    name = "ssd_300_mobilenet0.25_voc"
    states = []
    for seed in (3, 3, 4):
        model = get_torch_model(name)
        init_like_gluon(model, torch.Generator().manual_seed(seed))
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    key = "class_predictors.0.weight"
    assert not torch.equal(states[0][key], states[2][key])


def test_vision_layer_names_are_mxnets():
    """The name table of every vision backbone of the zoo equals MXNet's (structural key -> parameter name)."""
    assert len(VISION_BACKBONES) >= 6  # resnet18/50_v1, resnet101/152_v2, mobilenet1.0/0.25
    for base in VISION_BACKBONES:
        net = vision.get_model(base)
        expected = {}
        for key, param in net._collect_params_with_prefix().items():
            path, _, suffix = key.rpartition(".")
            name = param.name[len(net.prefix):]
            assert name.endswith("_" + suffix)
            expected.setdefault(path + ".", name[: -len(suffix)])
        assert vision_layer_names(base) == expected, base


@pytest.mark.parametrize("name", ["ssd_300_vgg16_atrous_voc", "ssd_512_vgg16_atrous_voc"])
def test_vgg_legacy_names_are_gluon_ssds(name):
    net = build_ssd(name)
    expected = {p.name[len(net.features.prefix):]: k for k, p in net.features._collect_params_with_prefix().items()}
    assert vgg_legacy_names(key_map(get_torch_model(name)).values()) == expected


# ----------------------------------------------------------------------------------------------------
# Backbone files


def _randomize(block, seed):
    """Every parameter of a (classifier) block spread, so that no loaded value equals an initial one."""
    rng = np.random.default_rng(seed)
    for param in block.collect_params().values():
        value = rng.uniform(0.5, 1.5, param.shape) if param.name.endswith("_var") else rng.normal(0, 0.2, param.shape)
        param.set_data(mx.nd.array(value.astype(np.float32)))
    return block


def _classifier(base, seed=0, size=224):
    net = vision.get_model(base)
    net.initialize()
    net(mx.nd.zeros((1, 3, size, size)))
    return _randomize(net, seed)


def _read(path):
    return {k: v.asnumpy() for k, v in mx.nd.load(str(path)).items()}


def _backbone_keys(model, name):
    backbone = gluon_ssd.model_zoo.get_spec(name).backbone
    if backbone == "vgg16_atrous":
        prefixes = ("features.stages.", "features.norm4.", "features.init_scale")
    elif backbone == "resnet34_v1b":
        prefixes = ("features.stage1.", "features.stage2.")
    else:
        prefixes = ("features.resnetv", "features.mobilenet")
    return [t for t, g in key_map(model).items() if g.startswith(prefixes)]


def _assert_loads_like_gluon(name, path, arrays=None, expected=None, gluon_path=None):
    """gluon_ssd.get_model(pretrained_base=file) converted == twin after init_like_gluon + load_backbone, on
    every backbone tensor; the other tensors keep their initial values."""
    net = gluon_ssd.get_model(name, pretrained_base=str(gluon_path or path))
    model = get_torch_model(name)
    reference, _ = gluon_to_torch(model, param_arrays(net), source="gluon")
    init_like_gluon(model, torch.Generator().manual_seed(0))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count = load_backbone(model, _read(path) if arrays is None else arrays, str(path))
    after = model.state_dict()
    backbone = _backbone_keys(model, name) if expected is None else expected
    assert count == len(backbone)
    for key in backbone:
        assert torch.equal(after[key], reference[key]), key
        assert not torch.equal(after[key], before[key]) or key.endswith("init_scale"), key
    for key in set(after) - set(backbone):
        assert torch.equal(after[key], before[key]), key
    return model


def test_load_vision_backbone_structural_and_legacy(tmp_path):
    name = "ssd_300_mobilenet0.25_voc"
    clf = _classifier("mobilenet0.25")
    structural, stripped, full = tmp_path / "s.params", tmp_path / "l.params", tmp_path / "f.params"
    clf.save_parameters(str(structural))
    clf.collect_params().save(str(stripped), strip_prefix=clf.prefix)  # save_params: 'conv0_weight'
    clf.collect_params().save(str(full))  # full names: 'mobilenet<n>_conv0_weight'
    assert "features.0.weight" in _read(structural) and "conv0_weight" in _read(stripped)
    assert all(k.startswith(clf.prefix) for k in _read(full))
    _assert_loads_like_gluon(name, structural)
    _assert_loads_like_gluon(name, stripped)
    # gluon_ssd reads no full names; the twin does, with the values of the same classifier.
    _assert_loads_like_gluon(name, full, gluon_path=stripped)


def test_load_resnet_v1_backbone(tmp_path):
    name = "ssd_512_resnet18_v1_voc"
    path = tmp_path / "resnet18_v1.params"
    _classifier("resnet18_v1", seed=1).save_parameters(str(path))
    _assert_loads_like_gluon(name, path)


def test_load_vgg16_atrous_backbone(gcv, tmp_path):
    """GluonCV's VGG16-atrous extractor (the format of its model store file) and a legacy-named file."""
    from gluoncv.model_zoo.ssd.vgg_atrous import vgg16_atrous_300

    name = "ssd_300_vgg16_atrous_voc"
    extractor = vgg16_atrous_300()
    extractor.initialize()
    extractor(mx.nd.zeros((1, 3, 300, 300)))
    _randomize(extractor, 2)
    path = tmp_path / "vgg16_atrous.params"
    extractor.save_parameters(str(path))
    arrays = _read(path)
    # The store file holds the VGG part: drop the extras (they keep their initialization).
    path = tmp_path / "vgg16_atrous_base.params"
    mx.nd.save(str(path), {k: mx.nd.array(v) for k, v in arrays.items() if not k.startswith("extras.")})
    _assert_loads_like_gluon(name, path)

    net = _randomize(gluon_ssd.get_model(name, pretrained_base=False), 3)
    legacy = tmp_path / "vgg_legacy.params"
    net.features.collect_params().save(str(legacy), strip_prefix=net.features.prefix)
    assert "conv0_weight" in _read(legacy) and "dilated_conv1_weight" in _read(legacy)
    model = get_torch_model(name)
    everything = [t for t, g in key_map(model).items() if g.startswith("features.")]
    _assert_loads_like_gluon(name, legacy, expected=everything)


def test_load_resnet34_v1b_backbone(gcv, tmp_path):
    name = "ssd_300_resnet34_v1b_voc"
    clf = gcv.model_zoo.get_model("resnet34_v1b")
    clf.initialize()
    clf(mx.nd.zeros((1, 3, 224, 224)))
    _randomize(clf, 4)
    path = tmp_path / "resnet34_v1b.params"
    clf.save_parameters(str(path))
    assert "layer1.0.conv1.weight" in _read(path) and "fc.weight" in _read(path)
    _assert_loads_like_gluon(name, path)

    legacy = tmp_path / "resnet34_v1b_legacy.params"
    clf.collect_params().save(str(legacy), strip_prefix=clf.prefix)
    with pytest.raises(ValueError, match="legacy parameter names.*save_parameters"):
        load_backbone(get_torch_model(name), _read(legacy), str(legacy))
    with pytest.raises(ValueError):  # gluon_ssd does not read them either
        gluon_ssd.get_model(name, pretrained_base=str(legacy))


def test_load_backbone_errors(tmp_path):
    path = tmp_path / "mobilenet0.25.params"
    _classifier("mobilenet0.25", seed=5).save_parameters(str(path))
    arrays = _read(path)

    # A classifier of another backbone kind: no key of the file belongs to the SSD.
    model = get_torch_model("ssd_300_resnet34_v1b_voc")
    with pytest.raises(ValueError, match=r"mobilenet0\.25\.params has no parameter of the resnet34_v1b backbone"):
        load_backbone(model, arrays, str(path))
    with pytest.raises(ValueError, match="no parameter"):
        gluon_ssd.get_model("ssd_300_resnet34_v1b_voc", pretrained_base=str(path))
    with pytest.raises(ValueError, match="no parameter"):
        load_backbone(model, {"class_predictors.0.predictor.weight": np.zeros((1, 1, 1, 1), np.float32)}, "x")

    # The same kind at another width: the shapes differ; nothing is loaded.
    model = get_torch_model("ssd_512_mobilenet1.0_voc")
    init_like_gluon(model, torch.Generator().manual_seed(0))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"backbone file .*mobilenet0\.25\.params: features\.\d+\.\w+ has shape"):
        load_backbone(model, arrays, str(path))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="has shape"):
        gluon_ssd.get_model("ssd_512_mobilenet1.0_voc", pretrained_base=str(path))

    bad = dict(arrays, **{"features.3.weight": np.zeros((8, 1, 5, 5), np.float32)})
    message = r"bad\.params: features\.3\.weight has shape \(8, 1, 5, 5\).*needs \(8, 1, 3, 3\)"
    with pytest.raises(ValueError, match=message):
        load_backbone(get_torch_model("ssd_300_mobilenet0.25_voc"), bad, "bad.params")
    with pytest.raises(ValueError, match="no named parameters"):
        load_backbone(model, {}, "empty.params")


def test_without_mxnet(tmp_path):
    """init_like_gluon and load_backbone run where mxnet cannot be imported (the GPU machines)."""
    clf = _classifier("mobilenet0.25", seed=6)
    np.savez(tmp_path / "arrays.npz", **{k: p.data().asnumpy() for k, p in clf._collect_params_with_prefix().items()})
    code = WITHOUT_MXNET + f"""
import numpy as np, torch
from convert import get_torch_model
from convert.weights.init import init_like_gluon
from convert.weights.names import load_backbone
model = get_torch_model("ssd_300_mobilenet0.25_voc")
init_like_gluon(model, torch.Generator().manual_seed(0))
arrays = dict(np.load({str(tmp_path / "arrays.npz")!r}))
print(load_backbone(model, arrays, "arrays.npz"))
assert torch.equal(model.state_dict()["features.units.0.0.weight"], torch.from_numpy(arrays["features.0.weight"]))
assert not [m for m in sys.modules if m == "mxnet" or m.startswith("mxnet.")]
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split()[-1]) == 27 * 5


def test_start_model_transfers_as_the_gluon_trainer(tmp_path):
    """start_model(transfer=FILE) against train_ssd.py's gluon start (gluon_ssd.train.run.build_network, which
    loads the file and calls reset_class with the shared class names): every tensor but the class heads equal,
    and in the class heads the background and the shared classes' outputs; a class the file lacks starts
    fresh (drawn, not copied). Class names carry over from files of 20 or 80 classes (VOC, COCO) only, as in
    gluon_ssd. Same classes as the file: the file's weights, all of them."""
    from convert.train.start import start_model
    from gluon_ssd.classes import VOC_CLASSES
    from gluon_ssd.train.config import TrainConfig
    from gluon_ssd.train.run import build_network

    file_classes = VOC_CLASSES
    source = gluon_ssd.get_model("ssd_300_mobilenet0.25_voc", pretrained_base=False)
    rng = np.random.default_rng(0)
    for key, param in source._collect_params_with_prefix().items():
        if not key.startswith("anchor_generators."):  # (the anchors are the formula's, as in every real file)
            param.set_data(mx.nd.array(rng.normal(0, 1, param.shape).astype(np.float32)))
    path = str(tmp_path / "voc.params")
    source.save_parameters(path)

    name, classes = "ssd_300_mobilenet0.25_custom", ("dog", "zebra", "cat")
    cfg = TrainConfig(network="mobilenet0.25", data_shape=300, dataset="custom", transfer=path, model_name=name)
    net = build_network(cfg, classes, [mx.cpu()])
    twin = get_torch_model(name, classes=classes)
    expected, _ = gluon_to_torch(twin, param_arrays(net), source="gluon")
    model, _ = start_model(name, classes, seed=1, transfer=path)
    got = model.state_dict()
    arrays = param_arrays(source)
    rows = (0, 1, 3)  # background, dog, cat: the same rows as gluon's (the file's); zebra (2) fresh
    for key, value in expected.items():
        if key.endswith("num_batches_tracked"):
            continue
        if key.startswith("class_predictors."):
            index = int(key.split(".")[1])
            anchors = twin.anchor_generators[index].num_anchors
            ours, theirs = (t.reshape(anchors, len(classes) + 1, -1).numpy() for t in (got[key], value))
            for row in rows:
                np.testing.assert_array_equal(ours[:, row], theirs[:, row], err_msg=f"{key} row {row}")
            dog = arrays[f"class_predictors.{index}.predictor.{key.split('.')[-1]}"].reshape(ours.shape[0], 21, -1)
            np.testing.assert_array_equal(ours[:, 1], dog[:, 1 + VOC_CLASSES.index("dog")])
            if key.endswith("weight"):
                assert not np.allclose(ours[:, 2], theirs[:, 2]) and np.abs(ours[:, 2]).max() < 1
        else:
            np.testing.assert_array_equal(got[key].numpy(), value.numpy(), err_msg=key)

    same, _ = start_model(name, file_classes, seed=1, transfer=path)
    table = key_map(same)
    for key, value in same.state_dict().items():
        if key in table:
            np.testing.assert_array_equal(value.numpy(), arrays[table[key]], err_msg=key)
