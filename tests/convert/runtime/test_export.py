"""TorchScript and ONNX exports (onnxruntime parity), and the inference helpers (device, dtype, layout, folding)."""
import copy

import numpy as np
import pytest
import torch

from convert import export_onnx, export_torchscript, fuse_batchnorm, get_torch_model, predict, prepare
from convert.nn.ssd import to_torchvision
from convert.runtime.verify import compare_detections
from tests.helpers import smallest_size


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """One intra-op thread: on a shared 2-core machine, two OpenMP threads competing with other
    processes make every small op wait for a time slice (measured 25x slower), one thread never waits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _spread(model, seed=0):
    """Seeded weights with spread scores and finite boxes: random layers, then each head scaled on a
    small probe so that logits have a standard deviation of 2 and box offsets of 0.5."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point() or "init_scale" in name:
                continue
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 1.5, generator=gen)
            elif name.endswith(("running_mean", "bias")):
                tensor.normal_(0, 0.1, generator=gen)
            elif name.endswith("norm4.scale"):
                tensor.uniform_(10, 30, generator=gen)
            elif tensor.dim() == 4:
                tensor.normal_(0, (2.0 / tensor[0].numel()) ** 0.5, generator=gen)
            else:
                tensor.uniform_(0.5, 1.5, generator=gen)
        size = 300 if model.spec.base_size == 300 else 160
        feats = model.eval().features(_image(99, size, size, batch=1))
        for heads, target in ((model.class_predictors, 2.0), (model.box_predictors, 0.5)):
            for head, feat in zip(heads, feats):
                scale = target / max(float(head(feat).std()), 1e-6)
                head.weight.mul_(scale)
                head.bias.mul_(scale)
    return model.eval()


def _image(seed, height, width, batch=2):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, height, width, generator=gen)


def _as_numpy(out):
    return [t.detach().numpy() if isinstance(t, torch.Tensor) else t for t in out]


@pytest.mark.parametrize("name,size", [("ssd_300_vgg16_atrous_voc", 300), ("ssd_512_resnet101_v2_voc", 160),
                                       ("ssd_300_mobilenet1.0_lite_coco", 300)])
def test_torchscript_equals_eager(name, size, tmp_path):
    model = _spread(get_torch_model(name))
    path = export_torchscript(model, tmp_path / "model.pt")
    loaded = torch.jit.load(path)
    for x in (_image(0, size, size), _image(1, size + 32, size - 32, batch=1)):
        with torch.no_grad():
            eager, scripted = model(x), loaded(x)
        assert (eager[0] >= 0).sum() > 0
        for a, b in zip(eager, scripted):
            assert torch.equal(a, b)


@pytest.mark.parametrize("name,size", [("ssd_300_mobilenet0.25_voc", 300), ("ssd_300_vgg16_atrous_voc", 300),
                                       ("ssd_512_resnet101_v2_voc", 160)])
def test_onnx_runs_in_onnxruntime(name, size, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = _spread(get_torch_model(name), seed=1)
    path = export_onnx(model, tmp_path / "model.onnx", height=size, width=size)
    graph = onnx.load(path)
    onnx.checker.check_model(graph)
    assert graph.opset_import[0].version >= 17
    assert any(node.op_type == "Loop" for node in graph.graph.node), "the greedy NMS should stay a loop"
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    # Other batch sizes and input sizes than the traced one.
    for x in (_image(2, size, size, batch=1), _image(3, size + 64, size - 32, batch=3)):
        with torch.no_grad():
            eager = _as_numpy(model(x))
        got = session.run(None, {"data": x.numpy()})
        assert [g.shape for g in got] == [e.shape for e in eager]
        assert (eager[0] >= 0).sum() > 0
        # onnxruntime's convolutions round differently from torch's: near-equal scores may swap.
        checks = compare_detections(got, eager, input_size=max(x.shape[2:]), score_tol=1e-5, box_tol=1e-5)
        assert all(c.passed for c in checks), checks
        swaps = int(checks[0].note.split(", ")[1].split()[0])
        assert swaps <= 2 * x.shape[0], checks


def test_inference_helpers_cpu():
    model = _spread(get_torch_model("ssd_512_resnet50_v1_voc"), seed=2)
    x = _image(4, 192, 160)
    with torch.no_grad():
        ref = _as_numpy(model(x))
        raw_ref = [t.numpy() for t in model.raw(x)]
    # fp32 helper on the whole batch = forward; one image per call (the CPU default) and channels_last and
    # BatchNorm folding change the arithmetic only slightly.
    for a, b in zip(_as_numpy(predict(model, x, micro_batch=0)), ref):
        np.testing.assert_array_equal(a, b)
    one_by_one = _as_numpy(predict(model, x))
    np.testing.assert_array_equal(one_by_one[0], ref[0])
    for a, b in zip(one_by_one[1:], ref[1:]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    for variant in (prepare(copy.deepcopy(model), "cpu", channels_last=True), prepare(model, "cpu", fuse_bn=True)):
        with torch.no_grad():
            raw = [t.numpy() for t in variant.raw(x.contiguous(memory_format=torch.channels_last))]
        for a, b in zip(raw, raw_ref):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())
    # torchvision-style output: the real detections, labels 1-based (0 = background).
    dicts = predict(model, x, output="torchvision")
    assert len(dicts) == 2
    for i, det in enumerate(dicts):
        valid = ref[0][i, :, 0] >= 0
        np.testing.assert_array_equal(det["labels"].numpy(), ref[0][i, valid, 0].astype(np.int64) + 1)
        np.testing.assert_allclose(det["boxes"].numpy(), ref[2][i, valid], rtol=1e-4, atol=1e-4)
        assert det["scores"].shape == (valid.sum(),)
    assert to_torchvision(*[torch.from_numpy(r) for r in ref])[0]["labels"].dtype == torch.int64
    # bf16 autocast on CPU: the network in bf16, post-processing in float32.
    ids, scores, boxes = predict(model, x, dtype="bf16")
    assert scores.dtype == torch.float32 and ids.shape == (2, 100, 1) and torch.isfinite(boxes[ids[..., 0] >= 0]).all()
    with pytest.raises(ValueError, match="dtype"):
        predict(model, x, dtype="fp8")


def test_fuse_batchnorm_every_block_kind():
    for name in ("ssd_512_resnet18_v1_voc", "ssd_512_resnet101_v2_voc", "ssd_300_mobilenet0.25_voc",
                 "ssd_300_resnet34_v1b_voc"):
        model = _spread(get_torch_model(name), seed=3)
        fused = fuse_batchnorm(model)
        remaining = {n for n, m in fused.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
        # Only ResNet v2's pre-activation BatchNorms (bn1: on the block's input, before conv1) cannot be folded;
        # bn2/bn3 follow a conv and must be.
        preactivation = {f"{n}.bn1" for n, m in model.named_modules() if type(m).__name__.startswith("BottleneckV2")
                         or type(m).__name__.startswith("BasicBlockV2")}
        assert ("v2" in name) == bool(preactivation), (name, len(preactivation))
        assert remaining == preactivation, (name, sorted(remaining ^ preactivation)[:5])
        x = _image(5, smallest_size(name), smallest_size(name), batch=1)
        with torch.no_grad():
            for a, b in zip(fused.raw(x), model.raw(x)):
                np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4 * b.abs().max().item())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    """Strict float32 on the GPU (TF32 off) gives the CPU detections; fp16/bf16 autocast runs."""
    model = _spread(get_torch_model("ssd_300_mobilenet0.25_voc"), seed=4)
    x = _image(6, 300, 300)
    cpu = [t.numpy() for t in predict(model, x)]
    gpu_model = prepare(copy.deepcopy(model), "cuda")
    gpu = [t.cpu().numpy() for t in predict(gpu_model, x, device="cuda", dtype="fp32")]
    checks = compare_detections(gpu, cpu, input_size=300)
    assert all(c.passed for c in checks), checks
    for dtype in ("fp16", "bf16"):
        ids, scores, boxes = predict(gpu_model, x, device="cuda", dtype=dtype)
        assert scores.dtype == torch.float32 and (ids >= 0).sum() > 0
        assert torch.isfinite(boxes[ids[..., 0] >= 0]).all()
