"""Write the synthetic shapes dataset (:mod:`gluon_ssd.data.synthetic`): the command line.

Example::

    python -m gluon_ssd.cli.synthetic --out shapes --train 1000 --val 200 --seed 0

Exit status 0, or 2 for bad arguments (argparse's).
"""
from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from gluon_ssd.data import synthetic

PROG = "python -m gluon_ssd.cli.synthetic"


def main(argv: Sequence[str] | None = None) -> dict:
    """Command line: ``python -m gluon_ssd.cli.synthetic --out DIR --train N --val M --seed S``; returns the
    summary :func:`~gluon_ssd.data.synthetic.write_synthetic_dataset` returns."""
    p = argparse.ArgumentParser(prog=PROG, description=synthetic.__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--train", type=int, default=1000, help="training images (default 1000)")
    p.add_argument("--val", type=int, default=200, help="validation images (default 200)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--min-size", type=int, default=200, help="smallest image side in px (default 200)")
    p.add_argument("--max-size", type=int, default=400, help="largest image side in px (default 400)")
    p.add_argument("--min-object-size", type=int, default=40, help="smallest shape box side (default 40)")
    p.add_argument("--max-object-size", type=int, default=160, help="largest shape box side (default 160)")
    p.add_argument("--max-objects", type=int, default=6, help="most shapes per image (default 6)")
    p.add_argument("--classes", default=",".join(synthetic.SHAPE_CLASSES),
                   help=f"comma-separated shapes to draw (default: all, {','.join(synthetic.SHAPE_CLASSES)})")
    p.add_argument("--jpeg-quality", type=int, default=90)
    p.add_argument("--clean", action="store_true", help="flat background, no noise (for checks)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return synthetic.write_synthetic_dataset(
            a.out, a.train, a.val, a.seed, min_size=a.min_size, max_size=a.max_size,
            min_object_size=a.min_object_size, max_object_size=a.max_object_size, max_objects=a.max_objects,
            clean=a.clean, classes=[c.strip() for c in a.classes.split(",") if c.strip()],
            jpeg_quality=a.jpeg_quality, progress=not a.no_progress,
        )
    except ValueError as err:
        p.error(str(err))  # exits 2 with the usage line


if __name__ == "__main__":
    main()
