"""Evaluate an SSD (GluonCV's eval_ssd.py: its name and flags). The command is :mod:`gluon_ssd.cli.eval`;
``python eval_ssd.py --help`` lists the flags."""
import sys

from gluon_ssd.cli.eval import check_args, main, parse_args, run  # noqa: F401  (eval_ssd.main etc. stay importable)

if __name__ == "__main__":
    sys.exit(main())
