"""gluon_ssd.boxes and its torch twin convert.boxes against GluonCV's coder, MXNet's IoU and NMS operators,
and hand-worked values."""
from __future__ import annotations

import mxnet as mx
import numpy as np
import pytest
import torch

from convert import boxes as tboxes
from gluon_ssd import boxes
from gluon_ssd.specs import BOX_STDS


def _random_boxes(rng, n):
    """(n, 4) float32 corner boxes with positive sides in a 300-pixel image."""
    lo = rng.uniform(0, 250, (n, 2))
    return np.concatenate([lo, lo + rng.uniform(1, 120, (n, 2))], axis=1).astype(np.float32)


def test_corner_center_hand_worked():
    corner = np.array([[10.0, 20.0, 50.0, 40.0]], dtype=np.float32)
    center = boxes.corner_to_center(corner)
    np.testing.assert_array_equal(center, [[30.0, 30.0, 40.0, 20.0]])
    np.testing.assert_array_equal(boxes.center_to_corner(center), corner)
    np.testing.assert_array_equal(tboxes.center_to_corner(torch.from_numpy(center)).numpy(), corner)
    assert [float(p) for p in tboxes.center_planes(torch.from_numpy(corner)[0])] == [30.0, 30.0, 40.0, 20.0]


def test_coder_equals_gluoncv(gcv):
    """Encode and decode to the bit of GluonCV's NormalizedBoxCenterEncoder/Decoder (float32)."""
    rng = np.random.default_rng(0)
    gt, anchors = _random_boxes(rng, 64), _random_boxes(rng, 64)
    coder = boxes.BoxCoder()
    assert coder.stds == BOX_STDS == (0.1, 0.1, 0.2, 0.2)
    codes = coder.encode(gt, anchors)
    encoder = gcv.nn.coder.NormalizedBoxCenterEncoder(stds=BOX_STDS)
    samples = mx.nd.ones((1, 64))
    matches = mx.nd.array(np.arange(64)[None])
    ref, _ = encoder(samples, matches, mx.nd.array(anchors[None]), mx.nd.array(gt[None]))
    # The width/height codes take a log: MXNet's (the C library's logf) and numpy's may differ in the last bit.
    np.testing.assert_array_equal(codes[:, :2], ref.asnumpy()[0, :, :2])
    np.testing.assert_allclose(codes[:, 2:], ref.asnumpy()[0, :, 2:], rtol=2e-6)
    t_codes = tboxes.BoxCoder().encode(torch.from_numpy(gt), torch.from_numpy(anchors))
    np.testing.assert_allclose(t_codes.numpy(), codes, rtol=2e-6, atol=1e-7)

    center = boxes.corner_to_center(anchors)
    decoder = gcv.nn.coder.NormalizedBoxCenterDecoder(stds=BOX_STDS)
    ref = decoder(mx.nd.array(codes[None]), mx.nd.array(center[None])).asnumpy()[0]
    decoded = boxes.BoxCoder().decode(codes, center)
    np.testing.assert_allclose(decoded, ref, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(decoded, gt, atol=1e-3)  # the round trip
    box_decode = mx.nd.contrib.box_decode(mx.nd.array(codes[None]), mx.nd.array(center[None]), *BOX_STDS,
                                          format="center").asnumpy()[0]
    # Same operations in the same order; exp (expf in MXNet) may differ in the last bit.
    np.testing.assert_allclose(decoded, box_decode, rtol=2e-6)
    t_decoded = tboxes.decode(torch.from_numpy(codes[None]), torch.from_numpy(center[None]), list(BOX_STDS))
    np.testing.assert_allclose(t_decoded.numpy()[0], box_decode, rtol=2e-6)
    with pytest.raises(ValueError, match="4 values"):
        boxes.BoxCoder((0.1, 0.2))


def test_box_iou_equals_mxnet_and_twin():
    rng = np.random.default_rng(1)
    a, b = _random_boxes(rng, 30), _random_boxes(rng, 20)
    b[:3] = b[:3, [2, 3, 0, 1]]  # negative sides: area 0
    ref = mx.nd.contrib.box_iou(mx.nd.array(a), mx.nd.array(b)).asnumpy()
    np.testing.assert_array_equal(boxes.box_iou(a, b), ref)
    np.testing.assert_array_equal(tboxes.box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy(), ref)
    np.testing.assert_array_equal(boxes.box_iou(a, b), boxes.box_iou(b, a).T)


def test_nms_iou_equals_twin_and_box_iou_off_empty_pairs():
    rng = np.random.default_rng(2)
    a = _random_boxes(rng, 25)
    a[5] = a[6] = (4.0, 4.0, 4.0, 4.0)  # two empty boxes: 0/0
    ours = boxes.nms_iou(a, a)
    np.testing.assert_array_equal(tboxes.nms_iou(torch.from_numpy(a[None])).numpy()[0], ours)
    assert np.isnan(ours[5, 6]) and boxes.box_iou(a, a)[5, 6] == 0
    keep = ~np.isnan(ours)
    np.testing.assert_array_equal(ours[keep], boxes.box_iou(a, a)[keep])


def test_iou_voc_equals_gluoncv(gcv):
    rng = np.random.default_rng(3)
    a, b = np.round(_random_boxes(rng, 12)), np.round(_random_boxes(rng, 9))
    np.testing.assert_array_equal(boxes.iou_voc(a, b), gcv.utils.bbox.bbox_iou(a, b, offset=1))
