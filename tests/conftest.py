import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

import gluon_ssd._env  # noqa: F401
from tests.helpers import (  # noqa: F401  (vgg_train_config, train_in_process: used by fixtures below)
    DATA,
    ROOT,
    SMALL_MODEL,
    SMALL_RECIPE,
    SMALL_SHAPES,
    STACK,
    TrainedModel,
    train_in_process,
    vgg_train_config,
)

# The test modules of the PyTorch stack (paths under tests/; tests.helpers.STACK says which stack runs):
TORCH_STACK_MODULES = frozenset({
    "convert/_cpu/test_kernels.py",
    "convert/runtime/test_export.py",
    "convert/runtime/test_quantization.py",
    "convert/runtime/test_runtimes.py",
    "convert/train/test_without_mxnet.py",
    "gluon_ssd/cli/test_quickstart.py",
    "gluon_ssd/data/test_check.py",
    "gluon_ssd/data/test_synthetic.py",
    "gluon_ssd/eval/test_coco.py",
    "gluon_ssd/eval/test_voc.py",
    "gluon_ssd/gluoncv_api/test_data_api.py",
    "gluon_ssd/gluoncv_api/test_utils_api.py",
    "gluon_ssd/train/test_resume_params.py",
    "test_imports.py",
    "test_install.py",
    "test_references.py",
})


def pytest_configure(config):
    config.addinivalue_line("markers", "mxnet: needs MXNet or gluoncv (not run on the PyTorch stack)")
    config.addinivalue_line("markers", "torch_stack: tests the PyTorch stack as installed by `pip install .` "
                                       "(run on that stack only)")
    if STACK not in ("mxnet", "torch"):
        pytest.exit(f"GLUON_SSD_TEST_STACK={STACK!r}: use mxnet or torch", returncode=4)
    missing = [name for name in TORCH_STACK_MODULES if not (ROOT / "tests" / name).is_file()]
    if missing:
        pytest.exit(f"tests/conftest.py TORCH_STACK_MODULES names missing files: {missing}", returncode=4)
    have_mxnet = importlib.util.find_spec("mxnet") is not None
    if STACK == "mxnet" and not (have_mxnet and importlib.util.find_spec("gluoncv")):
        # Never a silently smaller suite: the MXNet leg runs with MXNet and its oracle or not at all.
        pytest.exit("the MXNet stack's tests need mxnet and gluoncv (pip install -r requirements-test.txt on "
                    "Python <= 3.11); for the PyTorch stack set GLUON_SSD_TEST_STACK=torch", returncode=4)
    if STACK == "torch":
        import numpy

        if have_mxnet:
            pytest.exit("GLUON_SSD_TEST_STACK=torch tests the stack without MXNet, but mxnet is installed here",
                        returncode=4)
        if int(numpy.__version__.split(".")[0]) < 2:
            pytest.exit(f"the PyTorch stack is tested with numpy 2 (found {numpy.__version__}): pip install -r "
                        "requirements-torch-test.txt", returncode=4)


def pytest_ignore_collect(collection_path, config):
    """On the PyTorch stack only the modules of TORCH_STACK_MODULES are collected (the others import MXNet)."""
    if STACK == "torch" and collection_path.suffix == ".py" and collection_path.name.startswith("test_"):
        try:
            return collection_path.relative_to(ROOT / "tests").as_posix() not in TORCH_STACK_MODULES
        except ValueError:  # a test file outside tests/, named on the command line
            return None
    return None


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


@pytest.fixture(scope="session")
def coco_url_root(tmp_path_factory):
    """The tinycoco sample in the folders its JSONs' coco_url names (what gluoncv's COCODetection reads; the
    sample's images of the val2017 JSON lie in images/train2017 and the other way round): symlinks, no copies."""
    tinycoco = DATA / "coco_sample" / "tinycoco"
    root = tmp_path_factory.mktemp("coco_url_layout")
    (root / "annotations").symlink_to(tinycoco / "annotations")
    (root / "val2017").symlink_to(tinycoco / "images/train2017")
    (root / "train2017").symlink_to(tinycoco / "images/val2017")
    return root


@pytest.fixture(autouse=True)
def _mxnet_home(tmp_path_factory, monkeypatch):
    """Keep every test away from the user's ~/.mxnet and ~/.cache/gluon_ssd (the runtimes' exported graphs)."""
    home = tmp_path_factory.getbasetemp() / "mxnet_home"
    monkeypatch.setenv("MXNET_HOME", str(os.fspath(home)))
    monkeypatch.setenv("GLUON_SSD_CACHE", str(tmp_path_factory.getbasetemp() / "gluon_ssd_cache"))


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
    """On the PyTorch stack the tests marked ``mxnet`` are deselected, on the MXNet stack those marked
    ``torch_stack``. The tests of the small trained model run
    last (in their order), so that its background training has the rest of the suite to finish beside (a first
    user early in the suite waited 27 s for it)."""
    other = "mxnet" if STACK == "torch" else "torch_stack"
    deselected = [item for item in items if item.get_closest_marker(other)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker(other)]
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


@pytest.fixture(scope="session")
def vgg_mxnet_two_steps(tiny_train_dataset, tmp_path_factory):
    """Two SGD steps of the VGG SSD on one MXNet CPU context: the reference of the split-batch, distributed
    and torch-backend comparisons."""
    return train_in_process(vgg_train_config(tiny_train_dataset, tmp_path_factory.mktemp("vgg_mxnet"),
                                             max_iterations=2))
