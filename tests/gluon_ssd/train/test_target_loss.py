"""SSD target generation and loss against GluonCV's, on the real anchors of four GluonCV models."""
from __future__ import annotations

import importlib

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from gluon_ssd.train.loss import SSDMultiBoxLoss
from gluon_ssd.train.target import SSDTargetGenerator, batch_targets, match_anchors

MODELS = {
    "ssd_300_vgg16_atrous_voc": 300,
    "ssd_512_vgg16_atrous_voc": 512,
    "ssd_512_resnet50_v1_voc": 512,
    "ssd_512_mobilenet1.0_voc": 512,
}
_ANCHORS: dict[str, mx.nd.NDArray] = {}


@pytest.fixture(scope="session")
def gcv_anchors(gcv):
    """anchors(name) -> GluonCV's anchors (1, N, 4) from a training-mode forward, built once per session."""

    def get(name):
        if name not in _ANCHORS:
            size = MODELS[name]
            net = gcv.model_zoo.get_model(name, pretrained_base=False)
            net.initialize()
            with autograd.train_mode():
                _, _, anchors = net(mx.nd.zeros((1, 3, size, size)))
            _ANCHORS[name] = anchors
        return _ANCHORS[name]

    return get


def gcv_generator(gcv):
    # gcv.model_zoo.ssd is shadowed by smot's ssd module (GluonCV #1634): import the module by path.
    target = importlib.import_module("gluoncv.model_zoo.ssd.target")
    return target.SSDTargetGenerator(negative_mining_ratio=-1)


def random_ground_truth(rng, anchors, size, count, valid):
    """(count, 6) labels: ``valid`` real boxes then -1 rows.

    The real boxes mix the awkward cases: exact duplicates, tiny boxes (under 3 px), boxes equal to an
    anchor (ties between anchors and with the best IoU), the whole image, integer boxes aligned with
    the anchor grid (many equal IoUs), and ordinary random boxes.
    """
    centers = anchors.asnumpy().reshape(-1, 4)
    rows = []
    for _ in range(valid):
        kind = rng.integers(0, 6)
        if kind == 0:
            cx, cy, w, h = centers[rng.integers(len(centers))]
            box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        elif kind == 1:
            x, y = rng.uniform(0, size - 4, 2)
            box = [x, y, x + rng.uniform(0.3, 3), y + rng.uniform(0.3, 3)]
        elif kind == 2:
            box = [0, 0, size, size]
        elif kind == 3:
            step = size // 16
            c = rng.integers(1, 16, 2) * step
            half = rng.integers(1, 6, 2) * step // 2
            box = [c[0] - half[0], c[1] - half[1], c[0] + half[0], c[1] + half[1]]
        else:
            x, y = rng.uniform(0, size * 0.9, 2)
            w, h = rng.uniform(4, size * 0.6, 2)
            box = [x, y, min(x + w, size), min(y + h, size)]
        rows.append(box + [rng.integers(0, 20), rng.integers(0, 2)])
    labels = np.full((count, 6), -1, dtype=np.float32)
    if valid:
        labels[:valid] = np.array(rows, dtype=np.float32)
        if valid >= 3:  # exact duplicates, one of them with another class
            labels[1, :4] = labels[0, :4]
            labels[valid - 1] = labels[0]
    return labels


def reference_targets(gcv, anchors, labels):
    """GluonCV's targets for a (B, M, 6) label batch, one image at a time."""
    generator = gcv_generator(gcv)
    outs = [generator(anchors, None, mx.nd.array(lab[None, :, :4]), mx.nd.array(lab[None, :, 4:5]))
            for lab in labels]
    return [np.concatenate([o[k].asnumpy() for o in outs]) for k in range(3)]


def assert_targets_equal(reference, ours):
    """Class targets identical, box targets within 1e-5, masks equal.

    Where GluonCV matched an anchor to a padding row (its box target is not finite), ours is a negative
    with zero box target and zero mask, as documented in gluon_ssd.train.target.
    """
    ref_cls, ref_box, ref_mask = reference
    cls, box, mask = ours
    np.testing.assert_array_equal(cls, ref_cls)
    broken = ~np.isfinite(ref_box).all(axis=-1)
    assert (ref_cls[broken] == 0).all()
    assert (box[broken] == 0).all() and (mask[broken] == 0).all()
    np.testing.assert_allclose(box[~broken], ref_box[~broken], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(mask[~broken], ref_mask[~broken])


@pytest.mark.parametrize("name", list(MODELS))
def test_target_generator_matches_gluoncv(gcv, gcv_anchors, name):
    anchors = gcv_anchors(name)
    rng = np.random.default_rng(sum(map(ord, name)))
    ours = SSDTargetGenerator(negative_mining_ratio=-1)  # every unmatched anchor a negative (as gluon_ssd trains)
    cases = [(1, 1), (3, 3), (6, 4), (12, 12), (25, 20), (40, 40), (5, 0)]
    for count, valid in cases:
        labels = random_ground_truth(rng, anchors, MODELS[name], count, valid)[None]
        reference = reference_targets(gcv, anchors, labels)
        out = ours(anchors, None, mx.nd.array(labels[:, :, :4]), mx.nd.array(labels[:, :, 4:5]))
        assert_targets_equal(reference, [o.asnumpy() for o in out])
        assert (reference[0] > 0).sum() >= valid > 0 or valid == 0


def test_batch_targets_equal_per_image_and_gluoncv(gcv, gcv_anchors):
    name = "ssd_512_mobilenet1.0_voc"
    anchors = gcv_anchors(name)
    rng = np.random.default_rng(3)
    counts = [0, 1, 7, 15, 2, 9]  # padded to 15 rows; the first image has no object at all
    labels = np.stack([random_ground_truth(rng, anchors, 512, 15, n) for n in counts])
    cls, box = batch_targets(anchors, labels)
    cls, box = cls.asnumpy(), box.asnumpy()
    generator = SSDTargetGenerator(negative_mining_ratio=-1)
    for i, n in enumerate(counts):
        # Per image, with only its own rows (no padding at all) and with the batch's padding.
        for rows in (labels[i:i + 1, :max(n, 1)], labels[i:i + 1]):
            one = generator(anchors, None, mx.nd.array(rows[:, :, :4]), mx.nd.array(rows[:, :, 4:5]))
            np.testing.assert_array_equal(cls[i], one[0].asnumpy()[0])
            np.testing.assert_array_equal(box[i], one[1].asnumpy()[0])
    reference = reference_targets(gcv, anchors, labels)
    mask = np.repeat((cls > 0)[..., None], 4, axis=-1).astype(np.float32)
    assert_targets_equal(reference, [cls, box, mask])
    assert (cls[0] == 0).all() and (box[0] == 0).all()


def test_batch_targets_large_batch_equals_per_image(gcv_anchors):
    """B x M x N past 2**24 (float32 stops counting exactly there): every image still matches alone."""
    anchors = gcv_anchors("ssd_512_vgg16_atrous_voc")
    rng = np.random.default_rng(4)
    counts = [3, 0, 10, 20, 5, 1, 40, 90]
    labels = np.stack([random_ground_truth(rng, anchors, 512, 90, n) for n in counts])
    assert labels.shape[0] * labels.shape[1] * anchors.shape[1] > 2**24
    cls, box = (x.asnumpy() for x in batch_targets(anchors, labels))
    generator = SSDTargetGenerator(negative_mining_ratio=-1)
    for i in (0, 6, 7):
        one = generator(anchors, None, mx.nd.array(labels[i:i + 1, :, :4]), mx.nd.array(labels[i:i + 1, :, 4:5]))
        np.testing.assert_array_equal(cls[i], one[0].asnumpy()[0])
        np.testing.assert_array_equal(box[i], one[1].asnumpy()[0])


def test_batch_targets_inputs(gcv_anchors):
    anchors = gcv_anchors("ssd_512_mobilenet1.0_voc")
    cls, box = batch_targets(anchors, np.zeros((2, 0, 6), dtype=np.float32))
    assert cls.shape == (2, 6132) and box.shape == (2, 6132, 4)
    assert cls.asnumpy().sum() == 0 and box.asnumpy().sum() == 0
    with pytest.raises(ValueError, match=r"\(B, M, 5\+\)"):
        batch_targets(anchors, np.zeros((2, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="negative_mining_ratio=3 the generator mines hard negatives"):
        SSDTargetGenerator()(anchors, None, mx.nd.zeros((1, 1, 4)), mx.nd.zeros((1, 1, 1)))


def test_matching_hand_worked():
    """Three anchors, two ground truths; IoUs chosen by hand (rows: ground truths)."""
    ious = mx.nd.array([[[0.6, 0.6, 0.2, 0.0],    # gt 0: tied best anchors 0 and 1
                         [0.7, 0.1, 0.0, 0.55]]])  # gt 1: best anchor 0, also anchor 3 above 0.5
    # Bipartite: (anchor 0, gt 1) at 0.7 first, then gt 0 takes anchor 1 (0.6; anchor 0 is gone).
    # Anchor 3: best gt 1 with 0.55 >= 0.5. Anchor 2: 0.2 < 0.5 and not gt 0's best: negative.
    np.testing.assert_array_equal(match_anchors(ious, 0.5).asnumpy(), [[1, 0, -1, 1]])
    # Equal IoUs go to the lower anchor index first, then the lower ground truth.
    ious = mx.nd.array([[[0.5, 0.5], [0.5, 0.5]]])
    np.testing.assert_array_equal(match_anchors(ious, 0.9).asnumpy(), [[0, 1]])
    # An anchor tied with its ground truth's best IoU is kept even below the threshold.
    ious = mx.nd.array([[[0.3, 0.3, 0.1]]])
    np.testing.assert_array_equal(match_anchors(ious, 0.5).asnumpy(), [[0, 0, -1]])


def random_predictions(rng, batch, anchors, classes):
    cls_preds = mx.nd.array(rng.normal(0, 2, (batch, anchors, classes + 1)).astype(np.float32))
    box_preds = mx.nd.array(rng.normal(0, 1, (batch, anchors, 4)).astype(np.float32))
    return cls_preds, box_preds


def losses_and_grads(loss_fn, cls_preds, box_preds, cls_targets, box_targets, **kwargs):
    for x in cls_preds + box_preds:
        x.attach_grad()
    with autograd.record():
        out = loss_fn(cls_preds, box_preds, cls_targets, box_targets, **kwargs)
    autograd.backward(out[0])
    values = [[v.asnumpy() for v in per_device] for per_device in out]
    grads = [x.grad.asnumpy() for x in cls_preds + box_preds]
    return values, grads


def test_loss_matches_gluoncv_across_devices(gcv, gcv_anchors):
    anchors = gcv_anchors("ssd_512_mobilenet1.0_voc")
    rng = np.random.default_rng(5)
    labels = np.stack([random_ground_truth(rng, anchors, 512, 8, n) for n in (3, 0, 8, 5)])
    cls_t, box_t = batch_targets(anchors, labels)
    cls_p, box_p = random_predictions(rng, 4, anchors.shape[1], 20)
    split = [slice(0, 1), slice(1, 4)]  # two "devices" with unequal shares
    args = [[x[s] for s in split] for x in (cls_p, box_p, cls_t, box_t)]
    ref_values, ref_grads = losses_and_grads(gcv.loss.SSDMultiBoxLoss(), *[[a.copy() for a in x] for x in args])
    values, grads = losses_and_grads(SSDMultiBoxLoss(), *[[a.copy() for a in x] for x in args])
    for ref, ours in zip(ref_values, values):
        for r, o in zip(ref, ours):
            np.testing.assert_allclose(o, r, rtol=1e-5, atol=1e-5)
    for r, o in zip(ref_grads, grads):
        np.testing.assert_allclose(o, r, rtol=1e-5, atol=1e-6)

    # The global positive count of distributed training replaces the local one.
    num_pos = float((cls_t.asnumpy() > 0).sum())
    doubled, _ = losses_and_grads(SSDMultiBoxLoss(), *[[a.copy() for a in x] for x in args],
                                  num_positives=2 * num_pos)
    for ref, ours in zip(values, doubled):
        for r, o in zip(ref, ours):
            np.testing.assert_allclose(o, r / 2, rtol=1e-5, atol=1e-7)


def test_loss_ties_and_no_positive(gcv):
    # All-zero predictions: every cross-entropy is equal, so the hard-negative cut is decided by the
    # sort order alone; it must be GluonCV's.
    cls_t = np.zeros((2, 400), dtype=np.float32)
    cls_t[0, [3, 50, 100]] = [2, 1, 4]
    cls_t[1, 399] = 1
    args = [mx.nd.zeros((2, 400, 5)), mx.nd.zeros((2, 400, 4)), mx.nd.array(cls_t), mx.nd.ones((2, 400, 4))]
    reference = gcv.loss.SSDMultiBoxLoss()(*args)
    ours = SSDMultiBoxLoss()(*args)
    for r, o in zip(reference, ours):
        np.testing.assert_allclose(o[0].asnumpy(), r[0].asnumpy(), rtol=1e-6)
    # cls loss of image 0 = (3 positives + 9 hard negatives) * log(5) / 4 positives overall.
    np.testing.assert_allclose(ours[1][0].asnumpy()[0], 12 * np.log(5) / 4, rtol=1e-5)

    # No positive anywhere: zero losses that still let backward run.
    cls_p, box_p = mx.nd.ones((2, 50, 3)), mx.nd.ones((2, 50, 4))
    cls_p.attach_grad()
    with autograd.record():
        total, cls_l, box_l = SSDMultiBoxLoss()(cls_p, box_p, mx.nd.zeros((2, 50)), mx.nd.zeros((2, 50, 4)))
    autograd.backward(total)
    assert total[0].shape == (2,) and total[0].asnumpy().sum() == 0
    assert cls_p.grad.asnumpy().sum() == 0
    with pytest.raises(ValueError, match="one array per device"):
        SSDMultiBoxLoss()([cls_p], [box_p, box_p], [mx.nd.zeros((2, 50))], [mx.nd.zeros((2, 50, 4))])
