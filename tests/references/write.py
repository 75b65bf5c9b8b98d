"""Write every stored reference of tests/references with gluoncv: ``python -m tests.references.write``.

Run it from the project root in the MXNet stack's environment (``.venv/bin/python -m tests.references.write``,
or ``make references``): it needs mxnet and gluoncv, which the PyTorch stack cannot install. ``--only FILE``
rewrites the files of the writers that write FILE; ``--out DIR`` writes into DIR instead of tests/references
(the staleness test of tests/test_references.py does). Everything is seeded: a rerun writes the same numbers,
only the dates of the ``written_by`` strings change. What each file holds: README.md of this folder.
"""
from __future__ import annotations

import argparse
import bz2
import contextlib
import datetime
import hashlib
import importlib
import importlib.metadata
import inspect
import io
import json
import os
import pathlib
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

from tests.references import (
    DATA,
    FOLDER,
    data_path,
    digest,
    head_scales_for,
    padded_shapes,
    seeded_predictions,
    seeded_weights,
)

# (a) the twin's fidelity on gluoncv's own file: a small SSD, two real photos at the model's size.
TWIN_MODEL, TWIN_SIZE, TWIN_SEED = "ssd_300_mobilenet0.25_voc", 300, 1
# JPEGs that opencv-python decodes to MXNet's pixels (unlike demo_images/darknet/dog.jpg, off by 2 grey levels), so
# that the validation transform's comparison without MXNet isolates the resize.
TWIN_PHOTOS = ("voc_sample/VOCdevkit/VOC2007/JPEGImages/000001.jpg",
               "coco_sample/tinycoco/images/train2017/000000017627.jpg")
NMS = (0.45, 400, 100)  # gluoncv's SSD defaults, set explicitly
# (b) the four headline models: seeded weights (not stored), one photo at the smallest input each takes.
HEADLINE_SEEDS = {"ssd_300_vgg16_atrous_voc": 11, "ssd_512_vgg16_atrous_voc": 12, "ssd_512_resnet50_v1_voc": 13,
                  "ssd_512_mobilenet1.0_voc": 14}
HEADLINE_PHOTO = "voc_sample/VOCdevkit/VOC2007/JPEGImages/000001.jpg"
# (c, d) targets and loss: the real anchors of one model at its size and the boxes of VOC sample images.
TARGET_MODEL, TARGET_SIZE, TARGET_IMAGES, PREDICTION_SEED = "ssd_300_vgg16_atrous_voc", 300, 8, 21
VOC_ROOT = "voc_sample/VOCdevkit"
VOC_SPLITS = ((2007, "test"), (2012, "test"))
COCO_ROOT = "coco_sample/tinycoco"
COCO_SPLITS = ("instances_train2017", "instances_val2017")
# gluoncv's defaults (use_crowd=True, which gluon_ssd's training and evaluation use too) and use_crowd=False
# (gluon_ssd's custom COCO-format data); skip_empty is gluoncv's default.
COCO_SETTINGS = {"default": {}, "no_crowd": {"use_crowd": False}}
# (e) validation resize: each of MXNet's interp=9 choices (area shrinking both sides, bicubic growing both,
# bilinear otherwise) on real photos; the two 300 x 300 ones are the photos of (a) at its size.
SMALL_PHOTO = "coco_sample/tinycoco/images/train2017/000000037777.jpg"  # 352 x 230
RESIZES = ((TWIN_PHOTOS[0], 300, 300), (TWIN_PHOTOS[1], 300, 300), (SMALL_PHOTO, 384, 256), (SMALL_PHOTO, 300, 300))
# (f) VOC metrics on randomized sets (the generator of tests/gluon_ssd/eval/test_voc.py): with tied scores (compared
# with tie_order='gluoncv') and without.
METRIC_SETS = {"ties": (2, True), "no_ties": (202, False)}
METRIC_CLASSES, METRIC_BATCHES = 5, 3
# How the writer's numpy orders equal values in argsort (its default quicksort): gluoncv ranks detections so, and
# other numpy versions order ties otherwise (numpy 2's SIMD sorts).
TIE_PROBE_SEED, TIE_PROBE_SIZE = 0, 64
SORT_PROBE_SIZES = (16, 17, 33, 100, 1000, 5000)

WRITERS: dict[str, tuple[Callable, tuple[str, ...]]] = {}


def writes(*files: str):
    """Register a writer ``fn(out_dir, gcv)`` under the files it writes."""
    def register(fn):
        WRITERS[fn.__name__] = (fn, files)
        return fn
    return register


def _mx():
    import mxnet as mx

    return mx


def written_by(fn: Callable) -> str:
    """What wrote a file: versions, this module's function, today's date."""
    versions = (f"gluoncv {importlib.metadata.version('gluoncv')}, mxnet {importlib.metadata.version('mxnet')}, "
                f"numpy {np.__version__}")
    return f"{versions}; tests/references/write.py:{fn.__name__}; {datetime.date.today().isoformat()}"


def save(out: pathlib.Path, name: str, fn: Callable, arrays: dict) -> pathlib.Path:
    """``out/name`` as a compressed npz of ``arrays`` plus ``written_by``; strings become unicode arrays."""
    file = out / name
    for key, value in arrays.items():
        if isinstance(value, np.ndarray) and value.dtype == object:
            raise TypeError(f"{name}: {key} is an object array, which np.load cannot read without pickle")
    tmp = file.with_name(file.name + ".tmp.npz")
    np.savez_compressed(tmp, written_by=np.array(written_by(fn)), **arrays)
    os.replace(tmp, file)
    return file


# ------------------------------------------------------------------------------------------ gluoncv pieces
def gluoncv_photo_batch(gcv, photos, width, height):
    """Photos of the shared data through gluoncv's SSDDefaultValTransform, stacked: mx.nd (B, 3, height, width)."""
    mx = _mx()
    transform = gcv.data.transforms.presets.ssd.SSDDefaultValTransform(width, height)
    images = [transform(mx.image.imread(str(data_path(p))), np.zeros((0, 6), dtype=np.float32))[0] for p in photos]
    return mx.nd.stack(*images)


def gluoncv_raw_outputs(net, x) -> dict[str, np.ndarray]:
    """gluoncv's raw outputs in inference mode (BatchNorm on running statistics, the mode its detections use):
    'cls_preds' (B, N, C+1) logits, 'box_preds' (B, N, 4) offsets, 'anchors' (1, N, 4) centre format.

    gluoncv returns these only in training mode (BatchNorm on batch statistics), so they are laid out here from
    ``net.features`` and the heads as gluoncv's forward lays them out, and checked against what its forward
    hands its decoders in the same call (box offsets and anchors equal, softmax of the logits within 1e-6).
    """
    mx = _mx()
    seen = {}
    handles = [net.bbox_decoder.register_forward_pre_hook(lambda block, args: seen.update(box=args)),
               net.cls_decoder.register_forward_pre_hook(lambda block, args: seen.update(cls=args))]
    try:
        with mx.autograd.predict_mode():
            feats = net.features(x)
            cls = [mx.nd.flatten(mx.nd.transpose(p(f), (0, 2, 3, 1))) for p, f in zip(net.class_predictors, feats)]
            box = [mx.nd.flatten(mx.nd.transpose(p(f), (0, 2, 3, 1))) for p, f in zip(net.box_predictors, feats)]
            anchors = [gen(f).reshape((1, -1)) for gen, f in zip(net.anchor_generators, feats)]
            net(x)
    finally:
        for handle in handles:
            handle.detach()
    out = {"cls_preds": mx.nd.concat(*cls, dim=1).reshape((0, -1, net.num_classes + 1)).asnumpy(),
           "box_preds": mx.nd.concat(*box, dim=1).reshape((0, -1, 4)).asnumpy(),
           "anchors": mx.nd.concat(*anchors, dim=1).reshape((1, -1, 4)).asnumpy()}
    box_preds, hooked_anchors = (a.asnumpy() for a in seen["box"])
    np.testing.assert_array_equal(out["box_preds"], box_preds)
    np.testing.assert_array_equal(out["anchors"], hooked_anchors)
    probs = mx.nd.softmax(mx.nd.array(out["cls_preds"]), axis=-1).asnumpy()
    np.testing.assert_allclose(probs, seen["cls"][0].asnumpy(), rtol=0, atol=1e-6)
    return out


def seeded_gluoncv_model(gcv, name: str, seed: int, probe):
    """gluoncv's zoo model ``name`` with :func:`seeded_weights` (head scales measured on the batch ``probe``).

    Returns (net, keys, shapes, head scales, weights).
    """
    mx = _mx()
    from tests.helpers import build_reference

    net = build_reference(gcv, name)
    params = net._collect_params_with_prefix()
    keys = list(params)
    shapes = [tuple(params[k].shape) for k in keys]

    def assign(weights):
        for key, value in weights.items():
            params[key].set_data(mx.nd.array(value, dtype="float32"))

    assign(seeded_weights(keys, shapes, seed))
    with mx.autograd.predict_mode():
        feats = net.features(probe)
        stds = {}
        for kind in ("class_predictors", "box_predictors"):
            for i, (head, feat) in enumerate(zip(getattr(net, kind), feats)):
                stds[f"{kind}.{i}"] = float(head(feat).asnumpy().std())
    scales = head_scales_for(stds)
    weights = seeded_weights(keys, shapes, seed, scales)
    assign(weights)
    return net, keys, shapes, scales, weights


def _scale_arrays(scales: dict) -> dict:
    return {"head_scale_keys": np.array(list(scales)), "head_scale_values": np.array(list(scales.values()))}


# ----------------------------------------------------------------------------------------------- writers
@writes(f"{TWIN_MODEL}_gluoncv.params.bz2", f"{TWIN_MODEL}_gluoncv.npz")
def write_twin_fidelity(out: pathlib.Path, gcv) -> None:
    """(a) A small SSD with seeded weights, saved by gluoncv's save_parameters, and its outputs on two photos."""
    mx = _mx()
    batch = gluoncv_photo_batch(gcv, TWIN_PHOTOS, TWIN_SIZE, TWIN_SIZE)
    net, keys, _, scales, _ = seeded_gluoncv_model(gcv, TWIN_MODEL, TWIN_SEED, batch)
    with tempfile.TemporaryDirectory() as tmp:
        params_file = os.path.join(tmp, f"{TWIN_MODEL}.params")
        net.save_parameters(params_file)
        data = pathlib.Path(params_file).read_bytes()
    (out / f"{TWIN_MODEL}_gluoncv.params.bz2").write_bytes(bz2.compress(data, 9))
    net.set_nms(*NMS)
    raw = gluoncv_raw_outputs(net, batch)
    with mx.autograd.predict_mode():
        ids, scores, boxes = (o.asnumpy() for o in net(batch))
    save(out, f"{TWIN_MODEL}_gluoncv.npz", write_twin_fidelity, {
        "network": np.array(TWIN_MODEL), "params_sha256": np.array(hashlib.sha256(data).hexdigest()),
        "seed": np.array(TWIN_SEED), **_scale_arrays(scales), "photos": np.array(TWIN_PHOTOS),
        "batch": batch.asnumpy(), **raw, "nms": np.array(NMS, dtype=np.float64), "ids": ids, "scores": scores,
        "boxes": boxes})


@writes(*(f"{name}_seeded.npz" for name in HEADLINE_SEEDS))
def write_seeded_models(out: pathlib.Path, gcv) -> None:
    """(b) The headline models with seeded weights (not stored) and gluoncv's raw outputs on one photo."""
    from tests.helpers import smallest_size

    for name, seed in HEADLINE_SEEDS.items():
        size = smallest_size(name)
        x = gluoncv_photo_batch(gcv, [HEADLINE_PHOTO], size, size)
        net, keys, shapes, scales, weights = seeded_gluoncv_model(gcv, name, seed, x)
        params = net._collect_params_with_prefix()
        constants = [k for k in keys if k not in weights and not k.startswith("anchor_generators.")]
        save(out, f"{name}_seeded.npz", write_seeded_models, {
            "network": np.array(name), "param_keys": np.array(keys), "param_shapes": padded_shapes(shapes),
            "seed": np.array(seed), **_scale_arrays(scales), "weights_sha256": np.array(digest(weights)),
            "constant_keys": np.array(constants, dtype=str).reshape(-1),
            **{f"constant.{k}": params[k].data().asnumpy() for k in constants},
            "photo": np.array(HEADLINE_PHOTO), "input": x.asnumpy(), **gluoncv_raw_outputs(net, x)})


def gluoncv_voc(gcv):
    return gcv.data.VOCDetection(str(DATA / VOC_ROOT), splits=VOC_SPLITS)


def _target_module():
    # gcv.model_zoo.ssd is shadowed by smot's ssd module (GluonCV #1634): import the module by its path.
    return importlib.import_module("gluoncv.model_zoo.ssd.target")


def target_inputs(gcv):
    """(anchors (1, N, 4), labels (B, M, 6) padded with -1, image ids) of the targets and the loss."""
    mx = _mx()
    net = gcv.model_zoo.get_model(TARGET_MODEL, pretrained_base=False)
    net.initialize()
    with mx.autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, TARGET_SIZE, TARGET_SIZE)))
    voc = gluoncv_voc(gcv)
    bbox = importlib.import_module("gluoncv.data.transforms.bbox")
    rows, ids = [], []
    for i in range(TARGET_IMAGES):
        image, label = voc[i]
        height, width = image.shape[:2]
        # gluoncv's own box resize (what its SSD transforms apply) to the network's input size.
        rows.append(bbox.resize(label.copy(), (width, height), (TARGET_SIZE, TARGET_SIZE)).astype(np.float32))
        ids.append(f"VOC{voc._items[i][0].rsplit('VOC', 1)[-1]}/{voc._items[i][1]}")
    labels = np.full((len(rows), max(len(r) for r in rows), 6), -1, dtype=np.float32)
    for i, r in enumerate(rows):
        labels[i, :len(r)] = r
    return anchors, labels, ids


def gluoncv_targets(gcv, anchors, labels, cls_preds=None):
    """gluoncv's SSDTargetGenerator one image at a time with only its real rows (on padding rows gluoncv writes
    -inf box targets): with ``cls_preds`` its defaults (hard negatives mined in the generator), else
    negative_mining_ratio=-1. (cls_targets (B, N), box_targets (B, N, 4), box_masks (B, N, 4)) float32."""
    mx = _mx()
    target = _target_module()
    generator = target.SSDTargetGenerator() if cls_preds is not None else \
        target.SSDTargetGenerator(negative_mining_ratio=-1)
    outs = []
    for i, lab in enumerate(labels):
        real = lab[(lab >= 0).all(axis=1)][None]
        preds = None if cls_preds is None else mx.nd.array(cls_preds[i:i + 1])
        outs.append([o.asnumpy() for o in generator(anchors, preds, mx.nd.array(real[:, :, :4]),
                                                     mx.nd.array(real[:, :, 4:5]))])
    return [np.concatenate([o[k] for o in outs]) for k in range(3)]


def _prediction_arrays(preds, shape) -> dict:
    return {"prediction_seed": np.array(PREDICTION_SEED), "prediction_shape": np.array(shape),
            "predictions_sha256": np.array(digest(preds))}


@writes("ssd_targets.npz")
def write_targets(out: pathlib.Path, gcv) -> None:
    """(c) SSDTargetGenerator with negative_mining_ratio=-1 and with its defaults, on real anchors and boxes."""
    anchors, labels, ids = target_inputs(gcv)
    shape = (len(labels), anchors.shape[1], 21)
    preds = seeded_predictions(PREDICTION_SEED, shape[0], shape[1], shape[2] - 1)
    cls, box, mask = gluoncv_targets(gcv, anchors, labels)
    ohem_cls, ohem_box, ohem_mask = gluoncv_targets(gcv, anchors, labels, cls_preds=preds[0])
    save(out, "ssd_targets.npz", write_targets, {
        "network": np.array(TARGET_MODEL), "anchors": anchors.asnumpy(), "labels": labels, "image_ids": np.array(ids),
        "cls_targets": cls, "box_targets": box, "box_masks": mask, "ohem_cls_targets": ohem_cls,
        "ohem_box_targets": ohem_box, "ohem_box_masks": ohem_mask, **_prediction_arrays(preds, shape)})


@writes("ssd_loss.npz")
def write_loss(out: pathlib.Path, gcv) -> None:
    """(d) SSDMultiBoxLoss on seeded predictions and the targets of write_targets (negative_mining_ratio=-1)."""
    mx = _mx()
    anchors, labels, _ = target_inputs(gcv)
    cls_t, box_t, _ = gluoncv_targets(gcv, anchors, labels)
    shape = (len(labels), anchors.shape[1], 21)
    preds = seeded_predictions(PREDICTION_SEED, shape[0], shape[1], shape[2] - 1)
    total, cls_loss, box_loss = gcv.loss.SSDMultiBoxLoss()(
        [mx.nd.array(preds[0])], [mx.nd.array(preds[1])], [mx.nd.array(cls_t)], [mx.nd.array(box_t)])
    save(out, "ssd_loss.npz", write_loss, {
        "sum_loss": total[0].asnumpy(), "cls_loss": cls_loss[0].asnumpy(), "box_loss": box_loss[0].asnumpy(),
        "negative_mining_ratio": np.array(3.0), "rho": np.array(1.0), "lambd": np.array(1.0),
        **_prediction_arrays(preds, shape)})


def _stacked(labels: list[np.ndarray], prefix: str) -> dict:
    """Variable-length label arrays as one (R, K) array and the (L,) row counts."""
    width = max((lab.shape[1] for lab in labels if lab.ndim == 2), default=6)
    rows = [lab.reshape(-1, width).astype(np.float32) for lab in labels]
    return {f"{prefix}_labels": np.concatenate(rows), f"{prefix}_counts": np.array([len(r) for r in rows])}


@writes("datasets.npz")
def write_datasets(out: pathlib.Path, gcv) -> None:
    """(e) VOCDetection and COCODetection labels on the shared samples (gluoncv's defaults; COCO also
    use_crowd=False)."""
    voc = gluoncv_voc(gcv)
    arrays = {"voc_root": np.array(VOC_ROOT), "voc_splits": np.array([f"{y}_{s}" for y, s in VOC_SPLITS]),
              "voc_images": np.array([f"VOC{root.rsplit('VOC', 1)[-1]}/JPEGImages/{i}.jpg" for root, i in voc._items]),
              **_stacked([voc[i][1] for i in range(len(voc))], "voc")}
    with tempfile.TemporaryDirectory() as tmp:
        # gluoncv finds COCO images by the folder of their coco_url; tinycoco's folders are swapped and nested.
        root = pathlib.Path(tmp)
        (root / "annotations").symlink_to(DATA / COCO_ROOT / "annotations")
        (root / "val2017").symlink_to(DATA / COCO_ROOT / "images/train2017")
        (root / "train2017").symlink_to(DATA / COCO_ROOT / "images/val2017")
        for split in COCO_SPLITS:
            for setting, kwargs in COCO_SETTINGS.items():
                with contextlib.redirect_stdout(io.StringIO()):  # pycocotools reports its loading
                    ds = gcv.data.COCODetection(str(root), splits=(split,), **kwargs)
                prefix = f"coco_{split}_{setting}"
                arrays.update(_stacked([ds[i][1] for i in range(len(ds))], prefix))
                arrays[f"{prefix}_images"] = np.array([os.path.basename(p) for p in ds._items])
        arrays["coco_contiguous_id_to_json"] = np.array([ds.contiguous_id_to_json[i] for i in range(len(ds.classes))])
    arrays.update(coco_root=np.array(COCO_ROOT), coco_settings=np.array(
        [f"{name}: {json.dumps(kw)}" for name, kw in COCO_SETTINGS.items()]))
    save(out, "datasets.npz", write_datasets, arrays)


@writes("val_transform.npz")
def write_val_transform(out: pathlib.Path, gcv) -> None:
    """(e) The resize of gluoncv's SSDDefaultValTransform (uint8, before normalization) on real photos."""
    mx = _mx()
    image = importlib.import_module("gluoncv.data.transforms.image")
    transform = gcv.data.transforms.presets.ssd.SSDDefaultValTransform
    arrays = {"photos": np.array([p for p, _, _ in RESIZES]), "sizes": np.array([(w, h) for _, w, h in RESIZES])}
    for i, (photo, width, height) in enumerate(RESIZES):
        src = mx.image.imread(str(data_path(photo)))
        # The call SSDDefaultValTransform makes; its normalized output is checked to be this image's.
        resized = image.imresize(src, width, height, interp=9)
        normalized = transform(width, height)(src, np.zeros((0, 6), dtype=np.float32))[0]
        again = mx.nd.image.normalize(mx.nd.image.to_tensor(resized), mean=(0.485, 0.456, 0.406),
                                      std=(0.229, 0.224, 0.225))
        np.testing.assert_array_equal(again.asnumpy(), normalized.asnumpy())
        arrays[f"resized_{i}"] = resized.asnumpy()
        arrays[f"source_hw_{i}"] = np.array(src.shape[:2])
    save(out, "val_transform.npz", write_val_transform, arrays)


@writes("voc_metrics.npz")
def write_voc_metrics(out: pathlib.Path, gcv) -> None:
    """(f) VOC07MApMetric and VOCMApMetric (IoU 0.5) on randomized detections with difficult ground truths."""
    from tests.gluon_ssd.eval.test_voc import _random_batch

    metrics = gcv.utils.metrics.voc_detection
    names = [f"c{i}" for i in range(METRIC_CLASSES)]
    fields = ("pred_bboxes", "pred_labels", "pred_scores", "gt_bboxes", "gt_labels", "gt_difficults")
    probe = np.round(np.random.default_rng(TIE_PROBE_SEED).random(TIE_PROBE_SIZE), 1).astype(np.float32)
    arrays = {"class_names": np.array(names), "iou_thresh": np.array(0.5), "tie_probe": probe,
              "tie_probe_argsort": probe.argsort()}
    # numpy's own orders of equal values (the numpy gluoncv runs with), which gluon_ssd.eval.argsort.numpy123_argsort
    # reproduces: tie-heavy probes around the insertion-sort limit and beyond, NaNs included, and its heapsort.
    rng = np.random.default_rng(TIE_PROBE_SEED + 1)
    for size in SORT_PROBE_SIZES:
        values = np.round(rng.random(size), 1).astype(np.float32)
        values[rng.random(size) < 0.05] = np.nan
        arrays[f"sort_probe_{size}"] = values
        arrays[f"sort_probe_{size}_argsort"] = values.argsort()
        arrays[f"sort_probe_{size}_heapsort"] = values.argsort(kind="heapsort")
    for set_name, (seed, ties) in METRIC_SETS.items():
        rng = np.random.default_rng(seed)
        batches = [_random_batch(rng, 8, 40, 10, METRIC_CLASSES, ties=ties) for _ in range(METRIC_BATCHES)]
        for kind, cls in (("voc07", metrics.VOC07MApMetric), ("voc", metrics.VOCMApMetric)):
            metric = cls(0.5, names)
            for batch in batches:
                metric.update(*batch)
            value_names, values = metric.get()
            assert list(value_names) == names + ["mAP"], value_names
            arrays[f"{set_name}_{kind}"] = np.array(values, dtype=np.float64)
        for k, field in enumerate(fields):
            arrays[f"{set_name}_{field}"] = np.stack([b[k] for b in batches])
    save(out, "voc_metrics.npz", write_voc_metrics, arrays)


# ------------------------------------------------------------------------------------------------- main
def write(out=FOLDER, only=None, log=print) -> list[pathlib.Path]:
    """Run the writers (all, or those writing the files named in ``only``) into ``out``; the files written."""
    from tests.oracle import import_gluoncv

    gcv = import_gluoncv()
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = [name for name, (_, files) in WRITERS.items() if not only or set(files) & set(only)]
    unknown = set(only or ()) - {f for _, files in WRITERS.values() for f in files}
    if unknown:
        raise SystemExit(f"--only {', '.join(sorted(unknown))}: not a stored file; the files are "
                         + ", ".join(f for _, files in WRITERS.values() for f in files))
    written = []
    for name in chosen:
        fn, files = WRITERS[name]
        start = time.perf_counter()
        fn(out, gcv)
        written += [out / f for f in files]
        log(f"{name}: {', '.join(files)} ({time.perf_counter() - start:.1f} s)")
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.references.write", description=inspect.cleandoc(
        __doc__).split("\n\n")[0])
    parser.add_argument("--out", default=str(FOLDER), help="folder to write into (default: tests/references)")
    parser.add_argument("--only", action="append", metavar="FILE", help="rewrite only the writer(s) of FILE")
    args = parser.parse_args(argv)
    files = write(args.out, args.only)
    total = sum(f.stat().st_size for f in files)
    print(f"{len(files)} files, {total / 1e6:.2f} MB in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
