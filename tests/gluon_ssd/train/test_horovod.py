"""Horovod (Gloo, loopback): 2 ranks of train_ssd.py --horovod equal one process on the combined batch.

Needs horovod built with MXNet support in the venv (`make horovod`); skipped without it.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gluon_ssd.train import checkpoint as ckpt
from tests.gluon_ssd.train import test_distributed as test_train_distributed
from tests.gluon_ssd.train.test_distributed import NAME, _args, assert_workers_take_the_steps_of_one_process

tiny_dataset = test_train_distributed.tiny_dataset  # its module fixture: the same 4 images

# ImportError too: horovod built without MXNet raises it from horovod.mxnet.
pytest.importorskip("horovod.mxnet", reason="horovod with MXNet support is not installed: run `make horovod`",
                    exc_type=ImportError)

HOROVODRUN = str(Path(sys.executable).parent / "horovodrun")


def _horovodrun(dataset, prefix, folder):
    """train_ssd.py --horovod on 2 Gloo ranks over loopback. ``prefix`` is the --save-prefix as sh expands
    it, with ``folder`` as $0 (so a rank can name its own folder from HOROVOD_RANK)."""
    train = " ".join(f"'{a}'" for a in [sys.executable, *_args(dataset, "PREFIX", "--horovod")])
    cmd = [HOROVODRUN, "--gloo", "--network-interfaces", "lo", "-np", "2", "-H", "localhost:2",
           "sh", "-c", "exec " + train.replace("'PREFIX'", prefix), str(folder)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, PYTHONUNBUFFERED="1"))
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert "2 worker(s) x 1 device(s)" in out  # both ranks joined one horovod job of size 2


@pytest.mark.slow
def test_horovod_two_ranks_equal_one_process(tiny_dataset, tmp_path):
    # 1) Each rank its own --save-prefix (r0/, r1/), to see what every rank writes and compare the ranks.
    _horovodrun(tiny_dataset, '"$0/r$HOROVOD_RANK/"', tmp_path)
    # 2) One --save-prefix for both, as a user runs it: both ranks replace the same _last.ckpt.
    _horovodrun(tiny_dataset, '"$0/shared/"', tmp_path)
    single = subprocess.run([sys.executable, *_args(tiny_dataset, str(tmp_path / "single") + "/")],
                            capture_output=True, text=True, timeout=420)
    assert single.returncode == 0, single.stderr[-3000:]

    # Rank 0 writes metrics and curves; rank 1 its checkpoint (every rank keeps one to resume from) and
    # its own log file (cli/train.py: ranks after the first log to _train.rank{N}.log).
    listing = {d: sorted(p.name for p in (tmp_path / d).iterdir()) for d in ("r0", "r1", "shared")}
    assert listing["r1"] == [f"{NAME}_last.ckpt", f"{NAME}_train.rank1.log"], listing["r1"]
    assert listing["r0"] == sorted(f"{NAME}_{s}" for s in ("curves.png", "last.ckpt", "metrics.jsonl",
                                                           "train.log")), listing
    assert listing["shared"] == sorted(listing["r0"] + [f"{NAME}_train.rank1.log"]), listing
    # 2 iterations and 1 epoch, recorded once (by rank 0 alone) in the shared folder too.
    assert len((tmp_path / "shared" / f"{NAME}_metrics.jsonl").read_text().splitlines()) == 3

    names = ("r0", "r1", "shared", "single")
    h0, h1, shared, one = (ckpt.load_checkpoint(tmp_path / d / f"{NAME}_last.ckpt") for d in names)
    assert all(c.meta["iteration"] == 2 for c in (h0, h1, shared, one))
    assert h0.meta["config"]["horovod"] and not one.meta["config"]["horovod"]
    assert h0.params.keys() == h1.params.keys() == shared.params.keys() == one.params.keys()
    # A wrong gradient scale (the mean over ranks instead of the sum, or the sum twice) is a factor of 2 in
    # the update: far outside the tolerance. Measured: per tensor 1.6e-4 of the update, overall 1.1e-5.
    assert_workers_take_the_steps_of_one_process([h0, h1], one, tiny_dataset, tmp_path)
    assert_workers_take_the_steps_of_one_process([shared, h0], one, tiny_dataset, tmp_path)
