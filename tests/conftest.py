import os
import pathlib
import subprocess
import sys
from typing import NamedTuple

import pytest

import gluon_ssd._env  # noqa: F401

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA = SHARED / "data"


@pytest.fixture(scope="session")
def gcv():
    """gluoncv, the reference our outputs are compared against."""
    from tests.oracle import import_gluoncv

    return import_gluoncv()


@pytest.fixture(scope="session")
def data_dir():
    if not DATA.is_dir():
        pytest.fail(f"shared test data not found at {DATA}: check out shared/ beside the project")
    return DATA


@pytest.fixture(scope="session")
def photo_paths(data_dir):
    """Two real photos of different sizes."""
    return [
        str(data_dir / "voc_sample/VOCdevkit/VOC2007/JPEGImages/000001.jpg"),
        str(data_dir / "demo_images/darknet/dog.jpg"),
    ]


@pytest.fixture(autouse=True)
def _mxnet_home(tmp_path_factory, monkeypatch):
    """Keep every test away from the user's ~/.mxnet."""
    home = tmp_path_factory.getbasetemp() / "mxnet_home"
    monkeypatch.setenv("MXNET_HOME", str(os.fspath(home)))


# In the suite: a ResNet-18 SSD trained from scratch for two minutes on a small version of the synthetic
# dataset (two shapes that look nothing alike, one or two per image, large, on a flat background) at 128 px.
# Measured on two cores with three training seeds (233, the default, then 1 and 2): VOC07 mAP 0.85 / 0.82 /
# 0.71 on its val split; at score >= 0.4, 0.87 / 0.82 / 0.75 of the shapes found and 0.70 / 0.72 / 0.63 of
# the detections on a shape of their class (at 0.5 the third seed finds only 0.49: too close to call).
SMALL_SHAPES = {"min_size": 128, "max_size": 176, "min_object_size": 48, "max_object_size": 112, "max_objects": 2,
                "clean": True, "classes": ("circle", "cross")}
SMALL_RECIPE = ["--network", "resnet18_v1", "--data-shape", "128", "--dataset", "custom", "--gpus", "",
                "--pretrained-base", "False", "--batch-size", "8", "--epochs", "6", "--lr", "0.01",
                "--warmup-epochs", "0.5", "--lr-decay-epoch", "5", "--max-expand", "1.5", "-j", "2",
                "--val-interval", "6", "--save-interval", "0", "--no-progress"]
SMALL_MODEL = "ssd_512_resnet18_v1_custom"


class TrainedModel(NamedTuple):
    data: pathlib.Path        # the synthetic VOC-format folder (train/val splits, classes.txt)
    network: str              # zoo name
    params: str               # the best weights written by train_ssd.py
    data_shape: int


_SMALL_TRAINING: dict = {}


def _start_small_training(base: pathlib.Path) -> None:
    """Write the small dataset and start train_ssd.py on it in the background (once)."""
    from gluon_ssd.data import write_synthetic_dataset

    if _SMALL_TRAINING:
        return
    root = base / "small_trained"
    root.mkdir(parents=True, exist_ok=True)
    data = root / "shapes"
    write_synthetic_dataset(str(data), 512, 64, seed=0, progress=False, **SMALL_SHAPES)
    prefix = str(root / "run") + os.sep
    log = open(root / "train_output.txt", "w")
    proc = subprocess.Popen([sys.executable, str(ROOT / "train_ssd.py"), *SMALL_RECIPE, "--dataset-root", str(data),
                             "--save-prefix", prefix], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, MXNET_HOME=str(root / "mxnet_home")))
    _SMALL_TRAINING.update(proc=proc, log=log, data=data, prefix=prefix)


def pytest_collection_modifyitems(session, config, items):
    """The tests of the small trained model run last (in their order), so that its background training has the
    rest of the suite to finish beside (a first user early in the suite waited 27 s for it)."""
    uses = ["small_trained_model" in getattr(item, "fixturenames", ()) for item in items]
    items[:] = [item for item, use in zip(items, uses) if not use] + [item for item, use in zip(items, uses) if use]


def pytest_collection_finish(session):
    """Start training the small model as soon as the selected tests are known to need it: it then runs beside
    the tests before its first user, which leave much of the two cores idle (subprocess start-ups, imports,
    file work), instead of in front of that user. The run is epoch-bound and seeded, so sharing the CPU
    changes its duration, not its weights."""
    if any("small_trained_model" in getattr(item, "fixturenames", ()) for item in session.items):
        _start_small_training(session.config._tmp_path_factory.getbasetemp())


def pytest_sessionfinish(session):
    """A background training that no test waited for (a run stopped early) does not outlive the session."""
    proc = _SMALL_TRAINING.get("proc")
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def small_trained_model(tmp_path_factory):
    """A ResNet-18 SSD trained from scratch by train_ssd.py (about two minutes), once per test session."""
    _start_small_training(tmp_path_factory.getbasetemp())
    run = _SMALL_TRAINING
    try:
        code = run["proc"].wait(timeout=1200)
    except subprocess.TimeoutExpired:
        run["proc"].kill()
        raise
    finally:
        run["log"].close()
    assert code == 0, (pathlib.Path(run["log"].name).read_text()[-3000:])
    return TrainedModel(run["data"], SMALL_MODEL, f"{run['prefix']}{SMALL_MODEL}_best.params", 128)


@pytest.fixture(scope="session")
def tiny_train_dataset(tmp_path_factory):
    """A small synthetic VOC-format dataset (12 train, 4 val images) for the training tests."""
    from gluon_ssd.data.synthetic import write_synthetic_dataset

    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(str(root), 12, 4, seed=1, min_size=160, max_size=240, progress=False)
    return str(root)


def vgg_train_config(dataset, prefix, backend="mxnet", **overrides):
    """The BN-free VGG16-atrous SSD for two-step comparisons: batch 2, lr 0.001, seed 5, on the CPU."""
    from gluon_ssd.train.fit import TrainConfig

    values = dict(network="vgg16_atrous", data_shape=300, batch_size=2, dataset="custom", dataset_root=dataset,
                  num_workers=0, gpus="", epochs=1, lr=0.001, wd=0.0005, pretrained_base="False",
                  save_prefix=str(prefix) + "/", progress=False, log_interval=0, val_interval=0, seed=5,
                  backend=backend)
    values.update(overrides)
    return TrainConfig(**values)


def train_in_process(cfg):
    """(trainer, gluon net, initial weights by gluon key, per-iteration losses) of one training run."""
    import json

    from gluon_ssd.data.transforms import SSDDefaultTrainTransform
    from gluon_ssd.train.fit import SeededAugmentation
    from gluon_ssd.train.run import prepare, trainer_class

    net, train_ds, _, classes, _, _ = prepare(cfg)
    initial = {k: p.data().asnumpy().copy() for k, p in net._collect_params_with_prefix().items()}
    data = SeededAugmentation(train_ds, SSDDefaultTrainTransform(cfg.data_shape, cfg.data_shape), cfg.seed)
    trainer = trainer_class(cfg.backend)(cfg, net, data, None, classes, None)
    trainer.fit()
    losses = [json.loads(line)["loss"] for line in open(trainer.prefix + "_metrics.jsonl")
              if json.loads(line)["kind"] == "iteration"]
    return trainer, net, initial, losses


@pytest.fixture(scope="session")
def vgg_mxnet_two_steps(tiny_train_dataset, tmp_path_factory):
    """Two SGD steps of the VGG SSD on one MXNet CPU context: the reference of the split-batch, distributed
    and torch-backend comparisons."""
    return train_in_process(vgg_train_config(tiny_train_dataset, tmp_path_factory.mktemp("vgg_mxnet"),
                                             max_iterations=2))
