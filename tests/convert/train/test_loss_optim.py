"""convert.train.optim and .loss against MXNet: MXNetSGD vs gluon.Trainer('sgd'), SSDLoss vs SSDMultiBoxLoss.

References: MXNet 1.9's optimizer kernels run by gluon.Trainer, and gluon_ssd.train.loss (itself checked
against GluonCV in test_train_target_loss.py) with MXNet autograd for the gradients.
"""
from __future__ import annotations

import copy
import io

import mxnet as mx
import numpy as np
import pytest
import torch
from mxnet import autograd, gluon

from convert.train.loss import SSDLoss, train_step
from convert.train.optim import MXNetSGD
from gluon_ssd.train.loss import SSDMultiBoxLoss

SHAPES = [(8, 3, 3, 3), (8,), (16, 8), (16,)]   # conv weight, its bias, dense weight, a BatchNorm gamma
LRS = [0.1, 0.05, 0.2, 0.01, 0.15]              # a new learning rate at every step
WD = 5e-4


# -- optimizer ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sgd_data():
    rng = np.random.default_rng(0)
    weights = [rng.normal(0, 1, s).astype(np.float32) for s in SHAPES]
    grads = [[rng.normal(0, 1, s).astype(np.float32) for s in SHAPES] for _ in LRS]
    return weights, grads


def trainer_run(weights, grads, momentum):
    """gluon.Trainer('sgd') on one CPU: the weights after each step."""
    params = []
    for i, w in enumerate(weights):
        p = gluon.Parameter(f"p{i}", shape=w.shape)
        p.initialize(mx.init.Zero(), ctx=mx.cpu())
        p.set_data(mx.nd.array(w))
        params.append(p)
    trainer = gluon.Trainer(params, "sgd", {"learning_rate": LRS[0], "momentum": momentum, "wd": WD})
    history = []
    for lr, step_grads in zip(LRS, grads):
        # Trainer.step refuses gradients not written by backward; d/dw sum(w * g) is g exactly.
        with autograd.record():
            total = mx.nd.add_n(*[(p.data() * mx.nd.array(g)).sum() for p, g in zip(params, step_grads)])
        total.backward()
        for p, g in zip(params, step_grads):
            np.testing.assert_array_equal(p.grad().asnumpy(), g)
        trainer.set_learning_rate(lr)
        trainer.step(1)
        history.append([p.data().asnumpy() for p in params])
    return history


def torch_run(optimizer, params, grads, lrs):
    history = []
    for lr, step_grads in zip(lrs, grads):
        for p, g in zip(params, step_grads):
            p.grad = torch.from_numpy(g.copy())
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        history.append([p.detach().numpy().copy() for p in params])
    return history


def torch_params(weights):
    return [torch.nn.Parameter(torch.from_numpy(w.copy())) for w in weights]


@pytest.mark.parametrize("momentum", [0.9, 0.0])
def test_sgd_matches_gluon_trainer(sgd_data, momentum):
    weights, grads = sgd_data
    reference = trainer_run(weights, grads, momentum)
    params = torch_params(weights)
    frozen = torch.nn.Parameter(torch.ones(3))  # no gradient: skipped, no state
    optimizer = MXNetSGD([*params, frozen], lr=LRS[0], momentum=momentum, wd=WD)
    ours = torch_run(optimizer, params, grads, LRS)
    # Bit-identical: MXNetSGD performs the kernel's float32 operations (momentum*mom - (lr*wd)*w -
    # (lr*rescale)*g, then w + mom) in the kernel's order, and every one is a correctly rounded IEEE
    # operation on both sides. A few-ulp tolerance (rtol 1e-6) would not do: the regrouped textbook form
    # mom*momentum - lr*(g + wd*w) already drifts by 1-2 ulps (2.4e-7 here) and would pass it.
    for step, (ref, out) in enumerate(zip(reference, ours)):
        for r, o in zip(ref, out):
            np.testing.assert_array_equal(o, r, err_msg=f"step {step}")
    assert torch.equal(frozen, torch.ones(3)) and frozen not in optimizer.state
    if momentum:
        assert set(optimizer.state) == set(params)
        assert all(set(optimizer.state[p]) == {"momentum"} for p in params)


@pytest.mark.parametrize("momentum", [0.9, 0.0])
def test_sgd_kernel_equals_the_foreach_path(monkeypatch, momentum):
    """The one-pass CPU kernel (convert._cpu.kernels.sgd_update) and the torch foreach path give the same bits,
    on tensors large enough to be split over the threads and in channels-last layout; the kernel declines
    what it does not handle (float64, layouts that differ)."""
    from convert._cpu import kernels as cpu_kernels

    if cpu_kernels.library() is None:
        pytest.skip("no C compiler: the foreach path is the only one")
    gen = torch.Generator().manual_seed(3)
    shapes = [(64, 32, 3, 3), (1000,), (37, 129)]

    def run(use_kernel):
        params = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]
        params[0].data = params[0].data.contiguous(memory_format=torch.channels_last)
        optimizer = MXNetSGD(params, lr=LRS[0], momentum=momentum, wd=WD)
        calls = []
        real = cpu_kernels.sgd_update

        def update(*args):
            calls.append(bool(use_kernel and real(*args)))
            return calls[-1]

        monkeypatch.setattr(cpu_kernels, "sgd_update", update)
        for lr in LRS:
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen).contiguous(
                    memory_format=torch.channels_last if p.dim() == 4 else torch.contiguous_format)
            optimizer.set_learning_rate(lr)
            optimizer.step()
        monkeypatch.setattr(cpu_kernels, "sgd_update", real)
        assert calls == [use_kernel] * len(LRS)  # the kernel did take every step (or none)
        return [p.detach().clone() for p in params]

    state = gen.get_state()
    kernel = run(True)
    gen.set_state(state)
    foreach = run(False)
    for a, b in zip(kernel, foreach):
        assert torch.equal(a, b)
    w = [torch.zeros(4, dtype=torch.float64)]
    assert not cpu_kernels.sgd_update(w, [torch.zeros(4, dtype=torch.float64)], None, 0.0, 0.1, 0.1)
    x = torch.zeros(2, 3, 4, 4)
    assert not cpu_kernels.sgd_update([x], [x.contiguous(memory_format=torch.channels_last)], None, 0.0, 0.1, 0.1)


def test_torch_sgd_differs_when_the_lr_changes(sgd_data):
    weights, grads = sgd_data
    reference = trainer_run(weights, grads, 0.9)[-1]
    params = torch_params(weights)
    torch_sgd = torch.optim.SGD(params, lr=LRS[0], momentum=0.9, weight_decay=WD)
    out = torch_run(torch_sgd, params, grads, LRS)[-1]
    # torch keeps sum(momentum^k * g) and scales it by today's lr; MXNet has scaled each past gradient
    # by the lr of its own step. With the lr jumping by 2-20x the weights part by O(lr * |g|) = O(0.1).
    assert max(np.abs(o - r).max() for o, r in zip(out, reference)) > 1e-2

    # Control: at a constant lr the two rules are the same algebra and agree up to rounding. The weights
    # are O(1), a float32 ulp is 1.2e-7 and five steps of regrouped rounding stay well inside 1e-5.
    params = torch_params(weights)
    constant = [LRS[0]] * len(LRS)
    torch_sgd = torch.optim.SGD(params, lr=LRS[0], momentum=0.9, weight_decay=WD)
    ours = MXNetSGD(torch_params(weights), lr=LRS[0], momentum=0.9, wd=WD)
    out = torch_run(torch_sgd, params, grads, constant)[-1]
    ref = torch_run(ours, list(ours.param_groups[0]["params"]), grads, constant)[-1]
    for o, r in zip(out, ref):
        np.testing.assert_allclose(o, r, rtol=1e-5, atol=1e-5)


def test_sgd_state_dict_round_trip(sgd_data):
    weights, grads = sgd_data
    params = torch_params(weights)
    optimizer = MXNetSGD(params, lr=LRS[0], momentum=0.9, wd=WD)
    torch_run(optimizer, params, grads[:2], LRS[:2])

    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    buffer.seek(0)
    resumed_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    resumed = MXNetSGD(resumed_params, lr=1.0)  # hyper-parameters come from the state dict
    resumed.load_state_dict(torch.load(buffer))
    assert resumed.param_groups[0]["momentum"] == 0.9 and resumed.param_groups[0]["wd"] == WD

    # The same float32 operations on the same inputs: exactly equal.
    ours = torch_run(optimizer, params, grads[2:], LRS[2:])
    theirs = torch_run(resumed, resumed_params, grads[2:], LRS[2:])
    for a, b in zip(ours, theirs):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    for p, q in zip(params, resumed_params):
        assert torch.equal(optimizer.state[p]["momentum"], resumed.state[q]["momentum"])
    # And the resumed run still equals the uninterrupted Gluon one.
    reference = trainer_run(weights, grads, 0.9)[-1]
    for r, q in zip(reference, resumed_params):
        np.testing.assert_array_equal(q.detach().numpy(), r)


def test_set_learning_rate():
    p, q = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    optimizer = MXNetSGD([{"params": [p]}, {"params": [q], "lr": 0.5}], lr=0.1)
    optimizer.set_learning_rate(0.02)
    assert [g["lr"] for g in optimizer.param_groups] == [0.02, 0.02]
    assert copy.deepcopy(optimizer.state_dict())["param_groups"][1]["lr"] == 0.02


# -- loss -----------------------------------------------------------------------------------------------
B, N, C = 3, 200, 5


def mxnet_loss(cls_preds, box_preds, cls_targets, box_targets, num_positives, **kwargs):
    """gluon_ssd's SSDMultiBoxLoss: (values (sum, cls, box), d sum / d cls_preds, d sum / d box_preds)."""
    cp, bp = mx.nd.array(cls_preds), mx.nd.array(box_preds)
    cp.attach_grad()
    bp.attach_grad()
    with autograd.record():
        out = SSDMultiBoxLoss(**kwargs)(cp, bp, mx.nd.array(cls_targets), mx.nd.array(box_targets), num_positives)
    autograd.backward(out[0])
    return [v[0].asnumpy() for v in out], cp.grad.asnumpy(), bp.grad.asnumpy()


def torch_loss(cls_preds, box_preds, cls_targets, box_targets, num_positives, **kwargs):
    cp = torch.tensor(cls_preds, requires_grad=True)
    bp = torch.tensor(box_preds, requires_grad=True)
    out = SSDLoss(**kwargs)(cp, bp, torch.as_tensor(cls_targets), torch.tensor(box_targets), num_positives)
    out[0].sum().backward()
    return [v.detach().numpy() for v in out], cp.grad.numpy(), bp.grad.numpy()


def random_batch(seed, positives=(10, 3, 0)):
    rng = np.random.default_rng(seed)
    cls_preds = rng.normal(0, 2, (B, N, C + 1)).astype(np.float32)
    box_preds = rng.normal(0, 1, (B, N, 4)).astype(np.float32)
    box_targets = rng.normal(0, 1, (B, N, 4)).astype(np.float32)
    cls_targets = np.zeros((B, N), np.float32)
    for i, count in enumerate(positives):
        cls_targets[i, rng.choice(N, count, replace=False)] = rng.integers(1, C + 1, count)
    return cls_preds, box_preds, cls_targets, box_targets


def selected(cls_grad):
    """Anchors whose cross-entropy is in the loss: softmax - onehot is never all zero there."""
    return np.abs(cls_grad).sum(-1) > 0


def assert_same(reference, ours):
    # Values: float32 sums of ~50 terms, log-softmax computed by two libraries: a few ulps each, 1e-5.
    for r, o in zip(reference[0], ours[0]):
        np.testing.assert_allclose(o, r, rtol=1e-5, atol=1e-6)
    # Gradients wrt cls_preds are (softmax - onehot) / denominator. MXNet's log-softmax backward goes
    # through exp(log p), whose float32 relative error grows with |log p|: measured up to 4e-6 relative
    # (2.5e-7 absolute at 0.07) off a float64 reference, torch 1e-8 absolute. So rtol 1e-5; atol 1e-7
    # for the cancellation in p - 1 of positives (a few ulps of 1 over the denominator).
    np.testing.assert_allclose(ours[1], reference[1], rtol=1e-5, atol=1e-7)
    # Box gradients are sign(d) or d / rho, over the same count: measured exactly equal.
    np.testing.assert_allclose(ours[2], reference[2], rtol=0, atol=1e-7)


@pytest.mark.parametrize("kwargs", [{}, {"negative_mining_ratio": 2.5, "rho": 0.5, "lambd": 2.0},
                                    {"min_hard_negatives": 4}])
def test_loss_matches_mxnet(kwargs):
    data = random_batch(1)
    num_positives = float((data[2] > 0).sum())
    reference = mxnet_loss(*data, num_positives, **kwargs)
    ours = torch_loss(*data, num_positives, **kwargs)
    assert_same(reference, ours)
    np.testing.assert_array_equal(selected(ours[1]), selected(reference[1]))
    assert all(v.shape == (B,) for v in ours[0])
    if not kwargs:
        assert selected(ours[1]).sum(1).tolist() == [40, 12, 0]  # P + 3P per image, none for image 2
    # Integer targets and the default count of positives give the same result.
    again = torch_loss(*data[:2], data[2].astype(np.int64), data[3], None, **kwargs)
    for a, b in zip(ours, again):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # The global count of positives (distributed training) only rescales.
    doubled = torch_loss(*data, 2 * num_positives, **kwargs)
    for a, b in zip(ours[0], doubled[0]):
        np.testing.assert_allclose(b, a / 2, rtol=1e-6)


HARD_ROW = [-12.0, 3.0, 0.0, 0.0, 0.0, 0.0]  # background far below: cross-entropy ~15, above any random one
EASY_ROW = [8.0, 0.0, 0.0, 0.0, 0.0, 0.0]    # background far above: cross-entropy ~0.002


def tied_batch():
    """Image 0: 4 positives (quota 12), 8 tied hardest negatives (all inside the cut) and 30 tied easy ones
    (all outside); image 1: 2 positives (quota 6) and 15 tied hardest negatives (the cut splits them);
    image 2: no positive. Tied anchors are spread over the image."""
    cls_preds, box_preds, _, box_targets = random_batch(2)
    rng = np.random.default_rng(3)
    cls_targets = np.zeros((B, N), np.float32)
    anchors = rng.permutation(N)
    pos0, hard0, easy0 = anchors[:4], anchors[4:12], anchors[12:42]
    pos1, hard1 = anchors[42:44], anchors[44:59]
    cls_targets[0, pos0] = [1, 2, 3, 5]
    cls_targets[1, pos1] = [4, 1]
    cls_preds[0, hard0] = HARD_ROW
    cls_preds[0, easy0] = EASY_ROW
    cls_preds[1, hard1] = HARD_ROW
    return (cls_preds, box_preds, cls_targets, box_targets), hard0, easy0, hard1


def test_loss_ties_inside_or_outside_the_cut():
    data, hard0, easy0, hard1 = tied_batch()
    # The design holds in both libraries: the tied cross-entropies are exactly equal, the hard ones above
    # every other negative of their image.
    with torch.no_grad():
        ce = -torch.log_softmax(torch.tensor(data[0]), -1)[..., 0].numpy()
    ce_mx = -mx.nd.log_softmax(mx.nd.array(data[0]), axis=-1)[:, :, 0].asnumpy()
    for values in (ce, ce_mx):
        for image, group in ((0, hard0), (0, easy0), (1, hard1)):
            assert len(set(values[image, group].tolist())) == 1
        for image, group in ((0, hard0), (1, hard1)):
            others = np.setdiff1d(np.flatnonzero(data[2][image] == 0), group)
            assert values[image, group[0]] > values[image, others].max()

    reference = mxnet_loss(*data, 6.0)
    ours = torch_loss(*data, 6.0)
    mask, ref_mask = selected(ours[1]), selected(reference[1])
    # Image 0: the 8 tied hard ones and the next 4 by rank, none of the easy ties; the same anchors as
    # MXNet, so the gradients agree everywhere.
    assert mask[0, hard0].all() and not mask[0, easy0].any() and mask[0].sum() == 16
    np.testing.assert_array_equal(mask[0], ref_mask[0])
    for r, o in zip(reference[1:], ours[1:]):
        np.testing.assert_allclose(o[0], r[0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ours[1][2], 0)


def test_loss_ties_straddling_the_cut():
    data, _, _, hard1 = tied_batch()
    reference = mxnet_loss(*data, 6.0)
    ours = torch_loss(*data, 6.0)
    # Values do not depend on which of the equal cross-entropies are kept.
    for r, o in zip(reference[0], ours[0]):
        np.testing.assert_allclose(o, r, rtol=1e-5, atol=1e-6)
    mask, ref_mask = selected(ours[1][1]), selected(reference[1][1])
    # 6 of the 15 tied anchors in both; torch takes the lowest anchor indices (stable sort). MXNet's CPU
    # argsort is std::sort, whose order of ties is implementation-defined (see the test below), so only
    # the count can be compared there; everything outside the tied group is the same.
    assert mask[hard1].sum() == ref_mask[hard1].sum() == 6 and mask.sum() == 8
    np.testing.assert_array_equal(np.flatnonzero(mask[hard1]), np.sort(np.argsort(hard1)[:6]))
    outside = np.setdiff1d(np.arange(N), hard1)
    np.testing.assert_array_equal(mask[outside], ref_mask[outside])
    np.testing.assert_allclose(ours[1][1][outside], reference[1][1][outside], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ours[2], reference[2], rtol=0, atol=1e-7)


def test_mxnet_cpu_argsort_orders_ties_arbitrarily():
    # Why the straddling case compares counts only: beyond 16 elements (libstdc++'s insertion-sort
    # threshold) MXNet's CPU argsort does not keep equal keys in index order.
    order = mx.nd.argsort(mx.nd.zeros((1, 200)), axis=1).asnumpy()[0].astype(int)
    assert sorted(order.tolist()) == list(range(200)) and order.tolist() != list(range(200))
    assert torch.argsort(torch.zeros(1, 200), dim=1, stable=True)[0].tolist() == list(range(200))


def test_loss_without_positives():
    cls_preds, box_preds, _, box_targets = random_batch(4)
    cls_targets = np.zeros((B, N), np.float32)
    reference = mxnet_loss(cls_preds, box_preds, cls_targets, box_targets, 0.0)
    ours = torch_loss(cls_preds, box_preds, cls_targets, box_targets, 0.0)
    for r, o in zip(reference[0], ours[0]):
        assert o.shape == r.shape == (B,)
        np.testing.assert_array_equal(o, r)
        np.testing.assert_array_equal(o, 0)
    # Zeros that still depend on the predictions: backward ran and gave zero gradients.
    np.testing.assert_array_equal(ours[1], 0)
    np.testing.assert_array_equal(ours[2], 0)
    # With min_hard_negatives the hardest negatives are kept anyway (over a denominator of 1).
    reference = mxnet_loss(cls_preds, box_preds, cls_targets, box_targets, 0.0, min_hard_negatives=5)
    ours = torch_loss(cls_preds, box_preds, cls_targets, box_targets, 0.0, min_hard_negatives=5)
    assert_same(reference, ours)
    assert selected(ours[1]).sum(1).tolist() == [5, 5, 5]


def test_loss_in_float64_matches_across_libraries():
    """A float64 network's outputs with the float32 targets: both losses compute in float64 (what
    bench/bench_train_twin.py parity --float64 relies on), MXNet's equal to the twin's to float64 rounding and
    to its own float32 result to float32 rounding."""
    data = random_batch(6)
    num_positives = float((data[2] > 0).sum())
    preds64 = [x.astype(np.float64) for x in data[:2]]
    cp, bp = (mx.nd.array(x, dtype="float64") for x in preds64)
    cp.attach_grad()
    bp.attach_grad()
    with autograd.record():
        out = SSDMultiBoxLoss()(cp, bp, mx.nd.array(data[2]), mx.nd.array(data[3]), num_positives)
    autograd.backward(out[0])
    assert all(v[0].dtype == np.float64 for v in out) and cp.grad.dtype == np.float64
    reference = [v[0].asnumpy() for v in out], cp.grad.asnumpy(), bp.grad.asnumpy()
    ours = torch_loss(*preds64, *data[2:], num_positives)
    assert ours[1].dtype == np.float64
    for r, o in zip(reference[0], ours[0]):
        np.testing.assert_allclose(o, r, rtol=1e-12)
    np.testing.assert_allclose(ours[1], reference[1], rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(ours[2], reference[2], rtol=0, atol=1e-15)
    in_float32 = mxnet_loss(*data, num_positives)
    np.testing.assert_array_equal(selected(reference[1]), selected(in_float32[1]))
    assert_same(in_float32, reference)


def test_train_step_keeps_a_float64_network_in_float64():
    """train_step takes the loss in float32 at least: a float64 network's outputs are not rounded to float32."""
    cls_preds, box_preds, cls_targets, box_targets = random_batch(7)
    num_positives = float((cls_targets > 0).sum())
    cls_np, box_np = cls_preds.astype(np.float64) / 3, box_preds.astype(np.float64) / 3  # not float32 values

    class Network(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(3.0, dtype=torch.float64))

        def forward(self, images):
            return torch.from_numpy(cls_np) * self.scale, torch.from_numpy(box_np) * self.scale, None

    network = Network()
    args = (torch.from_numpy(cls_targets).long(), torch.from_numpy(box_targets), num_positives)
    losses = train_step(network, SSDLoss(), MXNetSGD(network.parameters(), lr=0.1), torch.zeros(1), *args)
    assert losses.dtype == torch.float64 and network.scale.dtype == torch.float64
    preds = torch.from_numpy(cls_np) * 3, torch.from_numpy(box_np) * 3
    wide = SSDLoss()(*preds, *args)[0].sum()
    rounded = SSDLoss()(*(p.float() for p in preds), *args)[0].sum()
    assert losses[0].item() == wide.item() and rounded.item() != wide.item()
    assert network.scale.item() != 3.0  # the step updated the float64 weight
