"""Atomic writes (gluon_ssd.fileio) and the files written through them: permissions from the umask, not
mkstemp's 0600; a failing writer leaves the previous file as it was and no temporary file."""
import contextlib
import os
import stat

import mxnet as mx
import pytest

from gluon_ssd import fileio
from gluon_ssd.params import read_param_file, save_ssd_parameters
from gluon_ssd.train import checkpoint as ckpt


@contextlib.contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def _leftovers(folder):
    return [f for f in os.listdir(folder) if f.startswith(fileio.TEMP_PREFIX)]


@pytest.fixture(scope="module")
def net_and_trainer():
    net = mx.gluon.nn.Dense(2, in_units=3)
    net.initialize(mx.init.Constant(0.5))
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1, "momentum": 0.9})
    return net, trainer


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_saved_files_get_the_umask_permissions(tmp_path, net_and_trainer, mask, expected):
    net, trainer = net_and_trainer
    params, checkpoint, text = tmp_path / "m.params", tmp_path / "run" / "m_last.ckpt", tmp_path / "a.json"
    with umask(mask):
        assert fileio.current_umask() == mask
        save_ssd_parameters(net, params)
        ckpt.save_checkpoint(checkpoint, net, trainer, {"epoch": 1})
        with fileio.atomic_write(text, "w") as f:
            f.write("{}")
    assert (_mode(params), _mode(checkpoint), _mode(text)) == (expected,) * 3
    # what a plain new file gets under the same umask, by the operating system's rule
    with umask(mask):
        with open(tmp_path / "plain", "w"):
            pass
    assert _mode(tmp_path / "plain") == expected
    assert read_param_file(params)["weight"].asnumpy().tolist() == [[0.5] * 3] * 2
    assert ckpt.load_checkpoint(checkpoint).meta["epoch"] == 1
    assert _leftovers(tmp_path) == _leftovers(tmp_path / "run") == []


def test_training_curves_plot_gets_the_umask_permissions(tmp_path):
    from gluon_ssd.train.loop import plot_curves

    history = [{"epoch": e, "loss": 1.0 / (e + 1), "cls_loss": 0.6, "box_loss": 0.4, "lr": 0.01} for e in range(2)]
    with umask(0o022):
        plot_curves(history, str(tmp_path / "curves.png"))
    assert _mode(tmp_path / "curves.png") == 0o644
    assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")
    assert _leftovers(tmp_path) == []


def test_umask_without_proc(monkeypatch):
    """Where /proc/self/status cannot be read, the umask is read by setting it and setting it back."""
    def no_proc(*args, **kwargs):
        raise OSError("no /proc here")

    monkeypatch.setattr(fileio, "open", no_proc, raising=False)
    with umask(0o027):
        assert fileio.current_umask() == 0o027
        assert os.umask(0o027) == 0o027  # left as it was


class Boom(RuntimeError):
    pass


def test_failing_writer_keeps_the_previous_file(tmp_path):
    path = tmp_path / "notes.txt"
    with fileio.atomic_write(path, "w") as f:
        f.write("first")
    with pytest.raises(Boom):
        with fileio.atomic_write(path, "w") as f:
            f.write("half of the second")
            raise Boom
    assert path.read_text() == "first"
    assert _leftovers(tmp_path) == []
    with pytest.raises(Boom):  # nothing is created where there was nothing
        with fileio.atomic_write(tmp_path / "new.txt", "wb"):
            raise Boom
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_failing_save_keeps_the_previous_params_and_checkpoint(tmp_path, net_and_trainer, monkeypatch):
    net, trainer = net_and_trainer
    params, checkpoint = tmp_path / "m.params", tmp_path / "m_last.ckpt"
    save_ssd_parameters(net, params)
    ckpt.save_checkpoint(checkpoint, net, trainer, {"epoch": 1})
    before = params.read_bytes(), checkpoint.read_bytes()

    real_save = mx.nd.save

    def save_then_fail(fname, data):
        real_save(fname, data)  # a complete temporary file, then the failure
        raise Boom

    # save_checkpoint serialises the parameters with mx.nd.save inside its atomic write, after meta.json
    monkeypatch.setattr(mx.nd, "save", save_then_fail)
    with pytest.raises(Boom):
        save_ssd_parameters(net, params)
    with pytest.raises(Boom):
        ckpt.save_checkpoint(checkpoint, net, trainer, {"epoch": 2})
    assert (params.read_bytes(), checkpoint.read_bytes()) == before
    assert _leftovers(tmp_path) == []


def test_writer_must_leave_a_file_and_modes_are_checked(tmp_path):
    with pytest.raises(FileNotFoundError, match="left no file"):
        with fileio.atomic_path(tmp_path / "x.params") as tmp:
            os.remove(tmp)
    with pytest.raises(ValueError, match="mode must be 'wb' or 'w'"):
        with fileio.atomic_write(tmp_path / "x", "a"):
            pass
    assert os.listdir(tmp_path) == []
