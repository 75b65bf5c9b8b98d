"""Every zoo model: seeded random gluon_ssd weights -> converted PyTorch twin -> same outputs on real photos.

The reference is gluon_ssd (bit-identical to GluonCV, see test_model_zoo.py); tolerances are explained
in convert/runtime/verify.py. One forward per framework per model: the first variant of each architecture
runs at its base size on a batch of two photos (one for the three most expensive); the other variants
(other datasets and class lists: other heads and anchor sizes on the same backbone) one photo at a
smaller size. Training mode (BatchNorm on batch statistics) is compared in float64 for every
BatchNorm arrangement, on two photos at a small size.
"""
import numpy as np
import pytest
import torch

import gluon_ssd
from convert.runtime.verify import (
    compare_detections,
    compare_outputs,
    format_table,
    gluon_reference,
    photo_batch,
    torch_outputs,
)
from convert.weights.mapping import FORMAT, convert_gluon_file, load_torch_model, save_torch_model, write_gluon_file
from tests.helpers import CUSTOM_CLASSES, randomize, save_legacy, smallest_size

MODELS = gluon_ssd.list_models(int8=False)  # the float32 models: the twin has no int8 graph


def _architecture(name):
    return name.rsplit("_", 1)[0]


FIRST_OF_ARCH = {n for i, n in enumerate(MODELS) if _architecture(n) not in {_architecture(m) for m in MODELS[:i]}}
# The most expensive backbones run one photo even as first variants (batching is tested on the others).
ONE_PHOTO = {"ssd_512_vgg16_atrous_voc", "ssd_512_resnet101_v2_voc", "ssd_512_resnet152_v2_voc"}


def _classes(name):
    return list(CUSTOM_CLASSES) if name.endswith("_custom") else None


def _random_gluon(name, photos, seed):
    """gluon_ssd model with spread seeded weights; the heads are scaled on one small photo (cheap)."""
    net = gluon_ssd.get_model(name, pretrained_base=False, classes=_classes(name))
    size = smallest_size(name)
    return randomize(net, seed=seed, probe=photo_batch(photos[:1], size, size))


def _assert_parity(checks, what, max_swaps):
    table = format_table(checks, what)
    assert all(c.passed for c in checks), table
    swaps = int(next(c for c in checks if c.name == "ids/order").note.split(", ")[1].split()[0])
    assert swaps <= max_swaps, table


@pytest.fixture(scope="module")
def photos(photo_paths):
    return photo_paths


@pytest.mark.parametrize("name", MODELS)
def test_converted_twin_matches_gluon(name, photos, tmp_path):
    first = name in FIRST_OF_ARCH
    spec = gluon_ssd.model_zoo.get_spec(name)
    size = spec.base_size if first else min(spec.base_size, smallest_size(name) if "vgg" in name else 384)
    x = photo_batch(photos if first and name not in ONE_PHOTO else photos[1:], size, size)
    net = _random_gluon(name, photos, seed=MODELS.index(name))
    path = tmp_path / "gluon.params"
    # Both GluonCV key formats: structural (save_parameters) and legacy (train_ssd.py's save_params).
    (net.save_parameters if MODELS.index(name) % 2 == 0 else lambda p: save_legacy(net, p))(str(path))
    model, ignored = convert_gluon_file(name, path, classes=_classes(name))
    ref = gluon_reference(net, x, train=False)
    ours = torch_outputs(model, torch.from_numpy(x.asnumpy()), train=False)
    assert (ref["detections"][0] >= 0).sum() >= 50 * x.shape[0], "the reference detects too little to test order"
    # Scores of different candidates closer than the two frameworks' float32 agreement may swap places
    # (a swapped pair counts two rows).
    _assert_parity(compare_outputs(ours, ref), f"{name} on {x.shape[0]} photo(s)", max_swaps=4 * x.shape[0])
    # Post-processing alone, on gluon's raw outputs: gluon's detections, to the last bits of MXNet's
    # oneDNN softmax (scores closer than 1e-6 could swap; none should).
    post = [t.numpy() for t in model.postprocess(*(torch.from_numpy(ref[k]) for k in ("cls_preds", "box_preds",
                                                                                       "anchors")))]
    _assert_parity(compare_detections(post, ref["detections"], size, score_tol=1e-6, box_tol=1e-6),
                   f"{name}: post-processing of gluon's raw outputs", max_swaps=2 * x.shape[0])
    # The gammas MXNet ignores (fix_gamma BatchNorms) are kept aside for an exact reverse conversion.
    assert all(k.endswith("gamma") for k in ignored)


# Every BatchNorm arrangement: ResNet v1 basic and bottleneck blocks, v2 pre-activation blocks with an
# internal tap and the fix_gamma input BatchNorm, MobileNet, the fix_gamma extra layers (full and lite).
# (VGG has no BatchNorm; ResNet34-v1b's and ResNet152-v2's blocks are the ones tested here.)
TRAIN_MODELS = ["ssd_512_resnet18_v1_voc", "ssd_512_resnet50_v1_voc", "ssd_512_resnet101_v2_voc",
                "ssd_512_mobilenet1.0_voc", "ssd_300_mobilenet1.0_lite_coco", "ssd_300_mobilenet0.25_voc"]


@pytest.mark.parametrize("name", TRAIN_MODELS)
def test_training_mode_matches_gluon(name, photos, tmp_path):
    """train() outputs (cls_preds, box_preds, anchors) with BatchNorm on batch statistics, float64."""
    size = 128 if gluon_ssd.model_zoo.get_spec(name).base_size == 512 else 160  # every layer keeps a cell
    x = photo_batch(photos, size, size)
    net = _random_gluon(name, photos, seed=5)
    path = tmp_path / "gluon.params"
    net.save_parameters(str(path))
    model, _ = convert_gluon_file(name, path, classes=_classes(name))
    ref = gluon_reference(net, x, train=True)
    ours = torch_outputs(model, torch.from_numpy(x.asnumpy()), train=True)
    checks = [c for c in compare_outputs(ours, ref) if c.name.startswith("train_")]
    assert len(checks) == 3 and all(c.passed for c in checks), format_table(checks, f"{name} training mode")
    assert not model.training, "torch_outputs must not leave the model in training mode"


@pytest.mark.parametrize("name", ["ssd_300_mobilenet0.25_voc", "ssd_512_resnet18_v1_voc"])
def test_any_input_size(name, photos, tmp_path):
    """Anchors come from the formula: a non-square size past GluonCV's anchor grid (about 1024 px for the
    300 models, 2048 px for the 512 ones) works too. gluon_ssd also computes its anchors in the graph."""
    height, width = (300, 1100) if "300" in name else (352, 2080)
    x = photo_batch(photos[:1], width, height)
    net = _random_gluon(name, photos, seed=3)
    path = tmp_path / "gluon.params"
    net.save_parameters(str(path))
    model, _ = convert_gluon_file(name, path)
    ours = torch_outputs(model, torch.from_numpy(x.asnumpy()), train=False)
    ref = gluon_reference(net, x, train=False)
    _assert_parity(compare_outputs(ours, ref), f"{name} at {height}x{width}", max_swaps=4)


@pytest.mark.parametrize("name", ["ssd_300_vgg16_atrous_voc", "ssd_512_resnet101_v2_voc",
                                  "ssd_300_mobilenet1.0_lite_coco", "ssd_300_resnet34_v1b_custom"])
def test_round_trip_is_bit_identical(name, tmp_path):
    """gluon file -> .pth -> gluon file gives back every array bit for bit (anchors and the ignored
    fix_gamma gammas included), and .pth -> gluon -> .pth gives back the same state dict."""
    import mxnet as mx

    net = gluon_ssd.get_model(name, pretrained_base=False, classes=_classes(name))
    randomize(net, seed=11)
    original = tmp_path / "original.params"
    net.save_parameters(str(original))
    model, ignored = convert_gluon_file(name, original, classes=_classes(name))
    pth = save_torch_model(model, tmp_path / "model.pth", ignored, source=str(original))
    loaded = load_torch_model(pth)
    assert loaded.name == name and loaded.classes == model.classes
    payload = torch.load(pth, weights_only=True)
    assert payload["format"] == FORMAT
    back = write_gluon_file(loaded, payload["state_dict"], tmp_path / "back.params", payload["mxnet_ignored"])
    a, b = mx.nd.load(str(original)), mx.nd.load(back)
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(b[key].asnumpy(), a[key].asnumpy(), err_msg=key)
    # The rebuilt gluon file loads into gluon_ssd and converts back to the same torch tensors.
    again, _ = convert_gluon_file(name, back, classes=_classes(name))
    rebuilt = again.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(rebuilt[key], value), key
    # Without the stored gammas the reverse file sets them to 1, which MXNet ignores anyway.
    ones = write_gluon_file(loaded, payload["state_dict"], tmp_path / "ones.params")
    for key, value in mx.nd.load(ones).items():
        if key in ignored:
            assert np.all(value.asnumpy() == 1.0)
        else:
            np.testing.assert_array_equal(value.asnumpy(), a[key].asnumpy(), err_msg=key)
