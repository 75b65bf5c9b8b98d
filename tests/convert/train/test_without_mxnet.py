"""train_ssd.py / eval_ssd.py --backend torch where MXNet is not installed, as on the GPU machines.

The runs go in subprocesses whose imports of mxnet fail (tests.helpers.WITHOUT_MXNET; on the PyTorch stack there
is no MXNet anyway): a run stopped in epoch 1 and resumed ends with the weights of the uninterrupted one,
eval_ssd.py scores the best weights as the run's validation did, torchrun with 2 gloo processes equals one
process. On the MXNet stack what they write is also checked with MXNet: the GluonCV parameter files load into
gluon_ssd and detect as the .pth twin does, and the backbone of --pretrained-base came from the file.
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from gluon_ssd._mxnet import mx
from tests.helpers import ROOT, WITHOUT_MXNET, free_port, running_beside

NAME = "ssd_300_mobilenet0.25_custom"


def _script(tool: str, args: list) -> list:
    """The command line of ``tool`` (train_ssd.py, eval_ssd.py) in a Python without MXNet."""
    code = WITHOUT_MXNET + f"""
import runpy
sys.argv = [{tool!r}] + {args!r}
try:
    runpy.run_path({str(ROOT / tool)!r}, run_name="__main__")
finally:
    assert "mxnet" not in sys.modules
"""
    return [sys.executable, "-c", code]


def _run(tool, args, timeout=600):
    out = subprocess.run(_script(tool, args), cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                         env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    return out


@pytest.fixture(scope="module")
def backbone_file(tmp_path_factory):
    """An ImageNet-classifier file of mobilenet0.25 as MXNet's model zoo writes it (random weights); None on the
    PyTorch stack (nothing there writes MXNet's model-zoo files: the run starts from --pretrained-base False)."""
    if mx is None:
        return None
    path = tmp_path_factory.mktemp("backbone") / "mobilenet0.25.params"
    mx.random.seed(3)
    net = mx.gluon.model_zoo.vision.get_model("mobilenet0.25")
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, 224, 224)))
    net.save_parameters(str(path))
    return path


@pytest.mark.slow
def test_torch_training_without_mxnet(tiny_train_dataset, backbone_file, tmp_path):
    from convert.train.engine import load_checkpoint

    common = ["--network", "mobilenet0.25", "--data-shape", "300", "--batch-size", "4", "--epochs", "2",
              "--lr", "0.01", "--val-interval", "1", "--save-interval", "2", "--seed", "11", "--backend", "torch",
              "--dataset", "custom", "--dataset-root", tiny_train_dataset, "--gpus", "", "-j", "2",
              "--pretrained-base", str(backbone_file or False), "--no-progress", "--log-interval", "1"]
    full, part = str(tmp_path / "full") + "/", str(tmp_path / "part") + "/"
    # 12 images, batch 4: 3 iterations per epoch; the second run stops inside epoch 1 and is resumed.
    with running_beside(_script("train_ssd.py", common + ["--save-prefix", full]), tmp_path / "full.txt"):
        stopped = _run("train_ssd.py", common + ["--save-prefix", part, "--max-iterations", "4"])
    if backbone_file is not None:
        loaded = re.search(r"loaded (\d+) backbone tensors from " + re.escape(str(backbone_file)),
                           open(part + NAME + "_train.log").read())
        assert loaded and int(loaded.group(1)) == 135, stopped.stderr[-2000:]  # 27 convs, 27 BNs of 4 tensors
    ckpt = part + NAME + "_last.ckpt"
    assert load_checkpoint(ckpt)[1]["iteration"] == 4
    _run("train_ssd.py", common + ["--save-prefix", part, "--resume", ckpt])

    # Exact resume: the same weights (and optimizer state) as the uninterrupted run.
    (a, meta_a), (b, meta_b) = load_checkpoint(full + NAME + "_last.ckpt"), load_checkpoint(ckpt)
    assert meta_a["epoch"] == meta_b["epoch"] == 2 and meta_a["iteration"] == meta_b["iteration"] == 6
    for key, value in a["model"].items():
        np.testing.assert_array_equal(b["model"][key].numpy(), value.numpy(), err_msg=key)
    history = [json.loads(line) for line in open(full + NAME + "_metrics.jsonl")]
    epochs = [h for h in history if h["kind"] == "epoch"]
    assert len(epochs) == 2 and all(0 <= h["map"] <= 1 for h in epochs)
    assert [h["map"] for h in epochs] == [h["map"] for h in (json.loads(line) for line in
                                          open(part + NAME + "_metrics.jsonl")) if h["kind"] == "epoch"]
    files = set(os.listdir(full))
    assert {NAME + "_best.params", NAME + "_best.pth", NAME + "_0000_" + f"{epochs[0]['map']:.4f}.params",
            NAME + "_curves.png", NAME + "_best_map.log"} <= files, files

    # The GluonCV file written without MXNet (gluon_ssd.ndfile) loads into gluon_ssd and gives the .pth's weights
    # (on the MXNet stack, which has gluon_ssd's MXNet network to load it into).
    best = full + NAME + "_best.params"
    if mx is not None:
        _check_params_file_in_mxnet(best, full + NAME + "_best.pth", tiny_train_dataset)

    # eval_ssd.py --backend torch without MXNet on the best weights (the .params file: read by gluon_ssd.ndfile)
    # gives the mAP of the run's best validation.
    out = _run("eval_ssd.py", ["--backend", "torch", "--network", "mobilenet0.25", "--data-shape", "300",
                               "--dataset", "custom", "--dataset-root", tiny_train_dataset, "--pretrained", best,
                               "--save-prefix", str(tmp_path / "eval") + "/", "-j", "2", "--batch-size", "4"])
    best_map = max(h["map"] for h in epochs)
    assert f"mAP       {best_map:.4f}" in out.stdout, out.stdout


def _check_params_file_in_mxnet(best, pth, dataset):
    """The .params a run wrote without MXNet, loaded into gluon_ssd: the .pth's weights and scores."""
    from convert.weights.mapping import gluon_to_torch, load_torch_model
    from gluon_ssd import get_model

    classes = [c.strip() for c in open(os.path.join(dataset, "classes.txt")) if c.strip()]
    net = get_model(NAME, pretrained=best, classes=classes)
    twin = load_torch_model(pth)
    arrays = {k: p.data().asnumpy() for k, p in net._collect_params_with_prefix().items()}
    state, _ = gluon_to_torch(twin, arrays, source=best)
    for key, value in twin.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(state[key].numpy(), value.numpy(), err_msg=key)
    x = np.random.default_rng(0).normal(0, 1, (1, 3, 300, 300)).astype("float32")
    with mx.autograd.predict_mode():
        scores_mx = net(mx.nd.array(x))[1].asnumpy()
    with torch.no_grad():
        scores_t = twin.eval()(torch.from_numpy(x))[1].numpy()
    np.testing.assert_allclose(scores_t, scores_mx, atol=1e-4)


@pytest.mark.mxnet
def test_gluon_file_written_without_mxnet_is_the_mxnet_written_one(tmp_path):
    """convert.write_gluon_file without MXNet (gluon_ssd.ndfile) writes the arrays the MXNet path writes, the
    stored anchor grids included, each bit for bit."""
    from convert import get_torch_model, write_gluon_file
    from gluon_ssd import ndfile

    model = get_torch_model("ssd_300_mobilenet0.25_custom", classes=("a", "b"))  # (fix_gamma BNs: ignored keys)
    with_mx = write_gluon_file(model, model.state_dict(), tmp_path / "mx.params")
    torch.save(model, tmp_path / "model.pt")
    subprocess.run([sys.executable, "-c", WITHOUT_MXNET + f"""
import torch
from convert import write_gluon_file
model = torch.load({str(tmp_path / 'model.pt')!r}, weights_only=False)
write_gluon_file(model, model.state_dict(), {str(tmp_path / 'numpy.params')!r})
assert "mxnet" not in sys.modules
"""], cwd=ROOT, check=True, timeout=120)
    expected, got = mx.nd.load(with_mx), ndfile.load(tmp_path / "numpy.params")
    assert sorted(got) == sorted(expected) and any(k.startswith("anchor_generators.") for k in got)
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value.asnumpy(), err_msg=key)


@pytest.mark.mxnet
def test_demo_without_mxnet(tmp_path):
    """demo_ssd.py --backend torch without MXNet: the twin's detections on a photo as with MXNet (the same pixels
    in: a 4:2:0 JPEG, which both decoders decode alike, resized by each side's OpenCV bicubic, which may differ by
    a grey level: scores compared to 2 decimals)."""
    from convert import get_torch_model, save_torch_model
    from tests.helpers import DATA

    torch.manual_seed(0)
    pth = save_torch_model(get_torch_model("ssd_300_mobilenet0.25_voc"), tmp_path / "twin.pth")
    photo = str(DATA / "voc_sample/VOCdevkit/VOC2007/JPEGImages/000001.jpg")
    found = {}
    for where in ("without", "with"):
        args = ["--backend", "torch", "--network", "ssd_300_mobilenet0.25_voc", "--pretrained", pth, "--images",
                photo, "--out-dir", str(tmp_path / where), "--thresh", "0"]
        command = _script("demo_ssd.py", args) if where == "without" else [sys.executable, "demo_ssd.py", *args]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        assert sorted(p.name for p in (tmp_path / where).iterdir()) == ["000001.jpg", "detections.jsonl"]
        found[where] = json.loads(open(tmp_path / where / "detections.jsonl").readline())["detections"]
    assert len(found["without"]) == len(found["with"]) > 10
    assert [(d["class"], round(d["score"], 2)) for d in found["without"][:5]] == \
        [(d["class"], round(d["score"], 2)) for d in found["with"][:5]]


@pytest.mark.slow
@pytest.mark.torch_stack  # checks nothing with MXNet: off the longer MXNet leg of make test, where it ran twice
def test_ddp_without_mxnet_equals_one_process(tiny_train_dataset, tmp_path):
    """torchrun with 2 gloo processes on 127.0.0.1 where MXNet is not installed (each process starts the twin
    with convert.train.start from the same --seed), each with half of every batch, vs one process on the whole batch
    (BN-free VGG, two steps): the same weights within the bound of tests/helpers.assert_same_steps: the positive
    count is all-reduced and the gradients summed. (The DDP test of the torch backend: the code after the start
    is the same with MXNet installed.)"""
    from convert.train.engine import load_checkpoint
    from tests.helpers import assert_same_steps

    wrapper = tmp_path / "train_without_mxnet.py"
    wrapper.write_text(WITHOUT_MXNET + f"""
import runpy
sys.argv[0] = {str(ROOT / "train_ssd.py")!r}
sys.path.insert(0, {str(ROOT)!r})  # as `python train_ssd.py` from the checkout puts it first
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    if "mxnet" not in sys.modules:
        print("ranks ran without mxnet", flush=True)
""")
    args = ["--network", "vgg16_atrous", "--data-shape", "300", "--batch-size", "2", "--dataset", "custom",
            "--dataset-root", tiny_train_dataset, "-j", "0", "--gpus", "", "--epochs", "1", "--lr", "0.001",
            "--pretrained-base", "False", "--no-progress", "--log-interval", "0", "--val-interval", "0",
            "--seed", "5", "--backend", "torch", "--max-iterations", "2"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    port = free_port()
    ddp = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr",
                            "127.0.0.1", "--master-port", str(port), str(wrapper), *args, "--save-prefix",
                            str(tmp_path / "ddp") + "/"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, env=env, cwd=ROOT)
    _run("train_ssd.py", args + ["--save-prefix", str(tmp_path / "one") + "/"])
    output = ddp.communicate(timeout=600)[0]
    assert ddp.returncode == 0, output[-4000:]
    assert "over 2 worker(s)" in output and output.count("ranks ran without mxnet") == 2, output[-3000:]
    assert "over 1 worker(s)" in open(tmp_path / "one" / "ssd_300_vgg16_atrous_custom_train.log").read()
    # one log file per process; the metrics only from rank 0 (its 2 iterations; the run stops mid-epoch)
    assert (tmp_path / "ddp" / "ssd_300_vgg16_atrous_custom_train.rank1.log").is_file()
    assert len((tmp_path / "ddp" / "ssd_300_vgg16_atrous_custom_metrics.jsonl").read_text().splitlines()) == 2
    name = "ssd_300_vgg16_atrous_custom_last.ckpt"
    (after, meta), (reference, _) = load_checkpoint(tmp_path / "ddp" / name), load_checkpoint(tmp_path / "one" / name)
    assert meta["iteration"] == 2

    # The start both took: convert.train.start with --seed 5 (deterministic; rebuilt here).
    from convert.train.start import start_model

    start, _ = start_model("ssd_300_vgg16_atrous_custom", [c.strip() for c in open(
        os.path.join(tiny_train_dataset, "classes.txt")) if c.strip()], seed=5)
    before = {k: v.numpy() for k, v in start.state_dict().items()}
    keys = [k for k in before if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert_same_steps({k: after["model"][k].numpy() for k in keys}, {k: reference["model"][k].numpy() for k in keys},
                      {k: before[k] for k in keys})


NEEDS_MXNET = "needs MXNet 1.9.1, which installs on Python 3.11 or older"


def test_failure_walk_without_mxnet(tiny_train_dataset, tmp_path):
    """Where MXNet is not installed, each tool in turn: what needs MXNet (its backend, its int8 flows, --deploy,
    --verify, gluon_ssd.get_model) says so once, with what to do instead, and exits 2; the default backends are then
    the twin's (training: the twin; float32 serving on the CPU: the fastest runtime installed), whose bad inputs (a
    file that is no parameter file) are named the same way. No traceback,
    and no weights are written."""
    bad = tmp_path / "notes.params"
    bad.write_text("not a parameter file\n")
    photo = str(ROOT.parent / "shared/data/demo_images/darknet/dog.jpg")
    data = ["--dataset", "custom", "--dataset-root", tiny_train_dataset, "--network", "mobilenet0.25",
            "--data-shape", "300"]
    train = ["--gpus", "", "-j", "0", "--batch-size", "4", "--no-progress"]
    cases = [  # (module, argv, what the one error line must hold)
        ("gluon_ssd.cli.train", data + train + ["--backend", "mxnet", "--save-prefix", f"{tmp_path}/mx/"],
         ["train_ssd.py: error: --backend mxnet " + NEEDS_MXNET, "--backend torch"]),
        ("gluon_ssd.cli.eval", data + ["--backend", "mxnet", "--pretrained", str(bad)],
         ["eval_ssd.py: error: --backend mxnet " + NEEDS_MXNET]),
        ("gluon_ssd.cli.eval", data + ["--pretrained", str(bad), "--calibration"],
         ["eval_ssd.py: error: --calibration " + NEEDS_MXNET]),
        ("gluon_ssd.cli.eval", data + ["--quantized"], ["eval_ssd.py: error: --quantized " + NEEDS_MXNET]),
        ("gluon_ssd.cli.demo", ["--deploy", "--model-prefix", f"{tmp_path}/export", "--images", photo,
                                "--out-dir", f"{tmp_path}/demo"], ["demo_ssd.py: error: --deploy " + NEEDS_MXNET]),
        ("gluon_ssd.cli.demo", ["--backend", "mxnet", "--network", "ssd_300_mobilenet0.25_voc", "--pretrained",
                                "False", "--images", photo, "--out-dir", f"{tmp_path}/demo"],
         ["demo_ssd.py: error: --backend mxnet " + NEEDS_MXNET]),
        ("convert.cli", ["--network", "ssd_300_mobilenet0.25_voc", "--params", str(bad), "--out",
                         f"{tmp_path}/mx/x.pth", "--verify", "--images", photo],
         ["python -m convert: error: --verify", NEEDS_MXNET, "without --verify the conversion itself needs no "
          "MXNet"]),
        # the default backend without MXNet (a runtime of the twin's graph): the file is named as no parameter file
        ("gluon_ssd.cli.eval", data + ["--pretrained", str(bad)], ["eval_ssd.py: error:", str(bad)]),
        ("gluon_ssd.cli.train", data + train + ["--pretrained-base", str(bad), "--save-prefix", f"{tmp_path}/bad/"],
         ["train_ssd.py: error:", str(bad), "expected an MXNet .params file"]),
    ]
    code = WITHOUT_MXNET + f"""
import contextlib, importlib, io, json
out = []
for module, argv in {[(m, a) for m, a, _ in cases]!r}:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = importlib.import_module(module).main(argv)
    out.append([code, err.getvalue()])
import gluon_ssd
try:
    gluon_ssd.get_model("ssd_300_vgg16_atrous_voc")
except ImportError as error:
    out.append([type(error).__name__, str(error)])
assert "mxnet" not in sys.modules
print(json.dumps(out))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.splitlines()[-1])
    for (module, argv, words), (status, message) in zip(cases, found):
        lines = [line for line in message.splitlines() if ": error: " in line]
        assert status == 2 and len(lines) == 1 and "Traceback" not in message, (module, argv, message)
        assert all(w in lines[0] for w in words), (words, lines[0])
    kind, message = found[-1]
    assert kind == "MXNetMissing" and "gluon_ssd.get_model" in message and NEEDS_MXNET in message, found[-1]
    for folder in ("mx", "bad"):  # (the log file may be there)
        assert not any(p.suffix in (".params", ".ckpt", ".pth") for p in (tmp_path / folder).glob("*"))
