"""convert.train.target (the torch twin of SSD target generation) against gluon_ssd's MXNet targets and GluonCV's.

References: :func:`gluon_ssd.train.target.batch_targets` (the same matches; box targets to the bit on the CPU
with convert._cpu.kernels, within 2 ulp without),
GluonCV's ``SSDTargetGenerator(negative_mining_ratio=-1)`` on batches without padding, MXNet's
``contrib.box_iou`` for the IoU (bit for bit), numpy's argmax for the first-maximum rule.
"""
from __future__ import annotations

import mxnet as mx
import numpy as np
import pytest
import torch
from mxnet import autograd

import gluon_ssd
from convert._cpu import kernels as cpu_kernels
from convert.boxes import box_iou, center_to_corner
from convert.train.target import batch_targets
from gluon_ssd.data import VOCDetection
from gluon_ssd.train import target as mx_target
from tests.gluon_ssd.train.test_target_loss import gcv_generator, random_ground_truth

NAME, SIZE = "ssd_300_vgg16_atrous_voc", 300


@pytest.fixture(scope="module")
def anchors():
    """(MXNet (1, N, 4), torch (1, N, 4)) anchors of a gluon_ssd model, from a training-mode forward."""
    net = gluon_ssd.get_model(NAME, pretrained_base=False)
    with autograd.train_mode():
        _, _, mx_anchors = net(mx.nd.zeros((1, 3, SIZE, SIZE)))
    return mx_anchors, torch.from_numpy(mx_anchors.asnumpy())


def assert_same_targets(ours, reference, exact_sizes=None):
    """Class targets and box center codes equal to the bit; the size codes too where both sides took the C
    library's logf (MXNet's CPU log; the twin's on the CPU through convert._cpu.kernels), else within 2 ulp (the
    correctly rounded log against glibc's logf: one ulp, then the division by the std)."""
    if exact_sizes is None:
        exact_sizes = cpu_kernels.library() is not None
    cls, box = (x.numpy() for x in ours)
    ref_cls, ref_box = (np.asarray(x) for x in reference)
    ref_box = ref_box.astype(np.float32)
    assert cls.dtype == np.int64 and box.dtype == np.float32
    np.testing.assert_array_equal(cls, ref_cls)
    np.testing.assert_array_equal(box[..., :2].view(np.int32), ref_box[..., :2].view(np.int32))
    if exact_sizes:
        np.testing.assert_array_equal(box[..., 2:].view(np.int32), ref_box[..., 2:].view(np.int32))
    else:
        np.testing.assert_array_max_ulp(box[..., 2:], ref_box[..., 2:], maxulp=2)


def mxnet_targets(mx_anchors, labels):
    return [x.asnumpy() for x in mx_target.batch_targets(mx_anchors, labels)]


def anchor_corners(anchors_np, index):
    cx, cy, w, h = anchors_np[index]
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def test_random_batches_equal_mxnet(anchors):
    mx_anchors, t_anchors = anchors
    rng = np.random.default_rng(0)
    for counts in ([0, 1, 7, 15, 2, 9], [30, 12, 0, 25], [3]):
        rows = max(counts) + 2  # padding rows in every image; all of them in the empty ones
        labels = np.stack([random_ground_truth(rng, mx_anchors, SIZE, rows, n) for n in counts])
        ours = batch_targets(t_anchors, labels)
        assert_same_targets(ours, mxnet_targets(mx_anchors, labels))
        assert (ours[0][np.array(counts) == 0] == 0).all()


def test_ties_and_edge_cases_equal_mxnet(anchors):
    mx_anchors, t_anchors = anchors
    a = mx_anchors.asnumpy().reshape(-1, 4)
    exact = anchor_corners(a, 100)  # IoU 1 with anchor 100
    # Anchors 4 and 8 are the same 30 px square at neighbouring positions, with integer corners: a box
    # spanning both has exactly equal IoUs with them.
    x0, y0, x1, y1 = anchor_corners(a, 4)
    between = [x0, y0, x1 + (a[8, 0] - a[4, 0]), y1]
    boxes = [
        exact + [3], exact + [5], exact + [3],  # three identical ground truths for one best anchor
        between + [1],
        anchor_corners(a, 5000) + [2],
        [0, 0, SIZE, SIZE] + [4],
        [100, 100, 150, 150] + [6], [100, 100, 150, 150] + [7],
        [120.25, 80.5, 120.75, 81.0] + [8],  # tiny: below any threshold, matched by bipartite only
        [40, 40, 40, 60] + [9],  # zero width: IoU 0 everywhere, never matched
        [60, 60, 50, 70] + [10],  # negative width
        [1000, 1000, 1010, 1010] + [11],  # outside the image: no overlap with any anchor
    ]
    crowd = [[10 * i, 10 * j, 10 * i + 60, 10 * j + 60, (i + j) % 20] for i in range(5) for j in range(5)]
    same = [[30, 30, 90, 90, k % 20] for k in range(40)]  # 40 copies: their K best anchors include ties
    images = [boxes, crowd, same, [], boxes[8:]]
    rows = max(len(im) for im in images)
    labels = np.full((len(images), rows, 6), -1, dtype=np.float32)
    for i, im in enumerate(images):
        if im:
            labels[i, :len(im), :5] = im
            labels[i, :len(im), 5] = 0
    ours = batch_targets(t_anchors, labels)
    assert_same_targets(ours, mxnet_targets(mx_anchors, labels))
    iou = box_iou(torch.tensor([between]), center_to_corner(t_anchors[0, [4, 8]])).numpy()
    assert iou[0, 0] == iou[0, 1] > 0
    cls = ours[0].numpy()
    assert cls[0, 100] == 4  # equal IoUs: the first of the duplicates takes the anchor
    assert (cls[0] == 6).any() and (cls[2] > 0).sum() >= 40 and not cls[3].any()
    assert (cls[4] == 9).any()  # the tiny box gets its best anchor
    assert not np.isin(cls[[0, 4]], [10, 11, 12]).any()  # the boxes without overlap match nothing

    # Every image empty (no ground truth can match: no bipartite round at all), and M = 0.
    empty = np.full((3, 4, 6), -1, dtype=np.float32)
    assert_same_targets(batch_targets(t_anchors, empty), mxnet_targets(mx_anchors, empty))
    cls, box = batch_targets(t_anchors, np.zeros((2, 0, 6), dtype=np.float32))
    assert cls.shape == (2, a.shape[0]) and box.shape == (2, a.shape[0], 4)
    assert cls.dtype == torch.int64 and box.dtype == torch.float32
    assert not cls.any() and not box.any()


def test_real_labels_equal_mxnet(anchors, data_dir):
    """The 50 annotated VOC sample images, boxes scaled to the 300 px input, padded to one batch."""
    mx_anchors, t_anchors = anchors
    ds = VOCDetection(data_dir / "voc_sample" / "VOCdevkit", splits=((2007, "test"), (2012, "test")))
    labels = np.full((len(ds), max(len(ds.label(i)) for i in range(len(ds))), 6), -1, dtype=np.float32)
    for i in range(len(ds)):
        lab = ds.label(i)
        width, height = ds.image_size(i)
        lab[:, [0, 2]] *= np.float32(SIZE / width)
        lab[:, [1, 3]] *= np.float32(SIZE / height)
        labels[i, :len(lab)] = lab
    assert_same_targets(batch_targets(t_anchors, labels), mxnet_targets(mx_anchors, labels))


def test_equal_gluoncv_without_padding(gcv, anchors):
    """GluonCV's own generator, one image at a time with only its real rows (GluonCV writes -inf box
    targets for anchors it matches to padding; gluon_ssd and the twin make those negatives)."""
    mx_anchors, t_anchors = anchors
    generator = gcv_generator(gcv)
    rng = np.random.default_rng(7)
    for count in (1, 4, 12):
        labels = random_ground_truth(rng, mx_anchors, SIZE, count, count)[None]
        ref_cls, ref_box, ref_mask = (x.asnumpy() for x in generator(
            mx_anchors, None, mx.nd.array(labels[:, :, :4]), mx.nd.array(labels[:, :, 4:5])))
        ours = batch_targets(t_anchors, labels)
        assert_same_targets(ours, (ref_cls.astype(np.int64), ref_box))
        np.testing.assert_array_equal(ref_mask, np.repeat((ref_cls > 0)[..., None], 4, axis=-1))


def test_inputs(anchors):
    mx_anchors, t_anchors = anchors
    rng = np.random.default_rng(2)
    labels = np.stack([random_ground_truth(rng, mx_anchors, SIZE, 6, n) for n in (4, 6)])
    reference = batch_targets(t_anchors, labels)
    # (N, 4) anchors, float64 numpy labels and torch labels give the same targets.
    for args in ((t_anchors[0], labels), (t_anchors, labels.astype(np.float64)),
                 (t_anchors, torch.from_numpy(labels))):
        for x, y in zip(batch_targets(*args), reference):
            assert torch.equal(x, y)
    with pytest.raises(ValueError, match=r"labels must be \(B, M, 5\+\)"):
        batch_targets(t_anchors, np.zeros((2, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=r"labels must be \(B, M, 5\+\)"):
        batch_targets(t_anchors, np.zeros((2, 3, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="stds must have 4 values"):
        batch_targets(t_anchors, labels, stds=(0.1, 0.2))
    with pytest.raises(ValueError, match=r"anchors must be \(1, N, 4\) or \(N, 4\)"):
        batch_targets(t_anchors.reshape(-1, 2), labels)


def test_box_iou_equals_mxnet():
    """Random, integer, touching, equal, zero- and negative-size boxes and -1 rows, in both argument orders."""
    rng = np.random.default_rng(3)

    def boxes(n):
        x, y = rng.uniform(-20, 300, (2, n))
        w, h = rng.uniform(-5, 200, (2, n))
        b = np.stack([x, y, x + w, y + h], 1).astype(np.float32)
        b[: n // 10] = -1
        b[n // 10: n // 5] = np.round(b[n // 10: n // 5])
        b[n // 5: n // 4, 2] = b[n // 5: n // 4, 0]
        return b

    a, b = boxes(200), boxes(1000)
    b[:200] = a
    b[200:400, 0] = a[:, 2]  # touching on the left edge
    for lhs, rhs in ((a, b), (b, a)):
        ref = mx.nd.contrib.box_iou(mx.nd.array(lhs[None]), mx.nd.array(rhs)).asnumpy()
        ours = box_iou(torch.from_numpy(lhs[None]), torch.from_numpy(rhs)).numpy()
        np.testing.assert_array_equal(ours.view(np.int32), ref.view(np.int32))
    assert 0 < (ref > 0).mean() < 1 and (ref == 1).any()


def test_torch_max_takes_the_first_maximum():
    """The matching relies on first-maximum indices along both axes of (B, M, N) IoUs with many ties."""
    rng = np.random.default_rng(5)
    values = rng.integers(0, 3, (3, 40, 700)).astype(np.float32) / 2
    t = torch.from_numpy(values)
    for dim in (1, 2):
        np.testing.assert_array_equal(t.max(dim=dim).indices.numpy(), values.argmax(axis=dim))
        np.testing.assert_array_equal(t.argmax(dim=dim).numpy(), values.argmax(axis=dim))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu(anchors):
    mx_anchors, t_anchors = anchors
    rng = np.random.default_rng(6)
    labels = np.stack([random_ground_truth(rng, mx_anchors, SIZE, 30, n) for n in (0, 5, 30, 17)])
    cpu = batch_targets(t_anchors, labels)
    cuda = batch_targets(t_anchors.cuda(), torch.from_numpy(labels))
    assert all(x.device.type == "cuda" for x in cuda)
    assert_same_targets([x.cpu() for x in cuda], [x.numpy() for x in cpu], exact_sizes=False)


def test_log_is_mxnets_to_the_bit():
    """The size codes' log: the kernel's logf is MXNet's CPU log bit for bit (a million values over 2^-30..2^30,
    and the special values); the fallback (GPU, no compiler) is the correctly rounded log, at most one ulp off."""
    from convert.train.target import _log_as_mxnet

    rng = np.random.default_rng(8)
    x = np.exp2(rng.uniform(-30, 30, 1_000_000)).astype(np.float32)
    x = np.concatenate([x, np.float32([1, 0, -0.0, -1, np.inf, np.nan, 1e-45, 3.4e38, 1 + 2 ** -23])])
    mx_log = mx.nd.log(mx.nd.array(x)).asnumpy()
    fallback = torch.log(torch.from_numpy(x).double()).float().numpy()
    finite = np.isfinite(mx_log)
    np.testing.assert_array_max_ulp(fallback[finite], mx_log[finite], maxulp=1)
    assert (fallback[finite].view(np.int32) != mx_log[finite].view(np.int32)).any()  # why the kernel exists
    ours = _log_as_mxnet(torch.from_numpy(x)).numpy()
    if cpu_kernels.library() is None:
        pytest.skip("no C compiler: the fallback runs (checked above)")
    np.testing.assert_array_equal(ours.view(np.int32)[finite], mx_log.view(np.int32)[finite])
    np.testing.assert_array_equal(ours[~finite], mx_log[~finite])  # -inf for zeros, NaN for negatives and NaN


def test_targets_without_the_kernels_within_two_ulp(anchors, monkeypatch):
    mx_anchors, t_anchors = anchors
    rng = np.random.default_rng(9)
    labels = np.stack([random_ground_truth(rng, mx_anchors, SIZE, 20, n) for n in (4, 20, 11)])
    monkeypatch.setattr(cpu_kernels, "library", lambda: None)
    assert_same_targets(batch_targets(t_anchors, labels), mxnet_targets(mx_anchors, labels), exact_sizes=False)
