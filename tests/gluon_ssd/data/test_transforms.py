"""SSD transforms: validation/demo preprocessing bit-exact with GluonCV, training augmentation invariants."""
from __future__ import annotations

import importlib
import multiprocessing
import xml.etree.ElementTree as ET

import cv2
import mxnet as mx
import numpy as np
import pytest

from gluon_ssd.data import image as gimage
from gluon_ssd.data import transforms as T
from tests.helpers import DATA

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
VOC = DATA / "voc_sample" / "VOCdevkit"
VOC_NAMES = ("aeroplane bicycle bird boat bottle bus car cat chair cow diningtable dog horse motorbike "
             "person pottedplant sheep sofa train tvmonitor").split()


def photos():
    """Every real photo of the shared data that val/demo parity runs on."""
    files = sorted((VOC / "VOC2007" / "JPEGImages").glob("*.jpg"))
    files += sorted((VOC / "VOC2012" / "JPEGImages").glob("*.jpg"))[:6]
    files += sorted(p for p in (DATA / "demo_images").rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    return files


def voc_samples(year="VOC2012", count=12):
    """(RGB image, (N, 7) label [x1, y1, x2, y2, class, difficult, row id]) of real annotated photos."""
    folder = VOC / year
    out = []
    for xml in sorted((folder / "Annotations").glob("*.xml"))[:count]:
        img = cv2.cvtColor(cv2.imread(str(folder / "JPEGImages" / (xml.stem + ".jpg"))), cv2.COLOR_BGR2RGB)
        rows = []
        for i, obj in enumerate(ET.parse(xml).findall("object")):
            box = obj.find("bndbox")
            coords = [float(box.find(k).text) - 1 for k in ("xmin", "ymin", "xmax", "ymax")]
            rows.append(coords + [VOC_NAMES.index(obj.find("name").text.strip()),
                                  float(obj.find("difficult").text), i])
        out.append((img, np.array(rows, dtype=np.float32)))
    return out


@pytest.fixture(scope="module")
def samples():
    return voc_samples()


# ------------------------------------------------------------------ validation and demo parity
def test_val_transform_matches_gluoncv_on_real_photos(gcv):
    reference_cls = importlib.import_module("gluoncv.data.transforms.presets.ssd").SSDDefaultValTransform
    label = np.array([[10, 20, 100, 200, 3, 0], [50.5, 60.25, 70, 90, 1, 1]], dtype=np.float32)
    files = photos()
    assert len(files) >= 15
    for path in files:
        img = mx.image.imread(str(path))
        for width, height in ((300, 300), (512, 512), (700, 200)):
            ref_img, ref_label = reference_cls(width, height)(img, label)
            for src in (img, img.asnumpy()):
                out_img, out_label = T.SSDDefaultValTransform(width, height)(src, label)
                assert out_img.shape == (3, height, width) and out_img.dtype == np.float32
                assert np.abs(out_img.asnumpy() - ref_img.asnumpy()).max() == 0, (path, width, height)
                assert out_label.dtype == ref_label.dtype
                np.testing.assert_array_equal(out_label, ref_label)


def test_load_test_and_transform_test_match_gluoncv(gcv):
    ssd = importlib.import_module("gluoncv.data.transforms.presets.ssd")
    files = [str(p) for p in photos()]
    for path in files:
        for short, max_size in ((512, 1024), (600, 700)):
            ref_x, ref_orig = ssd.load_test(path, short, max_size)
            x, orig = T.load_test(path, short, max_size)
            assert x.shape == ref_x.shape and orig.shape == ref_orig.shape
            assert np.abs(x.asnumpy() - ref_x.asnumpy()).max() == 0, (path, short, max_size)
            np.testing.assert_array_equal(orig, ref_orig)
    # Lists in, lists out; numpy images are accepted too.
    imgs = [mx.image.imread(p) for p in files[:3]]
    ref_xs, ref_origs = ssd.transform_test(imgs, 300)
    xs, origs = T.transform_test([i.asnumpy() for i in imgs], 300)
    assert len(xs) == 3
    for a, b, c, d in zip(xs, ref_xs, origs, ref_origs):
        assert np.abs(a.asnumpy() - b.asnumpy()).max() == 0
        np.testing.assert_array_equal(c, d)
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        T.load_test(str(DATA / "nope.jpg"))


def test_to_tensor_is_mxnets_to_tensor_and_normalize():
    rng = np.random.default_rng(0)
    for img in (rng.integers(0, 256, (37, 53, 3)).astype(np.uint8),
                rng.uniform(-60, 320, (37, 53, 3)).astype(np.float32)):
        reference = mx.nd.image.normalize(mx.nd.image.to_tensor(mx.nd.array(img, dtype=img.dtype)),
                                          mean=MEAN, std=STD).asnumpy()
        out = gimage.to_tensor(img, MEAN, STD)
        assert out.dtype == np.float32 and out.shape == (3, 37, 53)
        np.testing.assert_array_equal(out, reference)
        # The flip step on its own: column j of the flipped tensor is column W-1-j of the plain one.
        np.testing.assert_array_equal(gimage.to_tensor(img, MEAN, STD, flip=True), reference[:, :, ::-1])


def test_flip_boxes_hand_worked():
    label = np.array([[10, 20, 30, 40, 3, 1], [0, 0, 100, 50, 0, 0]], dtype=np.float32)
    flipped = T.flip_boxes(label, 100)
    np.testing.assert_array_equal(flipped, [[70, 20, 90, 40, 3, 1], [0, 0, 100, 50, 0, 0]])
    np.testing.assert_array_equal(T.flip_boxes(flipped, 100), label)
    # Image and boxes mirror together: paint a box, flip both, the paint is inside the flipped box.
    img = np.zeros((60, 100, 3), dtype=np.uint8)
    img[20:40, 10:30] = 255
    tensor = gimage.to_tensor(img, (0, 0, 0), (1, 1, 1), flip=True)
    painted = np.argwhere(tensor[0] > 0)
    x1, y1, x2, y2 = flipped[0, :4]
    assert painted[:, 1].min() == x1 and painted[:, 1].max() == x2 - 1
    assert painted[:, 0].min() == y1 and painted[:, 0].max() == y2 - 1


# ----------------------------------------------------------------------- training augmentation
class ScriptedRandom:
    """One scripted stream of unit values served through numpy's, Python's and Generator's APIs."""

    def __init__(self, values):
        self._values = list(values)

    def _next(self):
        return self._values.pop(0)

    def uniform(self, low=0.0, high=1.0, size=None):
        assert size is None
        return low + (high - low) * self._next()

    def integers(self, low, high=None):
        return low + int(self._next() * (high - low))

    randint = integers


def test_color_distortion_is_gluoncvs_recipe(gcv, monkeypatch):
    """Same random draws in, same distorted image out: order of steps, probabilities and ranges."""
    module = importlib.import_module("gluoncv.data.transforms.experimental.image")
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (24, 31, 3)).astype(np.uint8)
    scripts = [np.full(12, 0.9), np.full(12, 0.1), np.array([0.9, 0.2, 0.1] + [0.9, 0.7] * 5)]
    scripts += [rng.uniform(0, 1, 12) for _ in range(40)]
    for script in scripts:
        theirs = ScriptedRandom(script)
        monkeypatch.setattr(np.random, "uniform", theirs.uniform)
        monkeypatch.setattr(np.random, "randint", theirs.randint)
        monkeypatch.setattr(module.random, "uniform", theirs.uniform)
        reference = module.random_color_distort(mx.nd.array(img, dtype=np.uint8)).asnumpy()
        monkeypatch.undo()
        matrix = gimage.color_distort_matrix(ScriptedRandom(script))
        ours = cv2.transform(img.astype(np.float32), matrix)
        np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=2e-3)


def test_random_expand_ranges():
    rng = np.random.default_rng(0)
    ratios = []
    for _ in range(2000):
        off_x, off_y, canvas_w, canvas_h = T.random_expand_placement(rng, 375, 500)
        assert 500 <= canvas_w < 2000 and 375 <= canvas_h < 1500
        assert abs(canvas_w / 500 - canvas_h / 375) < 1 / 375 + 1e-9  # one ratio for both sides
        assert 0 <= off_x <= canvas_w - 500 and 0 <= off_y <= canvas_h - 375
        ratios.append(canvas_w / 500)
    assert min(ratios) < 1.01 and max(ratios) > 3.98


def test_expanded_crop_equals_building_the_canvas():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (30, 40, 3)).astype(np.uint8)
    color = gimage.color_distort_matrix(np.random.default_rng(5))
    fill = tuple(m * 255 for m in MEAN)
    canvas = np.empty((90, 100, 3), dtype=np.float32)
    canvas[...] = np.array(fill, dtype=np.float32)
    canvas[25:55, 33:73] = cv2.transform(img.astype(np.float32), color)
    for crop in ((0, 0, 100, 90), (30, 20, 20, 15), (40, 30, 10, 10), (0, 0, 20, 20), (35, 27, 40, 30)):
        x, y, w, h = crop
        out = gimage.expanded_crop(img, color, fill, (33, 25), crop)
        np.testing.assert_array_equal(out, canvas[y:y + h, x:x + w])


def test_crop_constraints_and_lost_objects(gcv, samples):
    """Every crop meets its IoU constraint (measured with GluonCV's bbox_iou, the crop sampler's convention:
    no +1); exactly the boxes whose centre is inside survive."""
    rng = np.random.default_rng(3)
    for constraint in ((0.5, None), (0.1, None), (None, 0.3)):
        for img, label in samples:
            height, width = img.shape[:2]
            for _ in range(10):
                boxes, (x, y, w, h) = T.random_crop_with_constraints(label, (width, height), rng,
                                                                     constraints=(constraint,))
                assert 0 <= x and 0 <= y and x + w <= width and y + h <= height
                centers = (label[:, :2] + label[:, 2:4]) / 2
                inside = ((centers >= (x, y)) & (centers < (x + w, y + h))).all(axis=1)
                assert len(boxes) >= 1
                np.testing.assert_array_equal(boxes[:, 6], label[inside, 6])
                expect = label[inside].astype(np.float64)
                expect[:, :2] = np.maximum(expect[:, :2], (x, y)) - (x, y)
                expect[:, 2:4] = np.minimum(expect[:, 2:4], (x + w, y + h)) - (x, y)
                np.testing.assert_allclose(boxes, expect)
                if (x, y, w, h) == (0, 0, width, height):
                    continue  # the uncropped image is always a candidate
                scale_w, scale_h = w / width, h / height
                slack = 1.0 / min(w, h)  # side lengths are truncated to whole pixels
                assert 0.3 - slack <= np.sqrt(scale_w * scale_h) <= 1
                assert 0.5 - slack <= scale_w / scale_h <= 2 + 2 * slack
                iou = gcv.utils.bbox.bbox_iou(np.array([[x, y, x + w, y + h]], dtype=np.float64), label[:, :4],
                                              offset=0)[0]
                low, high = constraint
                assert (low is None or iou.min() >= low) and (high is None or iou.max() <= high)


def test_crop_without_boxes():
    rng = np.random.default_rng(0)
    crops = set()
    for _ in range(50):
        boxes, crop = T.random_crop_with_constraints(np.zeros((0, 6)), (200, 100), rng)
        assert boxes.shape == (0, 6)
        crops.add(crop)
    assert (0, 0, 200, 100) in crops and len(crops) > 10


def train_out(transform, img, label, seed):
    return transform(img, label, rng=np.random.default_rng(seed))


def test_train_transform_invariants_on_real_photos(samples, monkeypatch):
    width, height = 300, 200
    transform = T.SSDDefaultTrainTransform(width, height)
    interps = []
    real_resize = cv2.resize

    def recording_resize(src, size, interpolation):
        interps.append(interpolation)
        return real_resize(src, size, interpolation=interpolation)

    monkeypatch.setattr(cv2, "resize", recording_resize)  # the module the pipeline calls
    for seed in range(15):
        for img, label in samples:
            image, boxes = train_out(transform, img, label, seed)
            assert image.shape == (3, height, width) and image.dtype == np.float32
            assert np.isfinite(image).all()
            assert boxes.dtype == np.float32 and boxes.shape[1] == 7 and len(boxes) >= 1
            assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= width + 1e-3).all()
            assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= height + 1e-3).all()
            assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
            ids = boxes[:, 6].astype(int)
            assert len(set(ids)) == len(ids)
            np.testing.assert_array_equal(boxes[:, 4:6], label[ids, 4:6])  # class, difficult kept
    assert set(interps) == {0, 1, 2, 3, 4}


def test_train_transform_geometry_follows_the_boxes(monkeypatch):
    """A white box on black: after augmentation the box covers exactly the box's pixels.

    The resize is forced to nearest neighbour so that pixel values stay pure (inside colour, outside
    colour, canvas fill) and the box's pixels can be located to one pixel.
    """
    real_resize = cv2.resize
    monkeypatch.setattr(cv2, "resize", lambda src, size, interpolation: real_resize(
        src, size, interpolation=cv2.INTER_NEAREST))
    img = np.zeros((240, 320, 3), dtype=np.uint8)
    img[60:180, 100:260] = 255
    label = np.array([[100, 60, 260, 180, 0, 0]], dtype=np.float32)
    transform = T.SSDDefaultTrainTransform(256, 192)
    checked = 0
    for seed in range(80):
        image, boxes = train_out(transform, img, label, seed)
        x1, y1, x2, y2 = boxes[0, :4]
        if min(x2 - x1, y2 - y1) < 4:
            continue
        middle = image[:, int((y1 + y2) / 2), int((x1 + x2) / 2)]
        inside = (np.abs(image - middle[:, None, None]) < 1e-6).all(axis=0)
        rows, cols = np.nonzero(inside)
        assert abs(cols.min() - x1) <= 1 and abs(cols.max() + 1 - x2) <= 1, (seed, cols.min(), cols.max(), x1, x2)
        assert abs(rows.min() - y1) <= 1 and abs(rows.max() + 1 - y2) <= 1, (seed, rows.min(), rows.max(), y1, y2)
        checked += 1
    assert checked > 40


def test_train_transform_seeding(samples):
    img, label = samples[0]
    a = T.SSDDefaultTrainTransform(128, 128, seed=7)
    b = T.SSDDefaultTrainTransform(128, 128, seed=7)
    c = T.SSDDefaultTrainTransform(128, 128, seed=8)
    outs_a = [a(img, label) for _ in range(4)]
    outs_b = [b(img, label) for _ in range(4)]
    outs_c = [c(img, label) for _ in range(4)]
    for (ia, la), (ib, lb) in zip(outs_a, outs_b):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(la, lb)
    assert not np.array_equal(outs_a[0][0], outs_a[1][0])
    assert not any(np.array_equal(x[0], y[0]) for x, y in zip(outs_a, outs_c))
    # A Generator as seed is used as given.
    d = T.SSDDefaultTrainTransform(128, 128, seed=np.random.default_rng(7))
    np.testing.assert_array_equal(d(img, label)[0], outs_a[0][0])


def test_train_transform_without_objects(gcv):
    img = np.full((50, 80, 3), 90, dtype=np.uint8)
    anchors = mx.nd.array(np.array([[[16, 16, 32, 32], [48, 32, 40, 40], [64, 64, 128, 128]]], np.float32))
    plain = T.SSDDefaultTrainTransform(64, 64)
    with_targets = T.SSDDefaultTrainTransform(64, 64, anchors=anchors)
    for seed, label in enumerate((np.zeros((0, 6), dtype=np.float32), np.zeros((0,), dtype=np.float32))):
        image, boxes = train_out(plain, img, label, seed)
        assert image.shape == (3, 64, 64) and boxes.shape == (0, 6)
        image, cls_targets, box_targets = train_out(with_targets, img, label, seed)
        assert cls_targets.shape == (3,) and box_targets.shape == (3, 4)
        assert (cls_targets == 0).all() and (box_targets == 0).all()
    with pytest.raises(ValueError, match="label must be"):
        plain(img, np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        plain(np.zeros((5, 5)), np.zeros((0, 6)))


def test_train_targets_equal_gluoncv_generator_on_the_augmented_label(gcv, samples):
    target = importlib.import_module("gluoncv.model_zoo.ssd.target")
    net = gcv.model_zoo.get_model("ssd_512_mobilenet1.0_voc", pretrained_base=False)
    net.initialize()
    with mx.autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, 512, 512)))
    with_targets = T.SSDDefaultTrainTransform(512, 512, anchors=anchors)
    plain = T.SSDDefaultTrainTransform(512, 512)
    reference = target.SSDTargetGenerator(negative_mining_ratio=-1)
    for seed, (img, label) in enumerate(samples[:8]):
        image, cls_targets, box_targets = train_out(with_targets, img, label[:, :6], seed)
        plain_image, boxes = train_out(plain, img, label[:, :6], seed)
        np.testing.assert_array_equal(image, plain_image)
        ref_cls, ref_box, _ = reference(anchors, None, mx.nd.array(boxes[None, :, :4]),
                                        mx.nd.array(boxes[None, :, 4:5]))
        np.testing.assert_array_equal(cls_targets, ref_cls.asnumpy()[0])
        np.testing.assert_allclose(box_targets, ref_box.asnumpy()[0], rtol=0, atol=1e-5)
        assert (cls_targets > 0).sum() >= len(boxes)


_WORKER_TRANSFORM = None


def _augment_in_worker(args):
    img, label = args
    image, _ = _WORKER_TRANSFORM(img, label)
    return tuple(multiprocessing.current_process()._identity), image


def test_worker_processes_get_their_own_streams(samples):
    """Forked workers derive SeedSequence(seed, spawn_key=identity + (epoch,)), as documented."""
    global _WORKER_TRANSFORM
    img, label = samples[1]
    _WORKER_TRANSFORM = T.SSDDefaultTrainTransform(96, 96, seed=11)
    parent = _WORKER_TRANSFORM(img, label)[0]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        results = pool.map(_augment_in_worker, [(img, label)] * 2, chunksize=1)
        results += pool.map(_augment_in_worker, [(img, label)] * 2, chunksize=1)
    images = [r[1] for r in results]
    for i in range(len(images)):
        assert not np.array_equal(images[i], parent)
    by_worker = {}
    for identity, image in results:
        by_worker.setdefault(identity, []).append(image)
    for identity, outs in by_worker.items():
        stream = np.random.default_rng(np.random.SeedSequence(11, spawn_key=identity + (0,)))
        for out in outs:
            np.testing.assert_array_equal(out, _WORKER_TRANSFORM(img, label, rng=stream)[0])
    _WORKER_TRANSFORM = None


def _stack_images(samples):
    return np.stack([s[0] for s in samples])


def test_train_transform_in_a_gluon_dataloader(samples):
    img, label = samples[2]
    dataset = mx.gluon.data.SimpleDataset([(img, label[:, :6])] * 4).transform(
        T.SSDDefaultTrainTransform(64, 64, seed=5))
    loader = mx.gluon.data.DataLoader(dataset, batch_size=1, num_workers=2, batchify_fn=_stack_images)
    images = [b for b in loader]
    assert len(images) == 4
    for i in range(4):
        for j in range(i):
            assert not np.array_equal(images[i], images[j])
