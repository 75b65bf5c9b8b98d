"""The SSD steps of GluonCV's tutorials, run once with gluoncv and once with gluon_ssd in its place.

Each test is one tutorial written as a function of the library (``lib`` is the gluoncv module or gluon_ssd, used
at the same dotted paths the tutorials use): the steps of docs/tutorials/detection/demo_ssd.py, train_ssd_voc.py,
finetune_detection.py, docs/tutorials/datasets/detection_custom.py and deployment/export_network.py, on the real
data of ../shared/data instead of downloads, with seeded weights written once by gluoncv instead of the published
ones. What the steps produce is collected and compared between the two runs: arrays equal (or within float32
rounding where a step computes), shapes and types where the step is random (augmentation draws differ by design:
README, "Differences from GluonCV").
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from tests.helpers import DATA

pytestmark = pytest.mark.mxnet

VOC_ROOT = str(DATA / "voc_sample" / "VOCdevkit")
PHOTO = str(DATA / "voc_sample/VOCdevkit/VOC2007/JPEGImages/000001.jpg")


def _libraries(gcv):
    import gluon_ssd

    return {"gluoncv": gcv, "gluon_ssd": gluon_ssd}


def _seeded_file(gcv, tmp_path, name, probe_size=512):
    """gluoncv's ``name`` with seeded random weights, saved by gluoncv's save_parameters."""
    import mxnet as mx

    from tests.helpers import build_reference, randomize

    path = tmp_path / f"{name}.params"
    if not path.exists():
        net = build_reference(gcv, name)
        x = gcv.data.transforms.presets.ssd.load_test(PHOTO, short=probe_size)[0]
        randomize(net, seed=3, probe=mx.nd.array(x.asnumpy()))
        net.save_parameters(str(path))
    return str(path)


def _as_numpy(x):
    return x.asnumpy() if hasattr(x, "asnumpy") else np.asarray(x)


def _same(a: dict, b: dict, rtol=0.0, atol=0.0):
    assert a.keys() == b.keys(), (sorted(a), sorted(b))
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, (str, int, tuple, list)) and not isinstance(x, np.ndarray):
            assert x == y, (key, x, y)
        else:
            np.testing.assert_allclose(_as_numpy(x), _as_numpy(y), rtol=rtol, atol=atol, err_msg=key)


# ----------------------------------------------------------------------------------------- demo_ssd.py
def _demo_tutorial(lib, params):
    """get_model -> load_test -> net(x) -> viz.plot_bbox (the tutorial loads the published weights; here a file)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    net = lib.model_zoo.get_model("ssd_512_mobilenet1.0_voc", pretrained=False, pretrained_base=False)
    net.load_parameters(params)
    x, img = lib.data.transforms.presets.ssd.load_test(PHOTO, short=512)
    class_ids, scores, boxes = net(x)
    ax = lib.utils.viz.plot_bbox(img, boxes[0], scores[0], class_ids[0], class_names=net.classes)
    shown = sorted((round(p.get_x(), 3), round(p.get_y(), 3), round(p.get_width(), 3)) for p in ax.patches)
    plt.close("all")
    return {"x": x, "img": img, "ids": class_ids, "scores": scores, "boxes": boxes, "classes": tuple(net.classes),
            "rectangles": shown, "texts": sorted(t.get_text() for t in ax.texts)}


def test_demo_tutorial(gcv, tmp_path):
    params = _seeded_file(gcv, tmp_path, "ssd_512_mobilenet1.0_voc")
    theirs, ours = (_demo_tutorial(lib, params) for lib in _libraries(gcv).values())
    assert len(ours["rectangles"]) > 3  # the seeded network draws boxes above plot_bbox's 0.5
    for key in ("x", "img", "ids"):
        np.testing.assert_array_equal(_as_numpy(ours[key]), _as_numpy(theirs[key]), err_msg=key)
    np.testing.assert_allclose(ours["scores"].asnumpy(), theirs["scores"].asnumpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours["boxes"].asnumpy(), theirs["boxes"].asnumpy(), rtol=0, atol=1e-3)
    assert ours["classes"] == theirs["classes"] and ours["texts"] == theirs["texts"]
    assert ours["rectangles"] == theirs["rectangles"]


# ------------------------------------------------------------------------------------ train_ssd_voc.py
def _train_ssd_voc_tutorial(lib, params):
    import mxnet as mx
    from mxnet import autograd, nd
    from mxnet.gluon.data import DataLoader

    found = {}
    dataset = lib.data.VOCDetection(root=VOC_ROOT, splits=[(2007, "test")])
    image, label = dataset[0]
    found.update(n=len(dataset), label=label, classes=tuple(dataset.classes))
    presets = lib.data.transforms.presets
    train_transform = presets.ssd.SSDDefaultTrainTransform(512, 512)
    val_transform = presets.ssd.SSDDefaultValTransform(512, 512)
    lib.utils.random.seed(233)
    train_image2, train_label2 = train_transform(image, label)
    # the tutorial's de-normalization, on NDArrays
    shown = train_image2.transpose((1, 2, 0)) * nd.array((0.229, 0.224, 0.225)) + nd.array((0.485, 0.456, 0.406))
    found["train_shown"] = ((shown * 255).clip(0, 255).shape, type(shown).__name__, train_label2.shape[1])
    val_image2, val_label2 = val_transform(image, label)
    val_shown = val_image2.transpose((1, 2, 0)) * nd.array((0.229, 0.224, 0.225)) + nd.array((0.485, 0.456, 0.406))
    found.update(val_image=val_image2, val_label=val_label2, val_shown=(val_shown * 255).clip(0, 255))

    batchify = lib.data.batchify
    loader = DataLoader(dataset.transform(val_transform), 2, shuffle=False,
                        batchify_fn=batchify.Tuple(batchify.Stack(), batchify.Pad(pad_val=-1)), last_batch="keep")
    data, labels = next(iter(loader))
    found.update(batch_data=data, batch_labels=labels)

    net = lib.model_zoo.get_model("ssd_300_vgg16_atrous_voc", pretrained_base=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net.initialize()
    found["init_warnings"] = len(caught)
    net.load_parameters(params)  # the same weights in both runs (the tutorial keeps its random ones)
    x = mx.nd.zeros((1, 3, 512, 512))
    found["detections"] = [a.asnumpy() for a in net(x)]
    with autograd.train_mode():
        cls_preds, box_preds, anchors = net(x)
    found["anchors"] = anchors

    # Targets in the training transform (given anchors), then the loss (with the same targets in both runs: the
    # augmentation draws differ by design, so this run's targets are passed on to compare the losses).
    target_transform = presets.ssd.SSDDefaultTrainTransform(512, 512, anchors)
    timg, cls_t, box_t = target_transform(image, label)
    found["target_shapes"] = (timg.shape, cls_t.shape, box_t.shape)
    mbox_loss = lib.loss.SSDMultiBoxLoss()
    with autograd.record():
        preds = net(val_image2.expand_dims(0))
    return found, mbox_loss, preds


def test_train_ssd_voc_tutorial(gcv, tmp_path):
    from mxnet import nd

    params = _seeded_file(gcv, tmp_path, "ssd_300_vgg16_atrous_voc", 300)
    runs = {name: _train_ssd_voc_tutorial(lib, params) for name, lib in _libraries(gcv).items()}
    (theirs, their_loss, their_preds), (ours, our_loss, our_preds) = runs["gluoncv"], runs["gluon_ssd"]
    assert ours.pop("init_warnings") == 0  # GluonCV's prints one per initialized parameter here
    theirs.pop("init_warnings")
    assert ours["train_shown"][1] == "NDArray" and ours["train_shown"] == theirs["train_shown"]
    assert ours["target_shapes"] == theirs["target_shapes"] == ((3, 512, 512), (24656,), (24656, 4))  # 300's at 512
    for key in ("train_shown", "target_shapes"):
        ours.pop(key), theirs.pop(key)
    detections = ours.pop("detections"), theirs.pop("detections")
    _same(ours, theirs)
    for a, b in zip(*detections):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)

    # The loss of the tutorial's step on the same predictions and targets (gluoncv's generator's, on the val image).
    import importlib

    # (gluoncv.model_zoo.ssd as an attribute is its smot module, which shadows the SSD package: gluoncv #1634)
    generator = importlib.import_module("gluoncv.model_zoo.ssd.target").SSDTargetGenerator(negative_mining_ratio=-1)
    cls_t, box_t, _ = generator(their_preds[2], their_preds[0], nd.array(ours["val_label"][None, :, :4]),
                                nd.array(ours["val_label"][None, :, 4:5]))
    values = [[v.asnumpy() for group in loss(preds[0], preds[1], cls_t, box_t) for v in group]
              for loss, preds in ((their_loss, their_preds), (our_loss, our_preds))]
    np.testing.assert_allclose(values[1], values[0], rtol=1e-5)


# -------------------------------------------------------------------------------- detection_custom.py
def _write_tutorial_lst(gcv, lst, place):
    """The voc_sample's VOC2007 objects as the custom-data tutorial's .lst lines (index, header 4 5 width height,
    then per object the class id and its corners normalized by the image size, then the image path that
    ``place(index, path)`` returns), read by gluoncv's VOCDetection."""
    dataset = gcv.data.VOCDetection(root=VOC_ROOT, splits=((2007, "test"),))
    lines = []
    for i in range(len(dataset)):
        image, label = dataset[i]
        h, w = image.shape[:2]
        rows = np.hstack((label[:, 4:5], label[:, :4])).astype(float)
        rows[:, (1, 3)] /= float(w)
        rows[:, (2, 4)] /= float(h)
        path = place(i, os.path.join(VOC_ROOT, "VOC2007", "JPEGImages", dataset._items[i][1] + ".jpg"))
        lines.append("\t".join([str(i), "4", "5", str(w), str(h)] + [str(v) for v in rows.ravel()] + [path]) + "\n")
    lst.write_text("".join(lines))


def _custom_tutorial(lib, lst):
    class VOCLike(lib.data.VOCDetection):
        CLASSES = ["person", "car"]

        def __init__(self, root, splits, transform=None, index_map=None, preload_label=True):
            super().__init__(root, splits, transform, index_map, preload_label)

    dataset = VOCLike(root=VOC_ROOT, splits=((2007, "test"),))
    lst_dataset = lib.data.LstDetection(lst, root=os.path.dirname(lst))
    return {"n": len(dataset), "classes": tuple(dataset.classes),
            "labels": [dataset[i][1] for i in range(len(dataset))],
            "lst_n": len(lst_dataset), "lst_image": lst_dataset[0][0], "lst_label": lst_dataset[0][1]}


def test_detection_custom_tutorial(gcv, tmp_path):
    import shutil

    images = tmp_path / "images"
    images.mkdir()
    lst = tmp_path / "val.lst"

    def copied(i, path):
        shutil.copy(path, images / f"{i:06d}.jpg")
        return f"images/{i:06d}.jpg"

    _write_tutorial_lst(gcv, lst, copied)
    theirs, ours = (_custom_tutorial(lib, str(lst)) for lib in _libraries(gcv).values())
    assert ours["classes"] == ("person", "car")
    labels = [label.reshape(-1, 6) for label in ours.pop("labels")]
    their_labels = [np.asarray(label).reshape(-1, 6) for label in theirs.pop("labels")]
    assert sorted(set(np.concatenate(labels)[:, 4])) == [0, 1]  # person 0, car 1: not VOC's ids 14 and 6
    for a, b in zip(labels, their_labels, strict=True):
        np.testing.assert_array_equal(a, b)
    _same(ours, theirs)


# ------------------------------------------------------------------------------ finetune_detection.py
def _finetune_tutorial(lib, params, lst, tmp_path, name):
    import mxnet as mx
    from mxnet import autograd, gluon

    classes = ["person"]
    dataset = lib.data.LstDetection(lst, root=os.path.dirname(lst))
    net = lib.model_zoo.get_model("ssd_512_mobilenet1.0_voc", pretrained=False, pretrained_base=False)
    net.load_parameters(params)
    net.reset_class(classes, reuse_weights=classes)  # reuse: the same head in both runs
    with autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, 256, 256)))
    batchify = lib.data.batchify
    loader = gluon.data.DataLoader(
        dataset.transform(lib.data.transforms.presets.ssd.SSDDefaultTrainTransform(256, 256, anchors)), 2, True,
        batchify_fn=batchify.Tuple(batchify.Stack(), batchify.Stack(), batchify.Stack()), last_batch="rollover")
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.001, "wd": 0.0005, "momentum": 0.9})
    mbox_loss = lib.loss.SSDMultiBoxLoss()
    ce_metric = mx.metric.Loss("CrossEntropy")
    net.hybridize(static_alloc=True, static_shape=True)
    batch = next(iter(loader))
    ctx = [mx.cpu()]
    data, cls_targets, box_targets = (gluon.utils.split_and_load(b, ctx_list=ctx, batch_axis=0) for b in batch)
    with autograd.record():
        cls_preds, box_preds = zip(*[net(x)[:2] for x in data])
        sum_loss, cls_loss, box_loss = mbox_loss(list(cls_preds), list(box_preds), cls_targets, box_targets)
        autograd.backward(sum_loss)
    trainer.step(1)
    ce_metric.update(0, [loss * batch[0].shape[0] for loss in cls_loss])
    saved = str(tmp_path / f"{name}_pikachu.params")
    net.save_parameters(saved)
    again = lib.model_zoo.get_model("ssd_512_mobilenet1.0_custom", classes=classes, pretrained_base=False)
    again.load_parameters(saved)
    x, image = lib.data.transforms.presets.ssd.load_test(PHOTO, 512)
    ids, scores, boxes = again(x)
    return {"classes": tuple(again.classes), "loss_finite": bool(np.isfinite(ce_metric.get()[1])),
            "shapes": (ids.shape, scores.shape, boxes.shape), "keys": sorted(again._collect_params_with_prefix())}


def test_finetune_tutorial(gcv, tmp_path):
    params = _seeded_file(gcv, tmp_path, "ssd_512_mobilenet1.0_voc")
    lst = tmp_path / "train.lst"
    _write_tutorial_lst(gcv, lst, lambda i, path: path)
    runs = [_finetune_tutorial(lib, params, str(lst), tmp_path, name) for name, lib in _libraries(gcv).items()]
    assert runs[1]["loss_finite"] and runs[1]["classes"] == ("person",)
    assert runs[0] == runs[1]  # the same file layout: each library's file loads into the other's network too


# -------------------------------------------------------------------------------- export_network.py
def test_export_network_tutorial(gcv, tmp_path):
    """export_block(name, net, preprocess=True, layout='HWC'): GluonCV's files, loadable with SymbolBlock.imports,
    taking raw HWC pixels; the graph of each library gives the same outputs as the other's on the same photo."""
    import mxnet as mx

    params = _seeded_file(gcv, tmp_path, "ssd_512_mobilenet1.0_voc")
    x, img = gcv.data.transforms.presets.ssd.load_test(PHOTO, short=512)
    pixels = mx.nd.array(img[None].astype(np.float32))
    outputs = []
    for name, lib in _libraries(gcv).items():
        net = lib.model_zoo.get_model("ssd_512_mobilenet1.0_voc", pretrained=False, pretrained_base=False)
        net.load_parameters(params)
        prefix = str(tmp_path / name / "ssd_512_mobilenet1.0_voc")
        os.makedirs(os.path.dirname(prefix), exist_ok=True)
        lib.utils.export_block(prefix, net, preprocess=True, layout="HWC")
        assert os.path.isfile(prefix + "-symbol.json") and os.path.isfile(prefix + "-0000.params")
        graph = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"], prefix + "-0000.params")
        outputs.append([o.asnumpy() for o in graph(pixels)])
        if name == "gluon_ssd":
            direct = [o.asnumpy() for o in net(x)]
    for theirs, ours in zip(*outputs):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(outputs[1][0], direct[0])  # the pixel graph detects what the network does
    np.testing.assert_allclose(outputs[1][1], direct[1], rtol=0, atol=1e-5)
