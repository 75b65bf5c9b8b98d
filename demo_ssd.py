"""Detect objects in images, folders and videos with an SSD (GluonCV's demo_ssd.py: its name). The command is
:mod:`gluon_ssd.cli.demo`; ``python demo_ssd.py --help`` lists the flags."""
import sys

from gluon_ssd.cli.demo import check_args, main, parse_args, run  # noqa: F401  (demo_ssd.main etc. stay importable)

if __name__ == "__main__":
    sys.exit(main())
