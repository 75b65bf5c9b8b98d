"""train_ssd.py --resume with a parameter file (GluonCV's ``--resume X.params``), in both training backends.

A ``.params`` file (GluonCV's in either key format, or ours) gives the weights alone: the run starts at
``--start-epoch`` with that epoch's learning rate (GluonCV's rule: one decay for every ``--lr-decay-epoch`` at or
below it), a fresh optimizer and no best mAP, and says once that this is no exact resume. What it is compared with:
gluoncv's own network, targets and loss on the run's first batch; the file read back by gluon_ssd.ndfile; the
bytes of the ``_last.ckpt``, which still resumes exactly. The tests marked ``mxnet`` need MXNet and gluoncv; the
others run on both stacks (the PyTorch one has no MXNet).
"""
import importlib
import io
import json
import logging
import os
import zipfile

import numpy as np
import pytest
import torch

from tests.helpers import vgg_train_config

VGG = "ssd_300_vgg16_atrous_custom"
SMALL = "ssd_300_mobilenet0.25_custom"
WEIGHTS_ONLY = "not an exact resume"


def _classes(dataset):
    return tuple(c.strip() for c in open(f"{dataset}/classes.txt") if c.strip())


def _weights(trainer) -> dict:
    """The network's arrays by gluon structural key: the MXNet net's, or the twin's through the key map."""
    engine = trainer.engine
    if trainer.cfg.backend == "mxnet":
        return {k: p.data().asnumpy().copy() for k, p in engine.net._collect_params_with_prefix().items()}
    from convert.weights.mapping import key_map

    state = engine.model.state_dict()
    return {g: state[t].detach().cpu().numpy().copy() for t, g in key_map(engine.model).items()}


def _train(cfg, setup_only=False):
    """(trainer, its weights right after set-up, the metrics.jsonl iteration records) of one run in this process.
    ``setup_only``: set up (resume included) and stop before the first step."""
    from gluon_ssd.data.transforms import SSDDefaultTrainTransform
    from gluon_ssd.train.loop import SeededAugmentation
    from gluon_ssd.train.run import prepare, training_loop

    net, train_ds, _, classes, _, _ = prepare(cfg)
    data = SeededAugmentation(train_ds, SSDDefaultTrainTransform(cfg.data_shape, cfg.data_shape), cfg.seed)
    trainer = training_loop(cfg, net, data, None, classes, None)
    start = {}
    if setup_only:
        trainer.setup()
        return trainer, _weights(trainer), []
    setup = trainer.setup

    def setup_and_record():
        setup()
        start.update(_weights(trainer))

    trainer.setup = setup_and_record
    trainer.fit()
    records = [json.loads(line) for line in open(trainer.prefix + "_metrics.jsonl")]
    return trainer, start, [r for r in records if r["kind"] == "iteration"]


def _gluoncv_lr(base_lr, decay, decay_epochs, epoch):
    """GluonCV's train_ssd.py schedule, by its rule: from --start-epoch on, the learning rate is multiplied by
    --lr-decay once for every step of --lr-decay-epoch at or below the epoch."""
    lr = base_lr
    for step in sorted(float(e) for e in decay_epochs.split(",")):
        if epoch >= step:
            lr *= decay
    return lr


def _weights_only_warnings(caplog):
    return [r for r in caplog.records if r.levelno == logging.WARNING and WEIGHTS_ONLY in r.getMessage()]


# -- GluonCV's files, both backends --------------------------------------------------------------
@pytest.fixture(scope="module")
def gluoncv_vgg(gcv, tiny_train_dataset, tmp_path_factory):
    """gluoncv's VGG16-atrous SSD of the runs' classes with seeded random weights, written by gluoncv in both key
    formats: (net, save_parameters file named as GluonCV's train_ssd.py names them, legacy save_params file)."""
    import mxnet as mx

    from tests.helpers import build_reference, randomize, save_legacy

    net = build_reference(gcv, VGG, classes=_classes(tiny_train_dataset))
    probe = mx.nd.array(np.random.default_rng(0).normal(0, 1, (1, 3, 300, 300)).astype(np.float32))
    randomize(net, seed=3, probe=probe)  # class logits of std ~2: a loss of a trained net's size
    folder = tmp_path_factory.mktemp("gluoncv_files")
    structural, legacy = folder / f"{VGG}_0002_0.1234.params", folder / f"{VGG}_legacy.params"
    net.save_parameters(str(structural))
    save_legacy(net, legacy)
    return net, str(structural), str(legacy)


def _gluoncv_first_loss(gcv, net, cfg) -> float:
    """The loss per image that gluoncv's network, target generator and loss give the first batch of epoch
    ``cfg.start_epoch`` (the batch the run takes first: the sampler and augmentation of gluon_ssd)."""
    import mxnet as mx

    from gluon_ssd.data.batchify import batchify_detection
    from gluon_ssd.data.transforms import SSDDefaultTrainTransform
    from gluon_ssd.train.loop import EpochBatchSampler, SeededAugmentation
    from gluon_ssd.train.run import build_datasets

    train_ds = build_datasets(cfg)[0]
    data = SeededAugmentation(train_ds, SSDDefaultTrainTransform(cfg.data_shape, cfg.data_shape), cfg.seed)
    sampler = EpochBatchSampler(len(train_ds), cfg.batch_size, cfg.seed)
    sampler.epoch = cfg.start_epoch
    images, labels = batchify_detection([data[key] for key in next(iter(sampler))])
    with mx.autograd.train_mode():
        cls_preds, box_preds, anchors = net(images)
    # gcv.model_zoo.ssd is shadowed by smot's ssd module (GluonCV #1634): the module by path. GluonCV's train
    # transform makes the targets per image (no padding rows), with negative mining left to the loss.
    generator = importlib.import_module("gluoncv.model_zoo.ssd.target").SSDTargetGenerator(negative_mining_ratio=-1)
    cls_t, box_t = [], []
    for label in labels.asnumpy():
        label = label[label[:, 4] >= 0]
        c, b, _ = generator(anchors, None, mx.nd.array(label[None, :, :4]), mx.nd.array(label[None, :, 4:5]))
        cls_t.append(c)
        box_t.append(b)
    total, _, _ = gcv.loss.SSDMultiBoxLoss()([cls_preds], [box_preds], [mx.nd.concat(*cls_t, dim=0)],
                                             [mx.nd.concat(*box_t, dim=0)])
    return float(total[0].sum().asscalar()) / images.shape[0]


@pytest.mark.mxnet
def test_gluoncv_file_resumes_at_start_epoch_in_both_backends(gcv, gluoncv_vgg, tiny_train_dataset, tmp_path,
                                                              caplog):
    """GluonCV's `--resume X.params --start-epoch 3` in MXNet and in --backend torch: the first loss of each run is
    the loss of gluoncv's own network (the file's writer), targets and loss on that epoch's first batch, and the
    learning rate is epoch 3's by GluonCV's rule.

    Bounds, from float32 arithmetic: the MXNet run and gluoncv run the same kernels on the same weights and
    batch; what may differ is gluoncv's box codes (within 1e-5 of ours, tests/gluon_ssd/train/test_target_loss.py),
    which
    move the smooth L1 by at most 4e-5 per image on a loss of ~12 (3e-6 relative). The torch run sums the same
    float32 terms (~1e5 per loss) in another order: tests/convert/train/test_engine.py holds these first losses to 1e-5
    relative (1.2e-7 and 8.4e-7 measured there). Both held to 1e-5 here; measured: MXNet equal to gluoncv to the
    bit, torch 1.5e-7 from MXNet. A run that loads none of the file (the seeded initial weights) gives 27.6
    instead of 12.4, a run at another epoch another batch."""
    net, path, _ = gluoncv_vgg
    caplog.set_level(logging.INFO)
    start_epoch, decay_epochs = 3, "1,3,5"
    losses, expected_lr = {}, _gluoncv_lr(0.001, 0.1, decay_epochs, start_epoch)
    for backend in ("mxnet", "torch"):
        caplog.clear()
        cfg = vgg_train_config(tiny_train_dataset, tmp_path / backend, backend, resume=path, start_epoch=start_epoch,
                               epochs=start_epoch + 1, lr_decay_epoch=decay_epochs, max_iterations=1)
        trainer, _, records = _train(cfg)
        assert len(records) == 1, records
        assert records[0]["epoch"] == start_epoch and records[0]["batch"] == 0, records
        assert records[0]["lr"] == pytest.approx(expected_lr, rel=1e-12), (backend, records[0]["lr"])
        assert trainer.best_map == -np.inf
        warnings = _weights_only_warnings(caplog)
        assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
        message = warnings[0].getMessage()
        assert path in message and "_last.ckpt" in message and "momentum" in message and "best mAP" in message
        losses[backend] = records[0]["loss"]
    reference = _gluoncv_first_loss(gcv, net, cfg)
    np.testing.assert_allclose(losses["mxnet"], reference, rtol=1e-5)
    np.testing.assert_allclose(losses["torch"], losses["mxnet"], rtol=1e-5)


@pytest.mark.mxnet
@pytest.mark.parametrize("backend", ["mxnet", "torch"])
def test_legacy_named_gluoncv_file_resumes(gluoncv_vgg, tiny_train_dataset, tmp_path, backend):
    """The file of GluonCV's train_ssd.py (save_params: legacy names) gives the network exactly gluoncv's
    weights, in both backends (the torch backend translates the names through MXNet, present here)."""
    net, _, legacy = gluoncv_vgg
    cfg = vgg_train_config(tiny_train_dataset, tmp_path, backend, resume=legacy, start_epoch=2)
    trainer, start, _ = _train(cfg, setup_only=True)
    reference = {k: p.data().asnumpy() for k, p in net._collect_params_with_prefix().items()}
    keys = [k for k in start if not k.startswith("anchor_generators.")]
    assert len(keys) > 30 and set(keys) <= set(reference)
    for key in keys:
        np.testing.assert_array_equal(start[key], reference[key], err_msg=key)
    assert trainer.epoch == 2 and trainer.iteration == 0


# -- both stacks ---------------------------------------------------------------------------------
def _twin_file(path, name, classes):
    """A parameter file of zoo model ``name`` with ``classes`` as the torch backend writes its .params (the twin's
    weights through convert.weights.mapping.write_gluon_file; without MXNet by gluon_ssd.ndfile)."""
    from convert.nn.ssd import get_torch_model
    from convert.weights.mapping import write_gluon_file

    model = get_torch_model(name, classes=classes)
    return write_gluon_file(model, model.state_dict(), path)


@pytest.mark.parametrize("backend", [pytest.param("mxnet", marks=pytest.mark.mxnet), "torch"])
@pytest.mark.parametrize("case", ["classes", "network", "neither"])
def test_a_file_that_does_not_fit_is_refused_with_exit_2(tiny_train_dataset, tmp_path, capsys, backend, case):
    """A VOC file (20 classes) for a 5-class run, a file of another network, a file that is no parameter file:
    train_ssd.py exits with 2 and one line naming the file, the model and what to pass; nothing was trained."""
    import train_ssd

    if case == "classes":
        path = _twin_file(tmp_path / "voc.params", "ssd_300_mobilenet0.25_voc", None)
        expected = ["class heads for 20 classes", "this run trains 5", "--dataset voc", "--transfer"]
    elif case == "network":
        path = _twin_file(tmp_path / "other.params", "ssd_512_mobilenet1.0_custom", _classes(tiny_train_dataset))
        expected = [f"does not hold the {SMALL} network", "--network and --data-shape", "shape mismatch"]
    else:
        path = str(tmp_path / "notes.params")
        open(path, "w").write("epoch 100, mAP 0.7712\n")
        expected = ["neither a training checkpoint", "nor an MXNet parameter file"]
    prefix = str(tmp_path / "run") + "/"
    code = train_ssd.main(["--network", "mobilenet0.25", "--data-shape", "300", "--dataset", "custom",
                           "--dataset-root", tiny_train_dataset, "--gpus", "", "--pretrained-base", "False",
                           "--batch-size", "4", "-j", "0", "--backend", backend, "--save-prefix", prefix,
                           "--resume", str(path), "--start-epoch", "3", "--no-progress"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("train_ssd.py: error:")]
    assert code == 2 and len(errors) == 1, err[-3000:]
    assert str(path) in errors[0] and (SMALL in errors[0] or case == "neither"), errors[0]
    for words in expected:
        assert words in errors[0], errors[0]
    assert "Traceback" not in err
    assert not os.path.exists(prefix + SMALL + "_metrics.jsonl")  # refused before the first step


def test_torch_run_resumes_from_its_own_params_and_its_checkpoint(tiny_train_dataset, tmp_path, caplog):
    """A --backend torch run writes _0000_{map}.params (gluon_ssd.ndfile's format without MXNet) and _last.ckpt.
    Resumed from the .params file, a run of another seed starts from exactly the file's weights (read back
    with gluon_ssd.ndfile), with no optimizer state, at --start-epoch and that epoch's learning rate; resumed from
    the _last.ckpt it continues exactly (weights, momentum buffers and position of the archive's bytes)."""
    import glob

    from convert.weights.mapping import key_map
    from gluon_ssd import ndfile
    from gluon_ssd.train.run import train

    caplog.set_level(logging.INFO)
    common = dict(network="mobilenet0.25", batch_size=4, lr=0.01)
    first = vgg_train_config(tiny_train_dataset, tmp_path / "first", "torch", val_interval=1, save_interval=1,
                             **common)
    train(first)  # 12 images: 3 steps, then validation and GluonCV's files
    (params,) = glob.glob(str(tmp_path / "first" / f"{SMALL}_0000_*.params"))
    assert not _weights_only_warnings(caplog)

    caplog.clear()
    # --pretrained-base True (the default) is not fetched (the model store is an empty folder here): every weight
    # comes from the file
    resumed = vgg_train_config(tiny_train_dataset, tmp_path / "resumed", "torch", resume=params, start_epoch=2,
                               epochs=3, lr_decay_epoch="2,4", seed=6, max_iterations=1, pretrained_base="True",
                               **common)
    trainer, start, records = _train(resumed)
    stored = ndfile.load(params)
    assert len(start) > 100  # the BatchNorm statistics included: the file's, not moved by the set-up's forward
    for key, value in start.items():
        np.testing.assert_array_equal(value, stored[key], err_msg=key)
    assert records[0]["epoch"] == 2 and records[0]["batch"] == 0 and records[0]["iteration"] == 1
    assert records[0]["lr"] == pytest.approx(_gluoncv_lr(0.01, 0.1, "2,4", 2), rel=1e-12)
    assert len(_weights_only_warnings(caplog)) == 1

    # A fresh optimizer: the set-up of the same run holds no momentum buffer.
    again = vgg_train_config(tiny_train_dataset, tmp_path / "again", "torch", resume=params, start_epoch=2, seed=6,
                             **common)
    trainer, _, _ = _train(again, setup_only=True)
    assert not trainer.engine.optimizer.state and trainer.best_map == -np.inf and trainer.history == []

    # Our checkpoint still resumes exactly: the archive's weights, momentum buffers and position.
    caplog.clear()
    ckpt = str(tmp_path / "first" / f"{SMALL}_last.ckpt")
    exact = vgg_train_config(tiny_train_dataset, tmp_path / "exact", "torch", resume=ckpt, **common)
    trainer, start, _ = _train(exact, setup_only=True)
    with zipfile.ZipFile(ckpt) as zf:
        saved = torch.load(io.BytesIO(zf.read("torch_state.pt")), map_location="cpu", weights_only=True)
        meta = json.loads(zf.read("meta.json"))
    table = key_map(trainer.engine.model)
    for torch_key, gluon_key in table.items():
        np.testing.assert_array_equal(start[gluon_key], saved["model"][torch_key].numpy(), err_msg=gluon_key)
    parameters = list(trainer.engine.model.parameters())  # one group: the state's indices are this order
    assert len(saved["optimizer"]["state"]) == len(trainer.engine.optimizer.state) > 50
    for index, state in saved["optimizer"]["state"].items():
        np.testing.assert_array_equal(trainer.engine.optimizer.state[parameters[index]]["momentum"].numpy(),
                                      state["momentum"].numpy(), err_msg=str(index))
    assert (trainer.epoch, trainer.batch_in_epoch, trainer.iteration) == (meta["epoch"], 0, 3) == (1, 0, 3)
    assert not _weights_only_warnings(caplog)
    assert any("resumed from" in r.getMessage() for r in caplog.records)
