"""Check a detection dataset before training on it (:mod:`gluon_ssd.data.check`).

Examples::

    python -m gluon_ssd.data.check --dataset voc --dataset-root ~/data/VOCdevkit
    python -m gluon_ssd.data.check --dataset custom --dataset-root shapes --network resnet50_v1 --data-shape 512

Prints the splits, the objects per class, the object sizes against the anchors of the model train_ssd.py
would train, and every problem the readers would refuse, drop or change; writes ``box_sizes.png`` and
``dataset_check.json`` to --out-dir.

Exit status: 0 when training would work, 1 when it would fail, 2 for bad arguments, 130 when interrupted.
"""
from __future__ import annotations

from .common import ArgumentParser, UsageError, check_at_least, run_main, setup_logging

PROG = "python -m gluon_ssd.data.check"
EXIT_TRAINING_WOULD_FAIL = 1


def parse_args(argv=None):
    from gluon_ssd.data.check import DATASETS

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
    from gluon_ssd.data.check import check_dataset, summary_text

    setup_logging(verbose=args.verbose)
    check_at_least(args, 1, "data_shape")
    try:
        report = check_dataset(args.dataset, args.dataset_root, splits=split_list(args.splits) or None,
                               data_shape=args.data_shape, network=args.network, classes_file=args.classes_file,
                               image_dir=split_list([args.image_dir]) if args.image_dir else None,
                               out_dir=args.out_dir or f"dataset_check_{args.dataset}", progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as err:
        raise UsageError(str(err)) from None
    print(summary_text(report))
    return 0 if report.ok else EXIT_TRAINING_WOULD_FAIL


def main(argv=None) -> int:
    """``--dataset voc|coco|custom --dataset-root R``: 0 training would work, 1 it would fail, 2 bad arguments."""
    return run_main(PROG, parse_args, run, argv)


if __name__ == "__main__":
    import sys

    sys.exit(main())
