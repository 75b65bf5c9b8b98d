"""GluonCV's data API at GluonCV's dotted paths: a script whose imports say ``gluon_ssd`` where they said ``gluoncv``
runs and gives GluonCV's values. The calls are the ones GluonCV's tutorials make (custom VOC-like data with its
own ``CLASSES``, the SSD presets, the batchify functions, .rec / .lst files).

References: gluoncv itself, live (the tests marked ``mxnet``); where no MXNet is needed, the annotation files read
here with xml.etree / json and hand-worked batches (those tests run on the PyTorch stack too).
"""
import importlib
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from gluon_ssd._mxnet import HAVE_MXNET, MXNetMissing, as_numpy
from gluon_ssd.data import (
    COCODetection,
    LstDetection,
    RecordFileDetection,
    VOCDetection,
    batchify,
    open_dataset,
    read_image,
    transforms,
)
from gluon_ssd.data.transforms.presets import ssd as presets_ssd
from tests.helpers import DATA

VOC_ROOT = DATA / "voc_sample" / "VOCdevkit"
VOC_SPLITS = ((2007, "test"), (2012, "test"))
TINYCOCO = DATA / "coco_sample" / "tinycoco"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class VOCLike(VOCDetection):
    """GluonCV's custom-data tutorial, word for word but for the import."""

    CLASSES = ["person", "dog"]

    def __init__(self, root, splits, transform=None, index_map=None, preload_label=True):
        super().__init__(root, splits, transform, index_map, preload_label)


class DogsByProperty(VOCDetection):
    """Classes declared through the ``classes`` property, which GluonCV's reader reads them from."""

    @property
    def classes(self):
        return ["dog"]


def _xml_labels(classes, index=None):
    """Per image of VOC_SPLITS, the (N, 6) rows [x1-1, y1-1, x2-1, y2-1, id, difficult] of the objects of
    ``classes``, straight from the XML files (ids by position, or from ``index``)."""
    index = index or {c: i for i, c in enumerate(classes)}
    out = []
    for year, split in VOC_SPLITS:
        folder = VOC_ROOT / f"VOC{year}"
        for img_id in (folder / "ImageSets" / "Main" / f"{split}.txt").read_text().split():
            rows = []
            for obj in ET.parse(folder / "Annotations" / f"{img_id}.xml").getroot().iter("object"):
                name = obj.find("name").text.strip()
                if name in classes:
                    box = [float(obj.find("bndbox").find(k).text) - 1 for k in ("xmin", "ymin", "xmax", "ymax")]
                    rows.append(box + [index[name], int(obj.find("difficult").text)])
            out.append(np.array(rows, dtype=np.float32).reshape(-1, 6))
    return out


# --------------------------------------------------------------------------------------------------- VOC
def test_voclike_subclass_reads_its_classes():
    """The tutorial's subclass: only its classes, numbered in CLASSES order (not the 20 VOC ids 14 and 11)."""
    ds = VOCLike(str(VOC_ROOT), VOC_SPLITS)
    assert ds.classes == ("person", "dog") and ds.num_class == 2
    assert ds.index_map == {"person": 0, "dog": 1}
    expected = _xml_labels(("person", "dog"))
    assert len(ds) == len(expected) == 50
    for i, rows in enumerate(expected):
        np.testing.assert_array_equal(ds.label(i), rows)
    assert sum(len(r) for r in expected) > 30 and {int(c) for r in expected for c in r[:, 4]} == {0, 1}
    # GluonCV's index_map (4th positional argument) renumbers the classes
    swapped = VOCLike(str(VOC_ROOT), VOC_SPLITS, None, {"person": 1, "dog": 0})
    assert swapped.classes == ("person", "dog")
    for i, rows in enumerate(_xml_labels(("person", "dog"), {"person": 1, "dog": 0})):
        np.testing.assert_array_equal(swapped.label(i), rows)
    # a classes property is honoured as GluonCV honours it
    dogs = DogsByProperty(str(VOC_ROOT), VOC_SPLITS)
    assert dogs.classes == ["dog"] and dogs.num_class == 1
    for i, rows in enumerate(_xml_labels(("dog",))):
        np.testing.assert_array_equal(dogs.label(i), rows)


def test_voc_takes_gluoncvs_positional_order():
    """root, splits, transform, index_map, preload_label; our options are keyword-only."""
    seen = []

    def transform(img, label):
        seen.append(label.shape)
        return img.shape, label

    ds = VOCDetection(str(VOC_ROOT), ((2007, "test"),), transform, None, False)
    shape, label = ds[0]
    assert shape[2] == 3 and seen == [label.shape] and label.shape == (len(label), 6)
    with pytest.raises(TypeError, match=r"classes=\[\.\.\.\]"):
        VOCDetection(str(VOC_ROOT), ((2007, "test"),), ("person", "dog"))
    with pytest.raises(ValueError, match="no index for the classes"):
        VOCDetection(str(VOC_ROOT), ((2007, "test"),), None, {"person": 0})
    # the keyword-only classes= keeps its strict default: a class outside the list is an error
    with pytest.raises(ValueError, match="not in classes"):
        VOCDetection(str(VOC_ROOT), ((2007, "test"),), classes=("person", "dog"))


@pytest.mark.mxnet
def test_voclike_items_equal_gluoncv(gcv):
    class GluonCVLike(gcv.data.VOCDetection):
        CLASSES = ["person", "dog"]

        def __init__(self, root, splits, transform=None, index_map=None, preload_label=True):
            super().__init__(root, splits, transform, index_map, preload_label)

    class GluonCVDogs(gcv.data.VOCDetection):
        @property
        def classes(self):
            return ["dog"]

    cases = [(VOCLike(str(VOC_ROOT), VOC_SPLITS), GluonCVLike(str(VOC_ROOT), VOC_SPLITS)),
             (VOCLike(str(VOC_ROOT), VOC_SPLITS, None, {"person": 1, "dog": 0}),
              GluonCVLike(str(VOC_ROOT), VOC_SPLITS, None, {"person": 1, "dog": 0})),
             (DogsByProperty(str(VOC_ROOT), VOC_SPLITS), GluonCVDogs(str(VOC_ROOT), VOC_SPLITS))]
    for ours, ref in cases:
        assert len(ours) == len(ref) == 50
        assert list(ours.classes) == list(ref.classes) and ours.num_class == ref.num_class
        assert ours.index_map == ref.index_map
        objects = 0
        for i in range(len(ours)):
            ref_label = ref._label_cache[i]
            if ref_label.size == 0:  # gluoncv: an empty 1-D array; ours (0, 6)
                assert ours.label(i).shape == (0, 6)
                continue
            np.testing.assert_array_equal(ours.label(i), ref_label.astype(np.float32))
            objects += len(ref_label)
        assert objects > 0
    ours, ref = cases[0]
    with_objects = [i for i in range(len(ref)) if ref._label_cache[i].size][:2]
    for i in with_objects:  # the items themselves: the same pixels too
        (img, label), (ref_img, ref_label) = ours[i], ref[i]
        np.testing.assert_array_equal(img.asnumpy(), ref_img.asnumpy())
        np.testing.assert_array_equal(label, ref_label.astype(np.float32))


# -------------------------------------------------------------------------------------------------- COCO
def test_coco_defaults_keep_crowd_boxes():
    """GluonCV's defaults (use_crowd=True): tinycoco's train split has 288 objects, 4 of them crowds (the JSON's
    counts); GluonCV's positional order turns them off as GluonCV's does."""
    raw = json.loads((TINYCOCO / "annotations" / "instances_train2017.json").read_text())
    n_json, n_crowd = len(raw["annotations"]), sum(a["iscrowd"] for a in raw["annotations"])
    assert (n_json, n_crowd) == (288, 4)
    ds = COCODetection(str(TINYCOCO), "instances_train2017", image_dir="images/train2017")
    labels = [ds.label(i) for i in range(len(ds))]
    assert sum(len(lab) for lab in labels) == 288
    assert sum(int(lab[:, 5].sum()) for lab in labels) == 4  # the crowd flag
    # root, splits, transform, min_object_area, skip_empty, use_crowd
    no_crowd = COCODetection(str(TINYCOCO), "instances_train2017", None, 0, True, False, image_dir="images/train2017")
    assert sum(len(no_crowd.label(i)) for i in range(len(no_crowd))) == 284
    # training reads COCO as GluonCV's train_ssd.py does: crowd boxes are targets
    train = open_dataset("coco", str(TINYCOCO), splits="instances_train2017", purpose="train",
                         image_dir="images/train2017")
    assert sum(len(train.label(i)) for i in range(len(train))) == 288


@pytest.mark.mxnet
def test_coco_defaults_and_positional_calls_equal_gluoncv(gcv, coco_url_root):
    split = "instances_train2017"
    for args in ((), (None, 0, True, False), (None, 0, False, True)):
        ours = COCODetection(str(TINYCOCO), split, *args, image_dir="images/train2017")
        ref = gcv.data.COCODetection(str(coco_url_root), split, *args)
        assert len(ours) == len(ref)
        assert [os.path.basename(ours.image_path(i)) for i in range(len(ours))] == \
            [os.path.basename(p) for p in ref._items]
        objects = 0
        for i in range(len(ours)):
            ref_label = np.asarray(ref._labels[i], dtype=np.float32)
            if (ref_label == -1).all():  # gluoncv's dummy row of skip_empty=False
                assert ours.label(i).shape == (0, 6)
                continue
            np.testing.assert_array_equal(ours.label(i)[:, :5], ref_label)
            objects += len(ref_label)
        assert objects == (284 if args[3:4] == (False,) else 288)
    img, _ = ours[0]
    np.testing.assert_array_equal(img.asnumpy(), ref[0][0].asnumpy())


# ------------------------------------------------------------------------------------ presets.ssd: demo input
def _photos():
    return [str(VOC_ROOT / "VOC2007" / "JPEGImages" / f"00000{i}.jpg") for i in (1, 2, 3)]


def test_load_test_returns_gluoncvs_shapes():
    """One pair for one file, also for a list of one (GluonCV's rule), two lists for several; NDArray tensors
    where MXNet is installed, numpy without it; the values of the numpy pipeline's load_test."""
    files = _photos()
    tensor_type = np.ndarray if not HAVE_MXNET else type(read_image(files[0]))
    for given in (files[0], [files[0]]):
        x, orig = presets_ssd.load_test(given, short=300)
        assert isinstance(x, tensor_type) and isinstance(orig, np.ndarray) and orig.dtype == np.uint8
        assert x.shape == (1, 3) + orig.shape[:2] and min(orig.shape[:2]) == 300
        np.testing.assert_array_equal(as_numpy(x), as_numpy(transforms.load_test(files[0], 300)[0]))
    xs, origs = presets_ssd.load_test(files, 300, 400)
    assert isinstance(xs, list) and isinstance(origs, list) and len(xs) == len(origs) == 3
    assert all(isinstance(x, tensor_type) and max(x.shape[2:]) <= 400 for x in xs)
    x, orig = presets_ssd.transform_test([read_image(files[1])], 300)
    assert isinstance(x, tensor_type) and x.shape == (1, 3) + orig.shape[:2]


@pytest.mark.mxnet
def test_load_test_and_transform_test_equal_gluoncv(gcv):
    import mxnet as mx

    ref_ssd = importlib.import_module("gluoncv.data.transforms.presets.ssd")
    files = _photos()
    for given in (files[0], [files[1]], files):
        for short, max_size in ((512, 1024), (300, 400)):
            ours, ref = presets_ssd.load_test(given, short, max_size), ref_ssd.load_test(given, short, max_size)
            if isinstance(ref[0], list):
                assert isinstance(ours[0], list) and isinstance(ours[1], list) and len(ours[0]) == len(ref[0])
                pairs = list(zip(ours[0], ref[0], ours[1], ref[1]))
            else:
                assert not isinstance(ours[0], list)
                pairs = [(ours[0], ref[0], ours[1], ref[1])]
            for x, ref_x, orig, ref_orig in pairs:
                assert isinstance(x, mx.nd.NDArray) and x.dtype == ref_x.dtype and x.shape == ref_x.shape
                assert np.abs(x.asnumpy() - ref_x.asnumpy()).max() == 0
                assert isinstance(orig, np.ndarray) and orig.dtype == ref_orig.dtype == np.uint8
                np.testing.assert_array_equal(orig, ref_orig)
    imgs = [mx.image.imread(f) for f in files]
    for given in (imgs[0], imgs[:1], imgs):
        ours, ref = presets_ssd.transform_test(given, 512), ref_ssd.transform_test(given, 512)
        assert type(ours[0]) is type(ref[0]) and type(ours[1]) is type(ref[1])
        xs, ref_xs = (ours[0], ref[0]) if isinstance(ref[0], list) else ([ours[0]], [ref[0]])
        for x, ref_x in zip(xs, ref_xs):
            assert np.abs(x.asnumpy() - ref_x.asnumpy()).max() == 0


# ----------------------------------------------------------------------------- presets.ssd: train and val
@pytest.mark.mxnet
def test_val_transform_and_val_batches_equal_gluoncv(gcv):
    """The tutorial's validation pipeline: dataset.transform(SSDDefaultValTransform) batched by
    Tuple(Stack(), Pad(pad_val=-1)): NDArrays, bit-exact with gluoncv's whole pipeline."""
    import mxnet as mx

    ours_ds = VOCDetection(str(VOC_ROOT), VOC_SPLITS).transform(presets_ssd.SSDDefaultValTransform(300, 300))
    ref_ds = gcv.data.VOCDetection(str(VOC_ROOT), VOC_SPLITS).transform(
        gcv.data.transforms.presets.ssd.SSDDefaultValTransform(300, 300))
    ours_items, ref_items = [ours_ds[i] for i in range(6)], [ref_ds[i] for i in range(6)]
    for (img, label), (ref_img, ref_label) in zip(ours_items, ref_items):
        assert isinstance(img, mx.nd.NDArray) and img.shape == (3, 300, 300) and img.dtype == np.float32
        assert np.abs(img.asnumpy() - ref_img.asnumpy()).max() == 0
        assert isinstance(label, np.ndarray) and label.dtype == ref_label.dtype == np.float32
        np.testing.assert_array_equal(label, ref_label)
    ours = batchify.Tuple(batchify.Stack(), batchify.Pad(pad_val=-1))(ours_items)
    ref = gcv.data.batchify.Tuple(gcv.data.batchify.Stack(), gcv.data.batchify.Pad(pad_val=-1))(ref_items)
    for a, b in zip(ours, ref):
        assert isinstance(a, mx.nd.NDArray) and a.shape == b.shape and a.dtype == b.dtype and a.context == b.context
        assert np.abs(a.asnumpy() - b.asnumpy()).max() == 0


class _LowDraws:
    """A stand-in ``np.random.Generator`` whose every draw is the low end of its range (a list's first item),
    but ``integers(0, 5)``, which is the resize interpolation: no colour distortion, no zoom-out, the uncropped
    image, ``interp``, and a left-right flip (``uniform() < 0.5``)."""

    def __init__(self, interp):
        self.interp = interp

    def uniform(self, low=0.0, high=1.0, size=None):
        low = np.asarray(low, dtype=np.float64)
        if size is None and low.ndim == 0:
            return float(low)
        return np.broadcast_to(low, low.shape if size is None else size).copy()

    def integers(self, low, high=None, size=None):
        if np.ndim(high) == 0 and high == 5:
            return self.interp
        return np.zeros(np.shape(high), np.int64) if np.ndim(high) else int(low)

    def choice(self, a):
        return a[0]


def _anchors(size):
    """(1, 2 * 8 * 8, 4) centre-format anchors on an 8 x 8 grid of an image ``size`` pixels wide."""
    step = size / 8
    centers = (np.arange(8) + 0.5) * step
    cy, cx = np.meshgrid(centers, centers, indexing="ij")
    rows = [np.stack([cx.ravel(), cy.ravel(), np.full(64, s), np.full(64, s * r)], axis=1)
            for s, r in ((step * 2, 1.0), (step * 4, 0.5))]
    return np.concatenate(rows)[None].astype(np.float32)


@pytest.mark.mxnet
def test_train_transform_equals_gluoncv_with_matched_draws(gcv, monkeypatch):
    """GluonCV's training transform draws from np.random's global state, ours from its own Generator: with both
    scripted to the same choices (no colour distortion, no zoom-out, the uncropped image, each interpolation,
    a flip), the outputs are GluonCV's: NDArrays, labels exactly, targets exactly, images within 0.01 grey
    level (opencv-python's resize of the float image against MXNet's bundled OpenCV; exact for nearest and
    area). The tutorial's de-normalization of the output runs."""
    import mxnet as mx

    ref_ssd = importlib.import_module("gluoncv.data.transforms.presets.ssd")
    anchors = mx.nd.array(_anchors(300))
    ds = VOCDetection(str(VOC_ROOT), ((2007, "test"),))
    batches, ref_batches = [], []
    for i in (0, 1):
        img, label = ds[i]
        for interp in range(5):
            for with_anchors in (False, True):
                args = (anchors,) if with_anchors else ()
                with monkeypatch.context() as patch:
                    patch.setattr(np.random, "uniform", lambda low=0.0, high=1.0, size=None: low)
                    patch.setattr(np.random, "randint",
                                  lambda low, high=None, size=None, k=interp: k if (low, high) == (0, 5) else low)
                    patch.setattr(np.random, "choice", lambda a, size=None, replace=True, p=None:
                                  a[1] if p is not None and p[1] > 0 else a[0])
                    ref = ref_ssd.SSDDefaultTrainTransform(300, 300, *args)(img, label)
                ours = presets_ssd.SSDDefaultTrainTransform(300, 300, *args)(img, label, rng=_LowDraws(interp))
                assert len(ours) == len(ref) == (3 if with_anchors else 2)
                assert isinstance(ours[0], mx.nd.NDArray) and ours[0].shape == (3, 300, 300)
                tol = 0 if interp in (0, 3) else 0.01 / 255 / min(STD)
                np.testing.assert_allclose(ours[0].asnumpy(), ref[0].asnumpy(), rtol=0, atol=tol)
                if with_anchors:
                    for a, b in zip(ours[1:], ref[1:]):
                        assert isinstance(a, mx.nd.NDArray) and a.shape == b.shape and a.dtype == b.dtype
                        np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=0, atol=1e-5)
                    assert (ours[1].asnumpy() > 0).any()
                    batches.append(ours)
                    ref_batches.append(ref)
                else:
                    assert isinstance(ours[1], np.ndarray) and ours[1].dtype == ref[1].dtype == np.float32
                    np.testing.assert_array_equal(ours[1], ref[1])
                    # the tutorial's look at the augmented image
                    shown = ours[0].transpose((1, 2, 0)) * mx.nd.array(STD) + mx.nd.array(MEAN)
                    shown = (shown * 255).clip(0, 255).asnumpy().astype(np.uint8)
                    assert shown.shape == (300, 300, 3)
                    # flipped, nearest neighbour, nothing else: the photo's own pixels
                    if interp == 0:
                        expect = mx.image.imresize(img, 300, 300, interp=0).asnumpy()[:, ::-1]
                        assert np.abs(shown.astype(int) - expect).max() <= 1
    # the tutorial's training batches: Tuple(Stack(), Stack(), Stack())
    ours = batchify.Tuple(batchify.Stack(), batchify.Stack(), batchify.Stack())(batches)
    ref = gcv.data.batchify.Tuple(*[gcv.data.batchify.Stack()] * 3)(ref_batches)
    for a, b in zip(ours, ref):
        assert a.shape == b.shape and a.dtype == b.dtype and a.context == b.context
        np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=0, atol=0.01 / 255 / min(STD))


def test_train_and_val_wrappers_are_the_numpy_transforms():
    """One implementation: the GluonCV-path classes give the numbers of the numpy versions (same seed), as
    NDArrays where MXNet is installed and numpy arrays without it."""
    img, label = VOCDetection(str(VOC_ROOT), ((2007, "test"),))[0]
    tensor_type = np.ndarray if not HAVE_MXNET else type(img)
    wrapped = presets_ssd.SSDDefaultTrainTransform(128, 96, seed=3)
    plain = transforms.SSDDefaultTrainTransform(128, 96, seed=3)
    for _ in range(3):
        (image, boxes), (plain_image, plain_boxes) = wrapped(img, label), plain(img, label)
        assert isinstance(image, tensor_type) and isinstance(plain_image, np.ndarray)
        np.testing.assert_array_equal(as_numpy(image), plain_image)
        assert isinstance(boxes, np.ndarray)
        np.testing.assert_array_equal(boxes, plain_boxes)
    image, boxes = presets_ssd.SSDDefaultValTransform(64, 48)(img, label)
    plain_image, plain_boxes = transforms.SSDDefaultValTransform(64, 48)(img, label)
    assert isinstance(image, tensor_type) and image.shape == (3, 48, 64)
    np.testing.assert_array_equal(as_numpy(image), as_numpy(plain_image))
    np.testing.assert_array_equal(boxes, plain_boxes)
    with pytest.raises(TypeError, match="unexpected keyword"):
        presets_ssd.SSDDefaultTrainTransform(64, 64, negative_mining_ratio=3)


# ---------------------------------------------------------------------------------------------- batchify
def test_batchify_hand_worked():
    """Stack, Pad and Tuple with GluonCV's semantics, values worked out by hand."""
    stacked = batchify.Stack()([np.zeros((2, 2), np.uint8), np.full((2, 2), 7, np.uint8)])
    assert stacked.shape == (2, 2, 2) and stacked.dtype == np.float32  # GluonCV's mx.nd.array: float32
    np.testing.assert_array_equal(as_numpy(stacked)[1], np.full((2, 2), 7))
    np.testing.assert_array_equal(as_numpy(batchify.Stack()([0, 1, 1])), [0, 1, 1])
    labels = [np.arange(12, dtype=np.float64).reshape(2, 6), np.ones((1, 6))]
    padded = batchify.Pad(pad_val=-1)(labels)
    assert padded.shape == (2, 2, 6) and padded.dtype == np.float64  # the first sample's dtype
    np.testing.assert_array_equal(as_numpy(padded), [labels[0], [[1] * 6, [-1] * 6]])
    out, lengths = batchify.Pad(axis=1, pad_val=9, ret_length=True)([np.zeros((2, 1)), np.ones((2, 3))])
    np.testing.assert_array_equal(as_numpy(out), [[[0, 9, 9], [0, 9, 9]], [[1, 1, 1], [1, 1, 1]]])
    assert lengths.dtype == np.int32
    np.testing.assert_array_equal(as_numpy(lengths), [1, 3])
    out, lengths = batchify.Pad(axis=(0, 1), ret_length=True)([[[1, 2]], [[3], [4]]])
    np.testing.assert_array_equal(as_numpy(out), [[[1, 2], [0, 0]], [[3, 0], [4, 0]]])
    np.testing.assert_array_equal(as_numpy(lengths), [[1, 2], [2, 1]])
    shards, lengths = batchify.Pad(0, -1, 2, True)([np.ones((1, 2)), np.ones((3, 2)), np.ones((2, 2))])
    assert [s.shape for s in shards] == [(2, 3, 2), (1, 2, 2)]
    np.testing.assert_array_equal(as_numpy(shards[0])[0], [[1, 1], [-1, -1], [-1, -1]])
    assert [as_numpy(x).tolist() for x in lengths] == [[1, 3], [2]]
    images, padded = batchify.Tuple([batchify.Stack(), batchify.Pad(pad_val=-1)])(
        [(np.zeros((3, 4, 4)), labels[0]), (np.ones((3, 4, 4)), labels[1])])
    assert images.shape == (2, 3, 4, 4) and padded.shape == (2, 2, 6)
    with pytest.raises(ValueError, match="Pad"):
        batchify.Stack()([np.zeros((2, 6)), np.zeros((1, 6))])
    with pytest.raises(ValueError, match="3 fields"):
        batchify.Tuple(batchify.Stack(), batchify.Stack())([(1, 2, 3)])
    with pytest.raises(TypeError, match="not callable"):
        batchify.Tuple(batchify.Stack(), "Pad")
    with pytest.raises(ValueError, match="also differ"):
        batchify.Pad()([np.zeros((2, 6)), np.zeros((1, 5))])


@pytest.mark.mxnet
def test_batchify_equals_gluoncv(gcv):
    import mxnet as mx

    ref = gcv.data.batchify
    rng = np.random.default_rng(0)
    labels64 = [rng.uniform(0, 9, (n, 6)) for n in (3, 1, 2)]
    images8 = [rng.integers(0, 255, (5, 6, 3)).astype(np.uint8) for _ in range(3)]
    cases = [
        (batchify.Stack(), ref.Stack(), images8),
        (batchify.Stack(), ref.Stack(), [mx.nd.array(x, dtype=np.uint8) for x in images8]),
        (batchify.Stack(), ref.Stack(), [0, 1, 0]),
        (batchify.Stack(), ref.Stack(), [[1, 2], [3, 4], [5, 6]]),
        (batchify.Pad(pad_val=-1), ref.Pad(pad_val=-1), labels64),
        (batchify.Pad(pad_val=-1), ref.Pad(pad_val=-1), [mx.nd.array(x) for x in labels64]),
        (batchify.Pad(), ref.Pad(), [[1, 2, 3], [4], [5, 6]]),
        (batchify.Pad(axis=(0, 1), pad_val=-2, ret_length=True), ref.Pad(axis=(0, 1), pad_val=-2, ret_length=True),
         [rng.uniform(size=s).astype(np.float32) for s in ((2, 3), (4, 1), (1, 1))]),
        (batchify.Pad(pad_val=-1, num_shards=2, ret_length=True), ref.Pad(pad_val=-1, num_shards=2, ret_length=True),
         labels64),
        (batchify.Tuple(batchify.Stack(), batchify.Pad(pad_val=-1)),
         ref.Tuple(ref.Stack(), ref.Pad(pad_val=-1)), list(zip(images8, labels64))),
    ]

    def flat(x):
        return [y for z in x for y in flat(z)] if isinstance(x, (list, tuple)) else [x]

    for ours_fn, ref_fn, data in cases:
        ours, theirs = flat(ours_fn(data)), flat(ref_fn(data))
        assert len(ours) == len(theirs), (ours_fn, len(ours), len(theirs))
        for a, b in zip(ours, theirs):
            assert isinstance(a, mx.nd.NDArray), ours_fn
            assert (a.shape, a.dtype, a.context) == (b.shape, b.dtype, b.context), ours_fn
            np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())


# ------------------------------------------------------------------------------------------- .lst and .rec
def _write_lst(path, normalized=True, extra=True):
    """An im2rec detection list of the VOC2007 sample, GluonCV's tutorial layout: header ``4, B, width, height``,
    objects ``class, xmin, ymin, xmax, ymax`` (normalized or pixels) plus ``difficult`` when ``extra``.
    Returns the expected (N, B) labels in pixels."""
    folder = VOC_ROOT / "VOC2007"
    lines, expected = [], []
    for k, img_id in enumerate((folder / "ImageSets" / "Main" / "test.txt").read_text().split()):
        root = ET.parse(folder / "Annotations" / f"{img_id}.xml").getroot()
        width, height = (int(root.find("size").find(t).text) for t in ("width", "height"))
        rows, values = [], [4, 6 if extra else 5, width, height]
        for obj in root.iter("object"):
            box = [float(obj.find("bndbox").find(t).text) - 1 for t in ("xmin", "ymin", "xmax", "ymax")]
            cls = float(VOCDetection.CLASSES.index(obj.find("name").text.strip()))
            scaled = [box[0] / width, box[1] / height, box[2] / width, box[3] / height] if normalized else box
            values += [cls] + scaled + ([float(obj.find("difficult").text)] if extra else [])
            rows.append(box + [cls] + ([float(obj.find("difficult").text)] if extra else []))
        lines.append("\t".join([str(k)] + [repr(float(v)) for v in values] + [f"{img_id}.jpg"]))
        expected.append(np.array(rows))
    path.write_text("\n".join(lines) + "\n")
    return expected


def test_lst_detection_reads_im2rec_labels(tmp_path):
    """GluonCV's label layout from an im2rec list: the class moved to column 4, boxes back in pixels, extras kept;
    the images as read_image decodes them. No MXNet needed."""
    images = VOC_ROOT / "VOC2007" / "JPEGImages"
    for normalized in (True, False):
        expected = _write_lst(tmp_path / "voc.lst", normalized)
        ds = LstDetection(str(tmp_path / "voc.lst"), root=str(images), coord_normalized=normalized)
        assert len(ds) == len(expected) == 5
        for i, rows in enumerate(expected):
            img, label = ds[i]
            assert label.dtype == np.float64 and label.shape == rows.shape and rows.shape[1] == 6
            np.testing.assert_allclose(label, rows, rtol=1e-12, atol=1e-9)
            np.testing.assert_array_equal(as_numpy(img), as_numpy(read_image(ds.image_path(i))))
    (tmp_path / "bad.lst").write_text("0\t4\t5\t10\t10\t1\t0.1\t0.1\t0.5\ta.jpg\n")
    with pytest.raises(ValueError, match="line 1 of .*bad.lst.*not a header of 4 plus whole objects of 5"):
        LstDetection(str(tmp_path / "bad.lst"))


def test_rec_needs_mxnet_and_its_idx(tmp_path):
    (tmp_path / "x.rec").write_bytes(b"")
    if HAVE_MXNET:
        with pytest.raises(FileNotFoundError, match=r"x\.idx"):
            RecordFileDetection(str(tmp_path / "x.rec"))
    else:
        with pytest.raises(MXNetMissing, match="RecordFileDetection"):
            RecordFileDetection(str(tmp_path / "x.rec"))


@pytest.mark.mxnet
def test_rec_and_lst_items_equal_gluoncv(gcv, tmp_path):
    """A .rec written by MXNet's own im2rec.py (--pack-label, --pass-through) from the .lst: the same items as
    gluoncv's RecordFileDetection and LstDetection, and the .rec's images are the files' pixels."""
    import mxnet as mx

    images = VOC_ROOT / "VOC2007" / "JPEGImages"
    im2rec = os.path.join(os.path.dirname(mx.__file__), "tools", "im2rec.py")
    for normalized in (True, False):
        _write_lst(tmp_path / "voc.lst", normalized, extra=normalized)
        done = subprocess.run([sys.executable, im2rec, str(tmp_path / "voc"), str(images), "--pack-label",
                               "--pass-through", "--num-thread", "1", "--no-shuffle"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and (tmp_path / "voc.idx").is_file(), done.stderr[-2000:]
        pairs = [(RecordFileDetection(str(tmp_path / "voc.rec"), normalized),
                  gcv.data.RecordFileDetection(str(tmp_path / "voc.rec"), normalized)),
                 (LstDetection(str(tmp_path / "voc.lst"), str(images), 1, normalized),
                  gcv.data.LstDetection(str(tmp_path / "voc.lst"), str(images), 1, normalized))]
        for ours, ref in pairs:
            assert len(ours) == len(ref) == 5
            for i in range(len(ours)):
                (img, label), (ref_img, ref_label) = ours[i], ref[i]
                assert isinstance(img, mx.nd.NDArray) and img.dtype == ref_img.dtype == np.uint8
                np.testing.assert_array_equal(img.asnumpy(), ref_img.asnumpy())
                np.testing.assert_array_equal(img.asnumpy(), read_image(str(images / f"00000{i + 1}.jpg")).asnumpy())
                assert label.dtype == ref_label.dtype and label.shape == ref_label.shape
                np.testing.assert_array_equal(label, ref_label)
        (tmp_path / "voc.rec").unlink()
        (tmp_path / "voc.idx").unlink()


# ----------------------------------------------------------------------------------------------- the paths
def test_gluoncv_names_at_gluoncv_paths():
    """``gluoncv`` -> ``gluon_ssd`` in a script's imports; the numpy pipeline's names keep working."""
    import gluon_ssd.data as gdata

    for name in ("VOCDetection", "COCODetection", "RecordFileDetection", "LstDetection", "transforms", "batchify"):
        assert name in gdata.__all__ and getattr(gdata, name) is not None
    for name in ("Tuple", "Stack", "Pad"):
        assert callable(getattr(gdata.batchify, name))
    assert gdata.transforms.presets.ssd is presets_ssd
    for name in ("load_test", "transform_test", "SSDDefaultTrainTransform", "SSDDefaultValTransform"):
        assert name in presets_ssd.__all__
    # what gluon_ssd.data.transforms exported as a module, it exports as a package (held by its .pipeline)
    for name in ("SSDDefaultTrainTransform", "SSDDefaultValTransform", "bbox_iou", "crop_boxes", "flip_boxes",
                 "load_test", "random_crop_with_constraints", "random_expand_placement", "resize_boxes",
                 "transform_test"):
        assert name in transforms.__all__ and getattr(transforms, name) is getattr(transforms.pipeline, name)
