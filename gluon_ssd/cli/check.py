"""Check a detection dataset before training on it (:mod:`gluon_ssd.data.check`).

Examples::

    python -m gluon_ssd.data.check --dataset voc --dataset-root ~/data/VOCdevkit
    python -m gluon_ssd.data.check --dataset custom --dataset-root shapes --network resnet50_v1 --data-shape 512

Prints the splits, the objects per class, the object sizes against the anchors of the model train_ssd.py
would train, and every problem the readers would refuse, drop or change; writes ``box_sizes.png`` and
``dataset_check.json`` to --out-dir. The checks are the library's (:func:`gluon_ssd.data.check.check_dataset`);
the text and the plot are here.

Exit status: 0 when training would work, 1 when it would fail, 2 for bad arguments, 130 when interrupted.
"""
from __future__ import annotations

import collections
import os
import sys

import numpy as np

from gluon_ssd.data.check import DATASETS, SEVERITIES, CheckReport, check_dataset, save_report
from gluon_ssd.fileio import atomic_write

from .common import ArgumentParser, UsageError, check_at_least, run_main, setup_logging

PROG = "python -m gluon_ssd.data.check"
EXIT_TRAINING_WOULD_FAIL = 1
_EXAMPLES_PER_KIND = 5


def parse_args(argv=None):
    p = ArgumentParser(prog=PROG, description="Check a detection dataset before training: what the readers would "
                                              "refuse or drop, objects per class, object sizes against the anchors.")
    p.add_argument("--dataset", required=True, choices=DATASETS, help="dataset kind")
    p.add_argument("--dataset-root", required=True,
                   help="voc: a folder holding VOC<year>/ (VOCdevkit) or VOCdevkit/; coco: the folder holding "
                        "annotations/; custom: the VOC-layout folder")
    p.add_argument("--splits", nargs="+", default=None,
                   help="splits to check, comma- or space-separated: voc YEAR_NAME (2007_test), coco JSON names "
                        "(instances_val2017), custom split names; default: the splits train_ssd.py reads")
    p.add_argument("--data-shape", type=int, default=512, help="network input size (default: %(default)s)")
    p.add_argument("--network", default="mobilenet1.0",
                   help="backbone as train_ssd.py takes it, or a zoo model name (default: %(default)s)")
    p.add_argument("--classes-file", default="classes.txt",
                   help="custom: class names file, relative to --dataset-root (default: %(default)s)")
    p.add_argument("--image-dir", default=None,
                   help="coco: image folder(s) relative to --dataset-root, comma-separated, one for all splits or "
                        "one per split (default: instances_val2017 -> val2017)")
    p.add_argument("--out-dir", default=None,
                   help="where box_sizes.png and dataset_check.json go (default: ./dataset_check_DATASET)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="log the library's messages at INFO level")
    return p.parse_args(argv)


def split_list(values) -> list[str]:
    """``['a,b', 'c']`` -> ``['a', 'b', 'c']``: names given comma- or space-separated."""
    return [s.strip() for v in values or () for s in v.split(",") if s.strip()]


def run(args) -> int:
    setup_logging(verbose=args.verbose)
    check_at_least(args, 1, "data_shape")
    try:
        report = check_dataset(args.dataset, args.dataset_root, splits=split_list(args.splits) or None,
                               data_shape=args.data_shape, network=args.network, classes_file=args.classes_file,
                               image_dir=split_list([args.image_dir]) if args.image_dir else None,
                               progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as err:
        raise UsageError(str(err)) from None
    out_dir = args.out_dir or f"dataset_check_{args.dataset}"
    plot_box_sizes(report, os.path.join(out_dir, "box_sizes.png"))
    save_report(report, os.path.join(out_dir, "dataset_check.json"))  # after the plot: the JSON names it
    print(summary_text(report))
    return 0 if report.ok else EXIT_TRAINING_WOULD_FAIL


def plot_box_sizes(report: CheckReport, path: str) -> str:
    """Histogram of the objects' sizes against the anchor sizes, as a PNG (matplotlib's Agg canvas) at ``path``,
    noted as ``report.plot_path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    sizes, anchors = report.box_sizes, np.asarray(report.anchor_sizes, dtype=np.float64)
    fig = Figure(figsize=(8, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    positive = sizes[sizes > 0]
    lo = max(min(positive.min() if positive.size else 1.0, anchors.min()) / 1.5, 0.5)
    hi = max(positive.max() if positive.size else 1.0, anchors.max()) * 1.5
    bins = np.geomspace(lo, hi, 50)
    ax.hist(positive, bins=bins, color="tab:blue", alpha=0.8, label=f"objects ({sizes.size})")
    ax.axvspan(lo, report.smallest_anchor, color="tab:red", alpha=0.08)
    for k, a in enumerate(anchors):
        ax.axvline(a, color="tab:red" if k == 0 else "tab:gray", ls="--", lw=1,
                   label="anchor sizes" if k == 1 else ("smallest anchor" if k == 0 else None))
    ax.set_xscale("log")
    ax.set_xlabel(f"object size sqrt(w*h), pixels at the {report.data_shape}x{report.data_shape} input")
    ax.set_ylabel("objects")
    share = report.below_smallest_anchor / sizes.size if sizes.size else 0.0
    ax.set_title(f"{report.dataset} dataset {report.root}\n{report.below_smallest_anchor} of {sizes.size} "
                 f"objects ({share:.1%}) are smaller than the smallest anchor ({report.smallest_anchor:.1f} px) "
                 f"of {report.model_name}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")
    report.plot_path = path
    return path


def summary_text(report: CheckReport) -> str:
    """The report for people: splits, objects per class, object sizes against the anchors, the problems by
    severity and kind (every fatal one, a few examples of the others), and whether training would work."""
    lines = []

    def line(text=""):
        lines.append(text)

    line(f"dataset {report.dataset} at {report.root}; anchors of {report.model_name} at "
         f"{report.data_shape}x{report.data_shape}")
    line()
    line(f"{'split':<22}{'role':<7}{'listed':>8}{'usable':>8}{'objects':>9}{'difficult':>10}")
    for s in report.splits:
        line(f"{s.name:<22}{s.role:<7}{s.listed:>8}{s.usable:>8}{sum(s.objects.values()):>9}{s.difficult:>10}")
    line()
    width = max([len(c) for c in report.classes] + [5]) + 2
    counts = report.objects
    line(f"{'class':<{width}}{'objects':>8}")
    for c, n in counts.items():
        if n:
            line(f"{c:<{width}}{n:>8}")
    none = [c for c, n in counts.items() if not n]
    if none:
        line(f"no objects of {len(none)} class(es): {', '.join(none)}")
    line()
    sizes = report.box_sizes
    if sizes.size:
        line(f"object sizes sqrt(w*h) at {report.data_shape}x{report.data_shape}: min {sizes.min():.1f}, median "
             f"{np.median(sizes):.1f}, max {sizes.max():.1f} px; anchor sizes "
             f"{', '.join(f'{a:.1f}' for a in report.anchor_sizes)}")
        line(f"{report.below_smallest_anchor} of {sizes.size} objects ({report.below_smallest_anchor / sizes.size:.1%})"
             f" are smaller than the smallest anchor ({report.smallest_anchor:.1f} px): SSD matches them poorly")
    if report.plot_path:
        line(f"plot: {report.plot_path}; full report: {report.report_path}")
    line()
    by_kind = collections.defaultdict(list)
    for p in report.problems:
        by_kind[(SEVERITIES.index(p.severity), p.severity, p.kind)].append(p)
    if by_kind:
        line(f"{'severity':<9}{'problem':<22}{'count':>7}  files")
    for (_, severity, kind), items in sorted(by_kind.items()):
        line(f"{severity:<9}{kind:<22}{len(items):>7}")
        shown = items if severity == "fatal" else items[:_EXAMPLES_PER_KIND]
        for p in shown:
            line(f"    {p.message}")
        if len(items) > len(shown):
            line(f"    ... and {len(items) - len(shown)} more (see the full report)")
    line()
    if report.ok:
        line("training would work (exit status 0)")
    else:
        line(f"training would fail: {len(report.find(severity='fatal'))} fatal problem(s) (exit status 1)")
    return "\n".join(lines)


def main(argv=None) -> int:
    """``--dataset voc|coco|custom --dataset-root R``: 0 training would work, 1 it would fail, 2 bad arguments."""
    return run_main(PROG, parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
