"""convert._cpu.kernels (the fused CPU BatchNorm + ReLU of the torch trainer) against torch's own float64
BatchNorm and ReLU, the MXNet statistics rule, and the build / fallback paths."""
import copy
import logging

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from convert._cpu import kernels as cpu_kernels  # noqa: E402
from convert.nn.layers import (  # noqa: E402
    BatchNorm2d,
    FixedGammaBatchNorm2d,
    _mxnet_batch_norm,
    fuse_relu,
    unfuse_relu,
)

needs_kernels = pytest.mark.skipif(cpu_kernels.library() is None, reason="no C compiler: torch's kernels run")
CL = torch.channels_last
# float32 has a 6e-8 unit roundoff; a BatchNorm output is a few roundings of O(1) values, its gradient a sum of
# `rows` terms (double sums in the kernel, float32 in the products): 2e-6 of the largest value covers both.
BOUND = 2e-6


def _reference(x, weight, bias, relu, dy, eps):
    """Output, gradients and MXNet-rule running statistics in float64 with torch's kernels."""
    x, bias = x.double().requires_grad_(), bias.double().requires_grad_()
    weight = None if weight is None else weight.double().requires_grad_()
    running_mean, running_var = torch.zeros(x.shape[1], dtype=torch.float64), torch.ones(x.shape[1],
                                                                                          dtype=torch.float64)
    out = _mxnet_batch_norm(x, running_mean, running_var, weight, bias, 0.1, eps, False)
    out = F.relu(out) if relu else out
    out.backward(dy.double())
    grads = [x.grad, None if weight is None else weight.grad, bias.grad]
    return out.detach(), grads, running_mean, running_var


def _close(ours, ref, what):
    scale = float(ref.abs().max())
    err = float((ours.detach().double() - ref).abs().max())
    assert err <= BOUND * max(scale, 1e-30), f"{what}: {err:.3g} off, {err / scale:.2g} of the largest value"


@needs_kernels
@pytest.mark.parametrize("shape, relu, gamma, eps", [
    ((4, 32, 9, 7), True, True, 1e-5),     # rows not a multiple of 4 or of the threads
    ((3, 17, 5, 6), False, True, 1e-5),    # channels not a multiple of the vector width
    ((5, 48, 4, 4), True, False, 1e-3),    # fix_gamma layer (no weight), the SSD extras' eps
    ((2, 256, 3, 3), False, False, 1e-5),
])
def test_fused_batch_norm_matches_torch_in_float64(shape, relu, gamma, eps):
    gen = torch.Generator().manual_seed(sum(shape))
    c = shape[1]
    # An offset mean (3) and spread so that the ReLU cuts a sizeable part of each channel.
    x = (torch.randn(shape, generator=gen) * 2 + 3).contiguous(memory_format=CL)
    weight = torch.rand(c, generator=gen) + 0.5 if gamma else None
    bias = torch.randn(c, generator=gen) * 2
    dy = torch.randn(shape, generator=gen).contiguous(memory_format=CL)
    ref_out, ref_grads, ref_mean, ref_var = _reference(x, weight, bias, relu, dy, eps)

    xs = x.clone().requires_grad_()
    ws = None if weight is None else weight.clone().requires_grad_()
    bs = bias.clone().requires_grad_()
    running_mean, running_var = torch.zeros(c), torch.ones(c)
    assert cpu_kernels.applies(xs)
    out = cpu_kernels.batch_norm(xs, running_mean, running_var, ws, bs, 0.1, eps, relu)
    out.backward(dy)
    assert out.is_contiguous(memory_format=CL) and xs.grad.is_contiguous(memory_format=CL)
    _close(out, ref_out, "output")
    if relu:  # the ReLU's zeros are exact zeros where torch's are (no value sits within rounding of the cut)
        assert torch.equal(out == 0, ref_out == 0)
    for name, ours, ref in zip(("dx", "dgamma", "dbeta"), (xs.grad, None if ws is None else ws.grad, bs.grad),
                               ref_grads):
        if ref is not None:
            _close(ours, ref, name)
    _close(running_mean, ref_mean, "running mean")
    _close(running_var, ref_var, "running var (MXNet's rule: the biased variance)")


@needs_kernels
def test_nan_propagates_like_torch():
    """A NaN in a channel makes that channel NaN (torch's relu keeps NaN); the fused ReLU must not hide a blow-up
    from the trainer's NaN stop by writing zeros."""
    x = torch.randn(2, 16, 4, 4).contiguous(memory_format=CL)
    x[0, 3, 1, 1] = float("nan")
    out = cpu_kernels.batch_norm(x, torch.zeros(16), torch.ones(16), torch.ones(16), torch.zeros(16), 0.1, 1e-5,
                                 True)
    ref = F.relu(F.batch_norm(x, None, None, torch.ones(16), torch.zeros(16), True, 0.1, 1e-5))
    assert torch.isnan(out[:, 3]).all() and torch.isnan(ref[:, 3]).all()
    assert torch.equal(torch.isnan(out), torch.isnan(ref))


@needs_kernels
def test_applies_only_to_float32_channels_last_cpu_outside_autocast():
    x = torch.randn(2, 8, 4, 4)
    assert not cpu_kernels.applies(x)  # NCHW
    assert cpu_kernels.applies(x.contiguous(memory_format=CL))
    assert not cpu_kernels.applies(x.contiguous(memory_format=CL).double())
    assert not cpu_kernels.applies(x.contiguous(memory_format=CL).bfloat16())
    with torch.autocast("cpu", torch.bfloat16):
        assert not cpu_kernels.applies(x.contiguous(memory_format=CL))


def test_fuse_relu_keeps_names_and_function(tmp_path):
    """Folding the ReLUs into the BatchNorms leaves the state dict's keys and the network's outputs alone (eval:
    bit-equal; training mode, fused kernel where available: within float32 of the float64 network)."""
    from convert.nn.ssd import get_torch_model
    from convert.runtime.inference import fuse_batchnorm

    torch.manual_seed(0)
    model = get_torch_model("ssd_300_mobilenet0.25_voc").eval()
    pairs = sum(1 for m in model.modules() if isinstance(m, torch.nn.Sequential)
                for a, b in zip(list(m.children()), list(m.children())[1:])
                if isinstance(a, (BatchNorm2d, FixedGammaBatchNorm2d)) and type(b) is torch.nn.ReLU)
    fused = copy.deepcopy(model)
    assert fuse_relu(fused) == pairs > 0
    assert list(fused.state_dict()) == list(model.state_dict())
    x = torch.rand(2, 3, 300, 300) * 255 - 120
    with torch.no_grad():
        for a, b in zip(model.raw(x), fused.raw(x)):
            assert torch.equal(a, b)
        with pytest.raises(ValueError, match="unfuse_relu"):
            fuse_batchnorm(copy.deepcopy(fused))
        # training mode: float32 channels-last (fused) against the float64 network with torch's kernels
        train32 = copy.deepcopy(fused).train().to(memory_format=CL)
        train64 = copy.deepcopy(model).train().double()
        for a, b in zip(train32.raw(x.contiguous(memory_format=CL))[:2], train64.raw(x.double())[:2]):
            err = float((a.double() - b).abs().max() / b.abs().max())
            assert err < 1e-4, err  # ~30 BatchNorm layers of float32 rounding
        for (k, a), b in zip(train32.state_dict().items(), train64.state_dict().values()):
            if "running" in k:
                assert float((a.double() - b).abs().max()) <= 1e-4 * float(b.abs().max()) + 1e-6, k
    assert unfuse_relu(fused) == pairs
    assert not any(getattr(m, "relu", False) for m in fused.modules())
    fuse_batchnorm(fused)  # folding works again once unfused


def test_build_cache_and_fallback(tmp_path, monkeypatch, caplog):
    """The library is built once per source/flags/CPU into the cache (atomically, reused afterwards); without a
    compiler or with GLUON_SSD_CPU_KERNELS=0 torch's kernels run and the reason is logged."""
    monkeypatch.setenv("GLUON_SSD_KERNEL_CACHE", str(tmp_path / "kernels"))
    monkeypatch.setattr(cpu_kernels, "_state", {})
    caplog.set_level(logging.INFO, logger="convert._cpu.kernels")
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    assert cpu_kernels.library() is None
    assert "no C compiler" in caplog.text and "torch's kernels run" in caplog.text
    x = torch.randn(2, 8, 4, 4).contiguous(memory_format=CL)
    assert not cpu_kernels.applies(x)
    bn = BatchNorm2d(8).train()
    bn.relu = True
    ref = F.relu(F.batch_norm(x, None, None, bn.weight, bn.bias, True, 0.1, 1e-5))
    assert torch.allclose(bn(x), ref, atol=1e-6)  # the relu flag works on the fallback path too

    monkeypatch.setattr(cpu_kernels, "_state", {})
    monkeypatch.setenv("GLUON_SSD_CPU_KERNELS", "0")
    assert cpu_kernels.library() is None and "switched off" in caplog.text

    monkeypatch.delenv("GLUON_SSD_CPU_KERNELS")
    monkeypatch.delenv("CC")
    monkeypatch.setattr(cpu_kernels, "_state", {})
    if cpu_kernels.library() is None:
        pytest.skip("no C compiler here")
    built = list((tmp_path / "kernels").iterdir())
    assert len(built) == 1 and built[0].suffix == ".so"  # no temporary file left beside it
    stamp = built[0].stat().st_mtime_ns
    monkeypatch.setattr(cpu_kernels, "_state", {})
    assert cpu_kernels.library() is not None
    assert built[0].stat().st_mtime_ns == stamp  # reused, not rebuilt
