"""Parity of a converted PyTorch twin with its gluon_ssd model (needs mxnet): raw outputs and detections.

The reference is gluon_ssd (proven identical to GluonCV). One float32 forward per framework gives the
raw predictions (inference-mode BatchNorm, captured from the Gluon heads with forward hooks) and the
detections. Training mode (BatchNorm on batch statistics) is compared in float64 on both sides:
MXNet's float32 batch-statistics BatchNorm is itself off the exact result by about 1e-3 relative on
deep nets (measured against its own float64 run: 1e-2 on MobileNet0.25 features, where the twin's
float32 is off by 1.4e-4), so float32 could not tell a conversion error from MXNet's rounding, while
in float64 the two frameworks agree to about 1e-8.

Tolerances:

* raw outputs (float32, inference mode): max |a - b| <= 1e-4 * max(1, max |reference|) (errors scale
  with the values that flow through the network);
* raw outputs (float64, training mode): max |a - b| <= 1e-6 * max(1, max |reference|);
* scores: |a - b| <= 1e-4;
* boxes: |a - b| <= 1e-4 * max(H, W) of the input, i.e. 1e-4 in normalized coordinates (a coordinate
  of a 512 px input carries float32 rounding of about 3e-5 px, and box offsets are multiplied by
  anchor sizes of hundreds of pixels); relative to the coordinate for boxes far beyond the image;
* ids and order identical, except for near-tie swaps: candidates whose scores differ by less than
  the frameworks' float32 agreement may come out in either order. A differing row counts as a swap
  only when the same detection (id, score, box within tolerance) sits at another differing row of the
  reference (or, at the end of the list, was pushed past the cut by a near-equal score); swaps are
  counted and reported, every other difference fails.
"""
from __future__ import annotations

import copy
import dataclasses
import os

import numpy as np
import torch

from ..nn.ssd import SSD
from .inference import autocast, resolve_device

RAW_TOL = 1e-4          # raw logits / offsets, relative to the largest reference value
CUDA_RAW_TOL = 1e-3     # the same for the twin run on a CUDA device (float32, TF32 off)
TRAIN_TOL = 1e-6        # the same in training mode, float64
SCORE_TOL = 1e-4        # detection scores, absolute
BOX_TOL = 1e-4          # detection boxes, relative to the input size (normalized coordinates)


@dataclasses.dataclass
class Check:
    """One compared output."""

    name: str
    max_abs: float
    passed: bool
    note: str = ""


def _absdiff(ours: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|ours - ref| in float64, 0 where both are the same value (infinities included) or both NaN."""
    a, b = ours.astype(np.float64), ref.astype(np.float64)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    with np.errstate(invalid="ignore"):
        return np.where(same, 0.0, np.abs(a - b))


def compare_raw(name: str, ours: np.ndarray, ref: np.ndarray, tol: float = RAW_TOL) -> Check:
    if ours.shape != ref.shape:
        return Check(name, float("inf"), False, f"shape {ours.shape} vs {ref.shape}")
    diff = float(_absdiff(ours, ref).max()) if ref.size else 0.0
    finite = np.abs(ref[np.isfinite(ref)])
    scale = max(1.0, float(finite.max()) if finite.size else 0.0)
    return Check(name, diff, diff <= tol * scale, f"bound {tol * scale:.2e}")


def _match_swaps(ours, ref, score_tol, box_bound):
    """Positions (B, K) where the rows differ, split into near-tie swaps and real differences.

    A differing row is a swap when the same detection (id, score within ``score_tol``, box within
    ``box_bound``) sits at another differing position of the reference, or, at the end of the list,
    when the scores there agree within ``score_tol`` (a candidate pushed past the cut).
    """
    ids, scores, boxes = ours
    rids, rscores, rboxes = ref

    def same(i, p, q):
        return (ids[i, p, 0] == rids[i, q, 0] and _absdiff(scores[i, p], rscores[i, q]).max() <= score_tol
                and bool(np.all(_absdiff(boxes[i, p], rboxes[i, q]) <= box_bound(rboxes[i, q]))))

    swaps = np.zeros(ids.shape[:2], dtype=bool)
    wrong = np.zeros(ids.shape[:2], dtype=bool)
    for i in range(ids.shape[0]):
        differing = [p for p in range(ids.shape[1]) if not same(i, p, p)]
        free = set(differing)
        last = int(max((rids[i, :, 0] >= 0).sum(), (ids[i, :, 0] >= 0).sum()))
        for p in differing:
            partner = next((q for q in sorted(free, key=lambda q: abs(q - p)) if same(i, p, q)), None)
            if partner is not None:
                free.discard(partner)
                swaps[i, p] = True
            elif p >= last - 2 and _absdiff(scores[i, p], rscores[i, p]).max() <= score_tol:
                swaps[i, p] = True
            else:
                wrong[i, p] = True
    return swaps, wrong


def compare_detections(ours, ref, input_size: float, score_tol: float = SCORE_TOL,
                       box_tol: float = BOX_TOL) -> list[Check]:
    """Checks 'ids/order', 'scores', 'boxes' of (ids, scores, boxes) numpy triples (B, K, ...);
    ``input_size`` is max(H, W) of the network input (the box tolerance is relative to it)."""
    ids, scores, boxes = ours
    rids, rscores, rboxes = ref
    if ids.shape != rids.shape:
        return [Check("ids/order", float("inf"), False, f"shape {ids.shape} vs {rids.shape}")]

    def box_bound(ref_box):
        # Relative to the input size; to the coordinate itself for boxes far outside the image.
        return box_tol * np.maximum(input_size, np.abs(ref_box.astype(np.float64)))

    swaps, wrong = _match_swaps(ours, ref, score_tol, box_bound)
    note = f"{int((rids >= 0).sum())} detections, {int(swaps.sum())} near-tie swaps"
    if wrong.any():
        bad = tuple(np.argwhere(wrong)[0])
        note += (f"; first difference at image {bad[0]} row {bad[1]}: id {ids[bad][0]:g} vs {rids[bad][0]:g}, "
                 f"score {scores[bad][0]:.6g} vs {rscores[bad][0]:.6g}")
    aligned = ~swaps
    checks = [Check("ids/order", float(_absdiff(ids, rids)[aligned].max()) if aligned.any() else 0.0,
                    not wrong.any(), note)]
    score_diff = _absdiff(scores[..., 0], rscores[..., 0])
    max_score = float(score_diff.max()) if score_diff.size else 0.0
    checks.append(Check("scores", max_score, max_score <= score_tol, f"bound {score_tol:.2e}"))
    box_diff = _absdiff(boxes, rboxes)[aligned]
    max_box = float(box_diff.max()) if box_diff.size else 0.0
    ok = bool(np.all(box_diff <= box_bound(rboxes[aligned])))
    checks.append(Check("boxes", max_box, ok, f"bound {box_tol * input_size:.2e} px ({box_tol:g} of {input_size:g} px)"
                        + ("; swapped rows match their partners" if swaps.any() else "")))
    return checks


def gluon_reference(net, x, train: bool = True) -> dict:
    """gluon_ssd outputs as numpy: 'detections' (ids, scores, boxes), 'cls_preds', 'box_preds',
    'anchors' (inference mode, from the same forward) and, with ``train``, 'train_cls_preds',
    'train_box_preds', 'train_anchors' (training mode, float64). With ``train`` the net is left in
    float64 with updated BatchNorm statistics: use it for nothing else afterwards."""
    import mxnet as mx

    if net._active:
        raise ValueError("gluon_reference needs a net that is not hybridized (forward hooks see its layers)")
    captured: dict = {}

    def hook(kind, index):
        def record(block, inputs, output):
            captured[(kind, index)] = output
        return record

    handles = []
    for kind, blocks in (("cls", net.class_predictors), ("box", net.box_predictors), ("anchor", net.anchor_generators)):
        for i, block in enumerate(blocks):
            handles.append(block.register_forward_hook(hook(kind, i)))
    try:
        with mx.autograd.predict_mode():
            detections = [o.asnumpy() for o in net(x)]
    finally:
        for handle in handles:
            handle.detach()
    layers = len(net.class_predictors)
    batch = x.shape[0]

    def flat(kind, width):
        parts = [np.transpose(captured[(kind, i)].asnumpy(), (0, 2, 3, 1)).reshape(batch, -1) for i in range(layers)]
        return np.concatenate(parts, 1).reshape(batch, -1, width)

    out = {"input_hw": tuple(x.shape[2:]), "detections": detections,
           "cls_preds": flat("cls", net.num_classes + 1), "box_preds": flat("box", 4),
           "anchors": np.concatenate([captured[("anchor", i)].asnumpy() for i in range(layers)], 1)}
    if train:
        net.cast("float64")
        with mx.autograd.train_mode():
            cls_preds, box_preds, anchors = net(x.astype("float64"))
        out.update(train_cls_preds=cls_preds.asnumpy(), train_box_preds=box_preds.asnumpy(),
                   train_anchors=anchors.asnumpy())
    return out


def torch_outputs(model: SSD, x: torch.Tensor, train: bool = True, device="cpu") -> dict:
    """The twin's outputs under the same names as :func:`gluon_reference`, computed on ``device`` in strict
    float32 (TF32 off); ``model`` itself is not changed."""
    device = resolve_device(device)
    runner = copy.deepcopy(model).to(device).eval()

    def host(*tensors):
        return [t.cpu().numpy() for t in tensors]

    with torch.no_grad(), autocast(device, "fp32"):
        cls_preds, box_preds, anchors = runner.raw(x.to(device))
        detections = host(*runner.postprocess(cls_preds, box_preds, anchors))
        cls_preds, box_preds, anchors = host(cls_preds, box_preds, anchors)
    out = {"input_hw": tuple(x.shape[2:]), "detections": detections, "cls_preds": cls_preds,
           "box_preds": box_preds, "anchors": anchors, "device": device.type}
    if train:
        runner = runner.double().train()  # training mode updates BatchNorm statistics (of the copy)
        with torch.no_grad():
            cls_preds, box_preds, anchors = host(*runner(x.double().to(device)))
        out.update(train_cls_preds=cls_preds, train_box_preds=box_preds, train_anchors=anchors)
    return out


def compare_outputs(ours: dict, ref: dict) -> list[Check]:
    """Every check between :func:`torch_outputs` and :func:`gluon_reference` results. On a GPU the raw
    float32 outputs are held to CUDA_RAW_TOL (other kernels, other summation orders)."""
    checks = []
    raw_tol = CUDA_RAW_TOL if ours.get("device", "cpu") != "cpu" else RAW_TOL
    for key in ("cls_preds", "box_preds", "anchors", "train_cls_preds", "train_box_preds", "train_anchors"):
        if key in ref and key in ours:
            checks.append(compare_raw(key, ours[key], ref[key], TRAIN_TOL if key.startswith("train") else raw_tol))
    checks += compare_detections(ours["detections"], ref["detections"], float(max(ref["input_hw"])))
    return checks


def format_table(checks: list[Check], title: str = "") -> str:
    """The verification table the CLI prints."""
    rows = [f"{'output':<18}{'max abs diff':>14}  {'result':<6}  note", "-" * 78]
    for c in checks:
        rows.append(f"{c.name:<18}{c.max_abs:>14.3e}  {'pass' if c.passed else 'FAIL':<6}  {c.note}")
    return "\n".join(([title] if title else []) + rows)


def photo_batch(paths, width: int, height: int):
    """Photos through gluon_ssd's validation transform (GluonCV's), stacked: mx.nd (B, 3, height, width)."""
    import mxnet as mx

    from gluon_ssd.data.transforms import SSDDefaultValTransform  # loads MXNet: only --verify reads photos

    transform = SSDDefaultValTransform(width, height)
    batch = []
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"image file not found: {path}")
        image, _ = transform(mx.image.imread(os.fspath(path)), np.zeros((0, 5), dtype=np.float32))
        batch.append(image)
    return mx.nd.stack(*batch)


def verify(model: SSD, net, x, train: bool = True, device="cpu") -> list[Check]:
    """Run both models on the mx.nd batch ``x`` (the twin on ``device``) and compare everything."""
    ref = gluon_reference(net, x, train=train)
    ours = torch_outputs(model, torch.from_numpy(x.asnumpy()), train=train, device=device)
    return compare_outputs(ours, ref)
