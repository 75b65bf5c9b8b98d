"""Benchmark the detection metrics against their references, measured in the same run.

1. VOC07 11-point mAP over a VOC07-test-sized synthetic set (4952 images, 100 detections each, 20 classes,
   fed in batches as an eval loop does): gluon_ssd.eval.VOC07MApMetric vs gluoncv's VOC07MApMetric.
   Both values are printed and must be identical.
2. COCO bbox evaluation of a synthetic set: coco_stats with pycocotools vs faster-coco-eval.

Usage: python bench/bench_metrics.py [--images 4952] [--batch-size 64] [--coco-images 2000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from importlib import metadata

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gluon_ssd._env  # noqa: E402,F401
from gluon_ssd.eval import COCO_STAT_NAMES, VOC07MApMetric, coco_stats  # noqa: E402
from tests.oracle import import_gluoncv  # noqa: E402


def synthetic_voc(n_images, n_dets, n_classes, batch_size, seed):
    """Batches of (pred boxes, labels, scores, gt boxes, gt labels, difficult), float32 like a network's.

    Scores are distinct (k / 2**20), so the ranking has no ties and any tie convention gives one answer.
    """
    rng = np.random.default_rng(seed)
    max_gt = 12
    unique_scores = (rng.permutation(n_images * n_dets) / 2.0**20).astype(np.float32)
    batches = []
    for start in range(0, n_images, batch_size):
        b = min(batch_size, n_images - start)
        n_gt = rng.integers(1, max_gt + 1, b)
        xy = rng.uniform(0, 400, (b, max_gt, 2))
        wh = rng.uniform(10, 200, (b, max_gt, 2))
        gt_boxes = np.round(np.concatenate([xy, xy + wh], axis=2)).astype(np.float32)
        gt_labels = rng.integers(0, n_classes, (b, max_gt)).astype(np.float32)
        pad = np.arange(max_gt)[None, :] >= n_gt[:, None]
        gt_labels[pad] = -1
        gt_boxes[pad] = -1
        difficult = ((rng.random((b, max_gt)) < 0.15) & ~pad).astype(np.float32)
        # Each detection jitters a random ground truth of its image (any class) or is a random box.
        source = (rng.random((b, n_dets)) * n_gt[:, None]).astype(int)
        boxes = np.take_along_axis(gt_boxes, source[..., None], axis=1) + rng.normal(0, 12, (b, n_dets, 4))
        labels = np.take_along_axis(gt_labels, source, axis=1)
        random_rows = rng.random((b, n_dets)) < 0.5
        labels[random_rows] = rng.integers(0, n_classes, random_rows.sum())
        boxes[random_rows] = np.tile(rng.uniform(0, 400, (random_rows.sum(), 2)), 2) + [0, 0, 60, 60]
        scores = unique_scores[start * n_dets:(start + b) * n_dets].reshape(b, n_dets)
        batches.append((boxes.astype(np.float32), labels[..., None], scores[..., None], gt_boxes,
                        gt_labels[..., None], difficult[..., None]))
    return batches


def time_metric(metric_factory, batches, repeat):
    best, value = float("inf"), None
    for _ in range(repeat):
        metric = metric_factory()
        start = time.perf_counter()
        for batch in batches:
            metric.update(*batch)
        value = metric.get()
        best = min(best, time.perf_counter() - start)
    return best, value


def synthetic_coco(n_images, n_dets, n_categories, seed):
    rng = np.random.default_rng(seed)
    categories = [{"id": 1 + 2 * k, "name": f"c{k}"} for k in range(n_categories)]
    images, annotations, detections = [], [], []
    for image_id in range(1, n_images + 1):
        images.append({"id": image_id, "width": 640, "height": 480})
        n_gt = int(rng.integers(1, 10))
        xy = rng.uniform(0, 400, (n_gt, 2))
        wh = rng.uniform(4, 240, (n_gt, 2))
        cats = rng.integers(0, n_categories, n_gt)
        for k in range(n_gt):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": categories[cats[k]]["id"], "bbox": [*xy[k], *wh[k]],
                                "area": float(wh[k].prod()), "iscrowd": 0})
        source = rng.integers(0, n_gt, n_dets)
        det_xy = xy[source] + rng.normal(0, 6, (n_dets, 2))
        det_wh = wh[source] * rng.uniform(0.8, 1.2, (n_dets, 2))
        det_cat = np.where(rng.random(n_dets) < 0.8, cats[source], rng.integers(0, n_categories, n_dets))
        for k in range(n_dets):
            detections.append({"image_id": image_id, "category_id": categories[det_cat[k]]["id"],
                               "bbox": [*det_xy[k], *det_wh[k]], "score": float(rng.random())})
    return {"images": images, "annotations": annotations, "categories": categories}, detections


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4952)
    parser.add_argument("--dets", type=int, default=100)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--coco-images", type=int, default=2000)
    parser.add_argument("--coco-dets", type=int, default=50)
    parser.add_argument("--coco-repeat", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", DeprecationWarning)

    import_gluoncv()
    from gluoncv.utils.metrics.voc_detection import VOC07MApMetric as GluoncvVOC07

    versions = ", ".join(f"{pkg} {metadata.version(pkg)}"
                         for pkg in ("numpy", "mxnet", "gluoncv", "pycocotools", "faster-coco-eval"))
    print(f"# machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"{versions}")
    batches = synthetic_voc(args.images, args.dets, args.classes, args.batch_size, args.seed)
    n_det = sum(int((b[1] >= 0).sum()) for b in batches)
    print(f"\n### VOC07 11-point mAP: {args.images} images, {n_det} detections, {args.classes} classes, "
          f"batch {args.batch_size}, best of {args.repeat}")
    t_ref, (_, v_ref) = time_metric(lambda: GluoncvVOC07(0.5), batches, args.repeat)
    t_ours, (_, v_ours) = time_metric(lambda: VOC07MApMetric(0.5), batches, args.repeat)
    t_gcv_ties, (_, v_gcv_ties) = time_metric(lambda: VOC07MApMetric(0.5, tie_order="gluoncv"), batches,
                                              args.repeat)
    print("| implementation | mAP | seconds | speed-up vs gluoncv |")
    print("|---|---|---|---|")
    print(f"| gluoncv VOC07MApMetric | {v_ref!r} | {t_ref:.3f} | 1.00x |")
    print(f"| gluon_ssd VOC07MApMetric | {v_ours!r} | {t_ours:.3f} | {t_ref / t_ours:.2f}x |")
    print(f"| gluon_ssd VOC07MApMetric(tie_order='gluoncv') | {v_gcv_ties!r} | {t_gcv_ties:.3f} | "
          f"{t_ref / t_gcv_ties:.2f}x |")
    identical = v_ours == v_ref and v_gcv_ties == v_ref
    print(f"identical values: {identical}")

    if args.coco_images > 0:
        gt, dets = synthetic_coco(args.coco_images, args.coco_dets, 20, args.seed)
        print(f"\n### COCO bbox eval: {args.coco_images} images, {len(gt['annotations'])} GT, {len(dets)} "
              f"detections, 20 categories, best of {args.coco_repeat}")
        with tempfile.TemporaryDirectory() as tmp:
            gt_path, det_path = os.path.join(tmp, "gt.json"), os.path.join(tmp, "det.json")
            with open(gt_path, "w") as f:
                json.dump(gt, f)
            with open(det_path, "w") as f:
                json.dump(dets, f)
            results = {}
            for backend in ("pycocotools", "faster"):
                best = float("inf")
                for _ in range(args.coco_repeat):
                    start = time.perf_counter()
                    stats = coco_stats(gt_path, det_path, backend=backend)
                    best = min(best, time.perf_counter() - start)
                results[backend] = (best, stats)
        t_py, s_py = results["pycocotools"]
        t_fast, s_fast = results["faster"]
        print("| backend | AP | AP50 | AR100 | seconds | speed-up vs pycocotools |")
        print("|---|---|---|---|---|---|")
        for name, (t, s) in results.items():
            print(f"| {name} | {s['AP']:.6f} | {s['AP50']:.6f} | {s['AR100']:.6f} | {t:.2f} | "
                  f"{t_py / t:.2f}x |")
        diff = max(abs(s_py[k] - s_fast[k]) for k in COCO_STAT_NAMES)
        print(f"max |difference| over the 12 stats: {diff:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
