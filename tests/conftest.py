import os
import pathlib

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
