"""gluon_ssd networks against gluoncv's on GluonCV-written parameter files (both key formats)."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

import gluon_ssd
from tests.helpers import CUSTOM_CLASSES, build_reference, photo_batch, randomize, save_legacy, smallest_size

# Every SSD that gluoncv 0.10.5 registers (int8 variants are quantized symbol files, not networks).
GLUONCV_SSD = [
    "ssd_300_vgg16_atrous_voc", "ssd_300_vgg16_atrous_coco", "ssd_300_vgg16_atrous_custom",
    "ssd_512_vgg16_atrous_voc", "ssd_512_vgg16_atrous_coco", "ssd_512_vgg16_atrous_custom",
    "ssd_512_resnet18_v1_voc", "ssd_512_resnet18_v1_coco",
    "ssd_512_resnet50_v1_voc", "ssd_512_resnet50_v1_coco", "ssd_512_resnet50_v1_custom",
    "ssd_512_resnet101_v2_voc", "ssd_512_resnet152_v2_voc",
    "ssd_512_mobilenet1.0_voc", "ssd_512_mobilenet1.0_coco", "ssd_512_mobilenet1.0_custom",
    "ssd_300_mobilenet1.0_lite_coco",
    "ssd_300_mobilenet0.25_voc", "ssd_300_mobilenet0.25_coco", "ssd_300_mobilenet0.25_custom",
    "ssd_300_resnet34_v1b_voc", "ssd_300_resnet34_v1b_coco", "ssd_300_resnet34_v1b_custom",
]
TOL = 1e-5


def _kwargs(name):
    return {"classes": CUSTOM_CLASSES} if name.endswith("_custom") else {}


def _assert_detections_equal(ref_out, our_out, what):
    ids_r, scores_r, boxes_r = (o.asnumpy() for o in ref_out)
    ids_o, scores_o, boxes_o = (o.asnumpy() for o in our_out)
    assert (ids_r >= 0).sum() > 0, f"{what}: the reference detected nothing; the test would prove nothing"
    np.testing.assert_array_equal(ids_o, ids_r, err_msg=f"{what}: class ids differ")
    np.testing.assert_allclose(scores_o, scores_r, rtol=0, atol=TOL, err_msg=f"{what}: scores")
    np.testing.assert_allclose(boxes_o, boxes_r, rtol=TOL, atol=TOL, err_msg=f"{what}: boxes")


def test_list_models_has_every_gluoncv_ssd(gcv):
    theirs = {n for n in gcv.model_zoo.get_model_list() if n.startswith("ssd_") and not n.endswith("_int8")}
    assert theirs == set(GLUONCV_SSD)
    assert set(GLUONCV_SSD) <= set(gluon_ssd.list_models())


@pytest.fixture(scope="module")
def photos(photo_paths):
    return photo_paths


# The most expensive backbones run one photo on their VOC row too (batches of two are tested on the others).
ONE_PHOTO = {"ssd_512_vgg16_atrous_voc", "ssd_512_resnet101_v2_voc", "ssd_512_resnet152_v2_voc"}


def _is_full_row(name):
    """The VOC row of an architecture (or a row without one) runs every check on both photos. Its COCO and custom
    rows differ from it only in the class heads and anchor sizes: they run the outputs checks on the first photo
    at the smallest size every prediction layer takes (the anchor sizes are the spec's pixels at any input size),
    not the second input size and the file-format checks (parameter names are the architecture's, tested on its
    VOC row)."""
    voc = name.rsplit("_", 1)[0] + "_voc"
    return name == voc or voc not in GLUONCV_SSD


@pytest.mark.parametrize("name", GLUONCV_SSD)
def test_parity_with_gluoncv(gcv, photos, tmp_path, name):
    full = _is_full_row(name)
    size = int(name.split("_")[1]) if full else smallest_size(name)
    photos = photos if full and name not in ONE_PHOTO else photos[:1]
    x = photo_batch(gcv, photos, size, size)
    ref = randomize(build_reference(gcv, name), seed=7, probe=x)
    structural, legacy = tmp_path / "structural.params", tmp_path / "legacy.params"
    ref.save_parameters(str(structural))
    ref_det = ref(x)

    ours = gluon_ssd.get_model(name, pretrained=str(structural), **_kwargs(name))
    with autograd.train_mode():
        ref_train, our_train = ref(x), ours(x)
    for r, o, what in zip(ref_train, our_train, ("cls_preds", "box_preds", "anchors")):
        assert r.shape == o.shape, what
        np.testing.assert_allclose(o.asnumpy(), r.asnumpy(), rtol=TOL, atol=TOL, err_msg=what)
    our_det = ours(x)
    _assert_detections_equal(ref_det, our_det, f"{name} at {size}")
    if not full:
        return
    # A second, non-square input size; the photos are preprocessed by gluoncv's own transform.
    other_hw = (size - 32, size + 32) if size == 300 else (320, 416)
    x_other = photo_batch(gcv, photos, other_hw[1], other_hw[0])
    ours.hybridize()
    _assert_detections_equal(ref(x_other), ours(x_other), f"{name} hybridized at {other_hw}")

    # The same network with the same values computes the same outputs: the other two loading paths are
    # checked value for value, without running the network again.
    save_legacy(ref, legacy)
    assert "." not in next(iter(mx.nd.load(str(legacy))))
    ours_legacy = gluon_ssd.get_model(name, pretrained=str(legacy), **_kwargs(name))
    _assert_same_values(ours, ours_legacy, f"{name} from a legacy-key file")

    # Round trip: our file loads into gluoncv with every value of the reference.
    ours_file = tmp_path / "ours.params"
    ours.save_parameters(str(ours_file))
    back = build_reference(gcv, name)
    back.load_parameters(str(ours_file))
    _assert_same_values(ref, back, f"{name}: our file in gluoncv")


def _assert_same_values(expected, actual, what):
    exp, act = expected._collect_params_with_prefix(), actual._collect_params_with_prefix()
    assert exp.keys() == act.keys(), what
    for key, param in exp.items():
        np.testing.assert_array_equal(act[key].data().asnumpy(), param.data().asnumpy(), err_msg=f"{what}: {key}")
