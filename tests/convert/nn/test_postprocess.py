"""convert.box_nms / convert.detect against MXNet's own contrib.box_nms (the operator GluonCV calls)."""
import mxnet as mx
import numpy as np
import pytest
import torch

from convert.nn.postprocess import box_nms, detect, stable_topk


def _random_rows(rng, batch, num, classes, ties=True):
    """(batch, num, 6) [id, score, x1, y1, x2, y2] with many exact score ties, invalid rows, duplicate
    and degenerate boxes, and coordinates on a coarse grid so that IoUs repeat."""
    ids = rng.integers(0, classes, size=(batch, num)).astype(np.float32)
    scores = (rng.integers(0, 12, size=(batch, num)) / 10.0 if ties else rng.random((batch, num))).astype(np.float32)
    scores[rng.random((batch, num)) < 0.15] = 0.01          # exactly the threshold: not a candidate
    ids[scores <= 0.01] = -1
    xy = rng.integers(0, 40, size=(batch, num, 2)).astype(np.float32)
    wh = rng.integers(-3, 25, size=(batch, num, 2)).astype(np.float32)   # some negative: zero area
    boxes = np.concatenate([xy, xy + wh], axis=2)
    dup = rng.random((batch, num)) < 0.2                     # exact duplicates of the previous box
    boxes[:, 1:][dup[:, 1:]] = boxes[:, :-1][dup[:, 1:]]
    return np.concatenate([ids[..., None], scores[..., None], boxes], axis=2).astype(np.float32)


def _mxnet(data, **kw):
    return mx.nd.contrib.box_nms(mx.nd.array(data), coord_start=2, score_index=1, **kw).asnumpy()


@pytest.mark.parametrize("seed", range(40))
def test_box_nms_equals_mxnet_on_ties(seed):
    rng = np.random.default_rng(seed)
    batch, num = int(rng.integers(1, 4)), int(rng.integers(1, 160))
    data = _random_rows(rng, batch, num, classes=int(rng.integers(1, 5)), ties=seed % 4 != 3)
    for kw in (dict(overlap_thresh=0.45, valid_thresh=0.01, topk=400, id_index=0, force_suppress=False),
               dict(overlap_thresh=0.3, valid_thresh=0.01, topk=int(rng.integers(1, 40)), id_index=0,
                    force_suppress=False),
               dict(overlap_thresh=0.5, valid_thresh=0.2, topk=-1, id_index=0, force_suppress=True),
               dict(overlap_thresh=0.6, valid_thresh=0.0, topk=-1, id_index=-1, force_suppress=False)):
        expected = _mxnet(data, **kw)
        got = box_nms(torch.from_numpy(data), **kw).numpy()
        np.testing.assert_array_equal(got, expected, err_msg=f"seed {seed}, {kw}")


def test_box_nms_edge_cases():
    rng = np.random.default_rng(0)
    data = _random_rows(rng, 2, 30, classes=3)
    none_valid = data.copy()
    none_valid[:, :, 1] = 0.0
    kw = dict(overlap_thresh=0.45, valid_thresh=0.01, topk=400, id_index=0, force_suppress=False)
    for case in (none_valid, data[:, :1], np.repeat(data[:, :1], 30, axis=1)):
        np.testing.assert_array_equal(box_nms(torch.from_numpy(case), **kw).numpy(), _mxnet(case, **kw))
    # topk 0 returns the input as it is
    zero = dict(kw, topk=0)
    np.testing.assert_array_equal(box_nms(torch.from_numpy(data), **zero).numpy(), _mxnet(data, **zero))


def test_stable_topk_is_a_stable_descending_sort():
    rng = np.random.default_rng(1)
    keys = rng.integers(0, 5, size=(3, 1000)).astype(np.float32)
    keys[0, :700] = -np.inf
    for k in (1, 7, 400, 1000):
        values, index = stable_topk(torch.from_numpy(keys), k)
        order = np.argsort(-keys, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(index.numpy(), order)
        np.testing.assert_array_equal(values.numpy(), np.take_along_axis(keys, order, 1))


def _separated_logits(rng, batch, num, classes, patterns=8):
    """Rows drawn from a few logit patterns, some with equal logits inside a row: the scores tie
    exactly where the patterns repeat (in both frameworks: same row, same arithmetic) and are far
    apart otherwise, so that the two frameworks' last-bit softmax differences cannot reorder them."""
    while True:
        table = rng.normal(0, 2, size=(patterns, classes + 1)).astype(np.float32)
        table[::2, 2] = table[::2, 1]                        # equal scores of two classes in a row
        scores = np.exp(table - table.max(1, keepdims=True))
        scores = np.unique((scores / scores.sum(1, keepdims=True))[:, 1:])
        if np.all(np.diff(scores) > 1e-5) and np.all(np.abs(scores - 0.01) > 1e-5):
            return table[rng.integers(0, patterns, size=(batch, num))]


@pytest.mark.parametrize("seed", range(6))
def test_detect_equals_gluon_postprocessing(seed):
    """The whole post-processing (decode, softmax, threshold, class-major list, box_nms, cut) against
    gluon_ssd's, on random raw outputs with exact score ties. The ids and their order are exact; scores
    and boxes agree to the last bits of MXNet's oneDNN softmax and box_decode arithmetic."""
    from gluon_ssd.nn.ssd import SSD as GluonSSD

    rng = np.random.default_rng(seed)
    batch, num, classes = 2, 300, 4
    logits = _separated_logits(rng, batch, num, classes)
    offsets = (rng.normal(0, 0.5, size=(batch, num, 4)) * (rng.random((batch, num, 1)) > 0.3)).astype(np.float32)
    centers = rng.integers(0, 60, size=(1, num, 2)).astype(np.float32)
    sizes = rng.integers(4, 40, size=(1, num, 2)).astype(np.float32)
    anchors = np.concatenate([centers, sizes], axis=2)
    settings = [(0.45, 400, 100), (0.3, 50, 20), (0.6, -1, -1), (0.0, 400, 100), (0.45, 0, 30), (0.45, 400, 100)][seed]
    gluon = GluonSSD.__new__(GluonSSD)  # only its post-processing, on given arrays
    gluon._stds = (0.1, 0.1, 0.2, 0.2)
    gluon.classes = tuple("abcd")
    gluon.nms_thresh, gluon.nms_topk, gluon.post_nms = settings
    ids, scores, boxes = (o.asnumpy() for o in gluon._detect(mx.nd, mx.nd.array(logits), mx.nd.array(offsets),
                                                              mx.nd.array(anchors)))
    assert (ids >= 0).sum() > 10
    got = [t.numpy() for t in detect(torch.from_numpy(logits), torch.from_numpy(offsets),
                                     torch.from_numpy(anchors), [0.1, 0.1, 0.2, 0.2], *settings)]
    assert [g.shape for g in got] == [ids.shape, scores.shape, boxes.shape], settings
    np.testing.assert_array_equal(got[0], ids, err_msg=f"ids with {settings}")
    np.testing.assert_allclose(got[1], scores, rtol=0, atol=1e-6, err_msg=f"scores with {settings}")
    np.testing.assert_allclose(got[2], boxes, rtol=1e-6, atol=1e-5, err_msg=f"boxes with {settings}")
