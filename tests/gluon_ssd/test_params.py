"""How many classes a parameter file holds (gluon_ssd.model_zoo.file_class_count), for both anchor layouts, and
train_ssd.py's --transfer of a file of the 'lite' layout, whose anchors per location the old
``len(ratios) + 1`` formula got wrong."""
import mxnet as mx
import numpy as np
import pytest

from gluon_ssd import get_model
from gluon_ssd.classes import COCO_CLASSES
from gluon_ssd.model_zoo import file_class_count
from gluon_ssd.params import read_param_file
from gluon_ssd.train.config import TrainConfig
from gluon_ssd.train.run import build_network, resolve_model_name

LITE = "ssd_300_mobilenet1.0_lite_coco"
HEAD = "class_predictors.0.predictor.weight"


def _save(tmp_path_factory, name, model, **kwargs):
    path = str(tmp_path_factory.mktemp("params") / f"{name}.params")
    get_model(model, pretrained=False, pretrained_base=False, **kwargs).save_parameters(path)
    return path


@pytest.fixture(scope="module")
def lite_coco(tmp_path_factory):
    return _save(tmp_path_factory, "lite_coco", LITE)


@pytest.fixture(scope="module")
def lite_three(tmp_path_factory):
    return _save(tmp_path_factory, "lite_three", LITE, classes=("cat", "dog", "kite"))


def test_lite_file_class_count(lite_coco, lite_three):
    # The lite layout's layer 0 has 3 anchors per location (a half-size square and the two oblongs of
    # ratios 2 and 1/2, no second square): (80 + 1) * 3 = 243 head channels, (3 + 1) * 3 = 12. The
    # 'len(ratios) + 1 = 4' formula read 243 // 4 - 1 = 59 classes.
    assert read_param_file(lite_coco)[HEAD].shape[0] == 243
    assert file_class_count(lite_coco, LITE) == 80
    assert read_param_file(lite_three)[HEAD].shape[0] == 12
    assert file_class_count(lite_three, LITE) == 3
    assert file_class_count(lite_three, LITE, classes=("a",)) == 3  # the classes given do not matter


def test_ssd_layout_and_other_architectures(tmp_path_factory, lite_coco):
    voc = _save(tmp_path_factory, "m025_voc", "ssd_300_mobilenet0.25_voc")
    # 'ssd' layout, layer 0 ratios (1, 2, 0.5): 4 anchors, (20 + 1) * 4 = 84 channels
    assert read_param_file(voc)[HEAD].shape[0] == 84
    assert file_class_count(voc, "ssd_300_mobilenet0.25_voc") == 20
    assert file_class_count(voc, "ssd_300_mobilenet0.25_custom") == 20  # custom row: no classes needed
    # a file of another architecture: None (loading it would fail on its other layers)
    assert file_class_count(voc, LITE) is None
    assert file_class_count(lite_coco, "ssd_300_mobilenet0.25_voc") is None
    with pytest.raises(FileNotFoundError):
        file_class_count(str(tmp_path_factory.getbasetemp() / "missing.params"), LITE)


def _transfer(path, dataset, classes):
    cfg = TrainConfig(network="mobilenet1.0_lite", data_shape=300, dataset=dataset, transfer=path,
                      pretrained_base="False")
    cfg.model_name = resolve_model_name(cfg.network, cfg.data_shape, cfg.dataset)
    assert cfg.model_name == LITE
    return build_network(cfg, classes, [mx.cpu()])


def test_train_transfers_a_lite_coco_file_to_new_classes(lite_coco):
    classes = ("dog", "person", "unicorn")
    net = _transfer(lite_coco, "custom", classes)
    assert net.classes == classes
    # Head channels are anchor-major: anchor a, class j (0 = background) is channel a * (C + 1) + j. The
    # classes that COCO has keep the file's weights; background too.
    src = read_param_file(lite_coco)[HEAD].asnumpy()
    dst = net.class_predictors[0].predictor.weight.data().asnumpy()
    assert dst.shape[0] == 3 * 4
    for a in range(3):
        np.testing.assert_array_equal(dst[a * 4 + 0], src[a * 81 + 0])
        np.testing.assert_array_equal(dst[a * 4 + 1], src[a * 81 + 1 + COCO_CLASSES.index("dog")])
        np.testing.assert_array_equal(dst[a * 4 + 2], src[a * 81 + 1 + COCO_CLASSES.index("person")])


def test_train_transfers_a_lite_file_of_custom_classes(lite_three, lite_coco):
    net = _transfer(lite_three, "custom", ("a", "b"))
    assert net.classes == ("a", "b")
    src = read_param_file(lite_three)[HEAD].asnumpy()
    dst = net.class_predictors[0].predictor.weight.data().asnumpy()
    for a in range(3):  # background kept
        np.testing.assert_array_equal(dst[a * 3], src[a * 4])
    # a COCO run from the 80-class lite file: every weight is the file's
    net = _transfer(lite_coco, "coco", COCO_CLASSES)
    np.testing.assert_array_equal(net.class_predictors[0].predictor.weight.data().asnumpy(),
                                  read_param_file(lite_coco)[HEAD].asnumpy())
