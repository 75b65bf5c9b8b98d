"""gluoncv's answers, stored by gluoncv itself (tests/references), against the code: the parity tests that run
on the PyTorch stack, where neither MXNet nor gluoncv can be installed.

What each stored file holds and which gluoncv call wrote it: tests/references/README.md; the one command that
rewrites them all: ``.venv/bin/python -m tests.references.write`` (MXNet stack). Only the last test needs MXNet:
on the MXNet stack it rewrites every reference into a temporary folder and fails where a stored file no longer
holds what gluoncv writes now.

Bounds (float32 arithmetic, see convert/runtime/verify.py and README "python -m convert ... --verify"): raw network
outputs within 1e-4 of the largest value, scores within 1e-4, boxes within 1e-4 of the input size, near-tie
swaps checked to be exact partners; targets, labels and metrics exact or to the last bits, as stated per test.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from convert import convert_gluon_file, get_torch_model, gluon_to_torch
from convert.runtime.verify import compare_outputs, compare_raw, format_table, torch_outputs
from convert.train.loss import SSDLoss
from convert.train.target import batch_targets
from gluon_ssd._mxnet import HAVE_MXNET, as_numpy
from gluon_ssd.data import COCODetection, SSDDefaultValTransform, open_dataset, read_image
from gluon_ssd.data.image import auto_interp, imresize
from gluon_ssd.eval import VOC07MApMetric, VOCMApMetric
from gluon_ssd.specs import IMAGENET_STD
from tests.references import (
    DATA,
    FOLDER,
    REGENERATE,
    MissingReference,
    data_path,
    gluoncv_params,
    listed_files,
    load,
    seeded_network,
    stored_predictions,
)

TWIN = "ssd_300_mobilenet0.25_voc"
HEADLINE = ("ssd_300_vgg16_atrous_voc", "ssd_512_vgg16_atrous_voc", "ssd_512_resnet50_v1_voc",
            "ssd_512_mobilenet1.0_voc")
METRIC_FIELDS = ("pred_bboxes", "pred_labels", "pred_scores", "gt_bboxes", "gt_labels", "gt_difficults")
UNIT = 2.0 ** -24  # float32 unit roundoff


def _failures(checks) -> str:
    return format_table(checks) if any(not c.passed for c in checks) else ""


def assert_within_ulps(ours: np.ndarray, ref: np.ndarray, ulps: int, what: str) -> None:
    """|ours - ref| <= ulps float32 spacings of the larger magnitude, elementwise (+0 and -0 agree)."""
    a, b = ours.astype(np.float64), ref.astype(np.float64)
    bound = ulps * np.spacing(np.maximum(np.abs(a), np.abs(b)).astype(np.float32)).astype(np.float64)
    bad = np.abs(a - b) > bound
    where = tuple(int(i) for i in np.argwhere(bad)[0]) if bad.any() else ()
    assert not bad.any(), (f"{what}: {int(bad.sum())} values differ by more than {ulps} ulp, first at {where}: "
                           f"{float(a[where])!r} vs gluoncv's {float(b[where])!r}")


# -------------------------------------------------------------------------------------- the stored files
def test_every_stored_file_is_listed_and_says_what_wrote_it():
    stored = sorted(p.name for p in FOLDER.iterdir() if p.suffix in (".npz", ".bz2"))
    assert stored == sorted(listed_files()), "tests/references/README.md must list exactly the stored files"
    for name in stored:
        if name.endswith(".npz"):
            written_by = str(load(name)["written_by"])
            assert written_by.startswith("gluoncv ") and "tests/references/write.py:write_" in written_by, name
    total = sum((FOLDER / name).stat().st_size for name in stored)
    assert total < 8e6, f"the stored references take {total / 1e6:.2f} MB: keep them under 8 MB (they are in git)"


def test_a_missing_file_names_the_command():
    with pytest.raises(MissingReference, match="python -m tests.references.write"):
        load("no_such_reference")
    assert "tests.references.write" in REGENERATE


# ------------------------------------------------------------------------ (a) the twin on gluoncv's file
def test_twin_equals_gluoncv_on_its_own_parameter_file(tmp_path):
    """gluoncv saved a seeded SSD with its own save_parameters; the file converted to the twin gives gluoncv's
    raw outputs, anchors and detections on two real photos preprocessed by gluoncv."""
    ref = load(f"{TWIN}_gluoncv")
    model, _ = convert_gluon_file(TWIN, gluoncv_params(TWIN, tmp_path))
    nms_thresh, nms_topk, post_nms = (float(v) for v in ref["nms"])
    model.set_nms(nms_thresh, int(nms_topk), int(post_nms))
    batch = ref["batch"]
    ours = torch_outputs(model, torch.from_numpy(batch), train=False)
    reference = {"input_hw": batch.shape[2:], "detections": [ref["ids"], ref["scores"], ref["boxes"]],
                 "cls_preds": ref["cls_preds"], "box_preds": ref["box_preds"], "anchors": ref["anchors"]}
    checks = compare_outputs(ours, reference)
    assert [c.name for c in checks] == ["cls_preds", "box_preds", "anchors", "ids/order", "scores", "boxes"]
    assert all(c.passed for c in checks), _failures(checks)
    # The comparison covers full lists of detections of many classes.
    assert (ref["ids"] >= 0).sum() == 200 and len(np.unique(ref["ids"])) > 10


# -------------------------------------------------------------------- (b) the headline models, seeded
@pytest.mark.parametrize("name", HEADLINE)
def test_seeded_twin_equals_gluoncv(name):
    """Weights regenerated with numpy from gluoncv's parameter names and shapes and the seed (their digest is
    the one of the weights gluoncv ran), mapped by name into the twin: gluoncv's raw outputs and anchors on a
    real photo at the smallest input the model takes."""
    ref = load(f"{name}_seeded")
    model = get_torch_model(name)
    state, _ = gluon_to_torch(model, seeded_network(ref), source=f"{name}_seeded.npz")
    model.load_state_dict(state, strict=True)
    model.eval()
    with torch.no_grad():
        cls_preds, box_preds, anchors = (t.numpy() for t in model.raw(torch.from_numpy(ref["input"])))
    checks = [compare_raw("cls_preds", cls_preds, ref["cls_preds"]), compare_raw("box_preds", box_preds,
              ref["box_preds"]), compare_raw("anchors", anchors, ref["anchors"])]
    assert all(c.passed for c in checks), format_table(checks, name)


# ------------------------------------------------------------------------------------ (c) the targets
def test_targets_equal_gluoncv():
    """The twin's targets (what the torch trainer uses) on gluoncv's anchors and real VOC boxes against gluoncv's
    SSDTargetGenerator(negative_mining_ratio=-1) (gluon_ssd's setting), one image at a time with its real rows.

    Class targets are exact. Box targets take the same float32 operations in the same order; the size codes go
    through the C library's logf, which may differ by one ulp between libm builds, and then a division by the
    std: within 2 ulp (0 and -0 agree).
    """
    ref = load("ssd_targets")
    cls, box = batch_targets(torch.from_numpy(ref["anchors"]), ref["labels"])
    np.testing.assert_array_equal(cls.numpy(), ref["cls_targets"].astype(np.int64))
    assert_within_ulps(box.numpy(), ref["box_targets"], 2, "box targets")
    np.testing.assert_array_equal(ref["box_masks"], np.repeat((cls.numpy() > 0)[..., None], 4, axis=-1))
    assert (ref["cls_targets"] > 0).sum(axis=1).min() >= 10


def test_gluoncv_default_generator_mines_the_negatives_of_the_twin_loss():
    """gluoncv's SSDTargetGenerator with its defaults mines hard negatives itself (ratio 3, on the class
    predictions); gluon_ssd and the twin mine them in the loss instead. On the same seeded predictions the
    positives and box targets are the same, and the negatives it keeps (class target 0, the others -1) are the
    ones SSDLoss.hard_negatives picks. Only two negatives whose cross-entropies agree within float32 rounding of
    the two implementations (1e-5 relative) may trade places at the cut."""
    ref = load("ssd_targets")
    cls_preds, _ = stored_predictions(ref)
    mined_by_gluoncv = ref["ohem_cls_targets"]
    positive = mined_by_gluoncv > 0
    np.testing.assert_array_equal(positive, ref["cls_targets"] > 0)
    np.testing.assert_array_equal(ref["ohem_box_targets"], ref["box_targets"])
    np.testing.assert_array_equal(ref["ohem_box_masks"], ref["box_masks"])

    cross_entropy = -torch.log_softmax(torch.from_numpy(cls_preds), dim=-1)[..., 0]
    ours = SSDLoss().hard_negatives(cross_entropy, torch.from_numpy(positive)).numpy() & ~positive
    theirs = mined_by_gluoncv == 0
    np.testing.assert_array_equal(theirs.sum(axis=1), 3 * positive.sum(axis=1))
    ce = cross_entropy.numpy()
    for i in np.flatnonzero((ours != theirs).any(axis=1)):
        cut = np.sort(ce[i][~positive[i]])[::-1][3 * positive[i].sum() - 1]
        moved = ce[i][ours[i] != theirs[i]]
        assert np.all(np.abs(moved - cut) <= 1e-5 * cut), (
            f"image {i}: the twin's loss and gluoncv's generator mine different negatives, with cross-entropies "
            f"{moved.tolist()}, not within 1e-5 of the cut at {float(cut):.7g}")


# --------------------------------------------------------------------------------------- (d) the loss
def test_loss_equals_gluoncv():
    """The twin's SSDLoss against gluoncv's SSDMultiBoxLoss on seeded predictions and gluoncv's targets of (c).

    Bound, per image and loss: a sum of n float32 terms in any order is within (n - 1) u of the exact sum of
    their magnitudes (u = 2^-24), and each term (a log-softmax over C + 1 = 21 logits, a smooth L1) is within a
    few tens of u of its exact value in either implementation: 2 (n + 26) u relative, n the terms summed
    (4 per positive: the positives and their three hard negatives; the four offsets of each positive).
    """
    ref, targets = load("ssd_loss"), load("ssd_targets")
    cls_preds, box_preds = stored_predictions(ref)
    loss = SSDLoss(float(ref["negative_mining_ratio"]), float(ref["rho"]), float(ref["lambd"]))
    cls_t = torch.from_numpy(targets["cls_targets"])
    total, cls_loss, box_loss = (t.numpy().astype(np.float64) for t in loss(
        torch.from_numpy(cls_preds), torch.from_numpy(box_preds), cls_t, torch.from_numpy(targets["box_targets"])))
    terms = 4 * (cls_t > 0).sum(dim=1).numpy()
    cls_bound = 2 * (terms + 26) * UNIT * ref["cls_loss"]
    box_bound = 2 * (terms + 26) * UNIT * ref["box_loss"]
    for name, ours, bound in (("cls", cls_loss, cls_bound), ("box", box_loss, box_bound),
                              ("sum", total, cls_bound + box_bound + UNIT * ref["sum_loss"])):
        diff = np.abs(ours - ref[f"{name}_loss"])
        assert np.all(diff <= bound), f"{name} loss differs by {diff} (bounds {bound})"


# ----------------------------------------------------------------------- (e) datasets and preprocessing
def _rows(ds, width):
    labels = [ds.label(i)[:, :width] for i in range(len(ds))]
    return np.concatenate(labels), np.array([len(lab) for lab in labels])


def test_voc_labels_equal_gluoncv():
    """gluon_ssd's VOC reader, opened as the tools open it, against gluoncv's VOCDetection (defaults) on the 50
    annotated VOC sample images: the same images in the same order and the same label rows, exactly."""
    ref = load("datasets")
    root = DATA / str(ref["voc_root"])
    ds = open_dataset("voc", root, splits=",".join(str(s) for s in ref["voc_splits"]))
    assert [os.path.relpath(ds.image_path(i), root) for i in range(len(ds))] == list(ref["voc_images"])
    labels, counts = _rows(ds, 6)
    np.testing.assert_array_equal(counts, ref["voc_counts"])
    np.testing.assert_array_equal(labels, ref["voc_labels"])


@pytest.mark.parametrize("split", ["instances_train2017", "instances_val2017"])
@pytest.mark.parametrize("setting, use_crowd", [("default", True), ("no_crowd", False)])
def test_coco_labels_equal_gluoncv(split, setting, use_crowd):
    """gluon_ssd's COCODetection against gluoncv's on tinycoco with the matching settings: gluoncv's defaults
    (use_crowd=True, skip_empty=True: also gluon_ssd's defaults, and what train_ssd.py opens, as GluonCV's
    train_ssd.py does) and use_crowd=False; boxes and classes exactly (gluon_ssd adds a crowd flag as column 5)."""
    ref = load("datasets")
    prefix = f"coco_{split}_{setting}"
    root = DATA / str(ref["coco_root"])
    image_dir = "images/" + split.split("_")[1]  # tinycoco's own folders (see shared/data/README.md)
    readers = [COCODetection(root, split, image_dir=image_dir, use_crowd=use_crowd, skip_empty=True)]
    if use_crowd:
        readers.append(open_dataset("coco", root, splits=split, purpose="train", image_dir=image_dir))
    for ds in readers:
        assert [os.path.basename(ds.image_path(i)) for i in range(len(ds))] == list(ref[f"{prefix}_images"])
        labels, counts = _rows(ds, 5)
        np.testing.assert_array_equal(counts, ref[f"{prefix}_counts"])
        np.testing.assert_array_equal(labels, ref[f"{prefix}_labels"])
        assert [ds.contiguous_id_to_json[i] for i in range(80)] == list(ref["coco_contiguous_id_to_json"])


def test_val_transform_within_one_grey_level_of_gluoncv():
    """gluon_ssd's validation resize against gluoncv's (mx.image.imresize with interp=9, uint8, before
    normalization) on real photos, one per interpolation MXNet picks: bit-exact with MXNet, within one grey
    level with opencv-python (MXNet's bundled OpenCV rounds some bicubic pixels the other way). The whole
    transform, normalization included, against gluoncv's normalized batch of the twin's file (the same photos
    at 300 x 300): within one grey level divided by the smallest std."""
    ref = load("val_transform")
    interps = set()
    for i, (photo, (width, height)) in enumerate(zip(ref["photos"], ref["sizes"])):
        image = as_numpy(read_image(str(data_path(photo))))
        assert image.shape[:2] == tuple(ref[f"source_hw_{i}"])
        interp = auto_interp(image.shape[:2], (int(height), int(width)))
        interps.add(interp)
        ours = imresize(image, int(width), int(height), interp)
        diff = int(np.abs(ours.astype(np.int16) - ref[f"resized_{i}"].astype(np.int16)).max())
        assert diff <= (0 if HAVE_MXNET else 1), f"{photo} at {width}x{height} (interp {interp}): off by {diff}"
    assert interps == {1, 2, 3}, "one resize of each kind: bilinear, bicubic, area"

    twin = load(f"{TWIN}_gluoncv")
    size = twin["batch"].shape[-1]
    transform = SSDDefaultValTransform(size, size)
    bound = 1 / 255 / min(IMAGENET_STD) + 1e-6
    for k, photo in enumerate(twin["photos"]):
        x, _ = transform(read_image(str(data_path(photo))), np.zeros((0, 6), dtype=np.float32))
        diff = float(np.abs(as_numpy(x) - twin["batch"][k]).max())
        assert diff <= (0 if HAVE_MXNET else bound), f"{photo}: normalized input off by {diff}"


# --------------------------------------------------------------------------------------- (f) the metrics
def _assert_voc_metrics(ref, set_name, tie_order):
    names = [str(n) for n in ref["class_names"]]
    batches = len(ref[f"{set_name}_pred_bboxes"])
    for kind, metric_class in (("voc07", VOC07MApMetric), ("voc", VOCMApMetric)):
        metric = metric_class(float(ref["iou_thresh"]), names, tie_order=tie_order)
        for b in range(batches):
            metric.update(*(ref[f"{set_name}_{field}"][b] for field in METRIC_FIELDS))
        got_names, values = metric.get()
        assert got_names == names + ["mAP"]
        np.testing.assert_allclose(values, ref[f"{set_name}_{kind}"], rtol=0, atol=1e-12, equal_nan=True,
                                   err_msg=f"{kind} on the {set_name!r} set")


def test_voc_metrics_equal_gluoncv():
    """VOC07MApMetric (11 points, gluoncv's thresholds) and VOCMApMetric at IoU 0.5 on randomized detections with
    difficult ground truths and distinct scores: gluoncv's per-class APs and mAP to 1e-12."""
    _assert_voc_metrics(load("voc_metrics"), "no_ties", "stable")


def test_voc_metrics_with_ties_equal_gluoncv():
    """The same with scores rounded to one decimal, ranked as gluoncv ranks equal scores (tie_order='gluoncv'):
    gluoncv ranks with numpy's ``argsort()[::-1]``, and gluon_ssd's metric reproduces numpy 1.23's order of equal
    values whatever numpy runs it (numpy 2's SIMD sorts order them otherwise: the stored probe shows it)."""
    _assert_voc_metrics(load("voc_metrics"), "ties", "gluoncv")


# ------------------------------------------------------------------------- (g) stale references (MXNet)
# Arrays computed by a network forward: oneDNN picks other kernels (summation orders) on other CPUs, so these
# are compared to 1e-5 of their largest value (a tenth of the twin's bound); everything else must be equal.
_FORWARD_KEYS = ("cls_preds", "box_preds", "scores", "boxes")
_LOSS_KEYS = ("sum_loss", "cls_loss", "box_loss")


@pytest.mark.mxnet
def test_stored_references_are_what_gluoncv_writes_now(tmp_path):
    """Every writer of tests/references/write.py run again into a temporary folder: the stored files must hold
    what gluoncv writes now (only the dates differ). A failure means they are stale: rewrite them."""
    import bz2

    from tests.references.write import write

    stale = []
    for new in write(tmp_path, log=lambda message: None):
        name = new.name
        old = FOLDER / name
        if not old.is_file():
            stale.append(f"{name}: not stored")
            continue
        if name.endswith(".bz2"):
            if bz2.decompress(old.read_bytes()) != bz2.decompress(new.read_bytes()):
                stale.append(f"{name}: other bytes")
            continue
        stored, now = load(name), np.load(new, allow_pickle=False)
        if set(stored) != set(now.files):
            stale.append(f"{name}: keys {sorted(set(stored) ^ set(now.files))} differ")
            continue
        for key in sorted(set(stored) - {"written_by"}):
            a, b = now[key], stored[key]
            if a.shape != b.shape or a.dtype != b.dtype:
                stale.append(f"{name}:{key}: {a.dtype}{a.shape} now, {b.dtype}{b.shape} stored")
            elif key in _FORWARD_KEYS or key in _LOSS_KEYS:
                scale = 1e-5 * max(1.0, float(np.abs(b).max())) if key in _FORWARD_KEYS else 1e-6 * np.abs(b)
                if not np.all(np.abs(a.astype(np.float64) - b) <= scale):
                    stale.append(f"{name}:{key}: differs by {float(np.abs(a.astype(np.float64) - b).max()):.3g}")
            elif not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
                stale.append(f"{name}:{key}: other values")
    assert not stale, f"stale references (rewrite them with {REGENERATE}):\n" + "\n".join(stale)
