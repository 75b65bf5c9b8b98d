"""GluonCV's training and model API, and train_ssd.py's behaviour, as GluonCV has them.

- ``SSDTargetGenerator`` with GluonCV's defaults (hard negatives mined in the generator) against gluoncv's, live;
- GluonCV's dotted paths (``gluon_ssd.model_zoo.ssd.target``, ``gluon_ssd.loss``) name the one implementation,
  and the loss there gives gluoncv's values; ``list_models()`` lists what ``get_model`` takes, as gluoncv's does;
  ``net.initialize()`` after ``get_model`` changes nothing and warns about nothing;
- train_ssd.py: ``amp.init()`` before the network and before ``amp.init_trainer``; GluonCV's validation and saving
  epochs and files; GluonCV's CrossEntropy / SmoothL1 numbers in the log; ``--lr-decay-epoch 160.5``; COCO's
  validation interval; ``--syncbn`` refused with its reason; the 512 architecture at ``--data-shape 300``.
"""
from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import logging
import re
import types
import warnings

import mxnet as mx
import numpy as np
import pytest

import gluon_ssd
from gluon_ssd.train import engine, loop, run
from gluon_ssd.train.config import TrainConfig
from gluon_ssd.train.loop import TrainingError, TrainingLoop
from gluon_ssd.train.schedule import learning_rate
from tests.helpers import train_in_process


def _small_config(dataset, prefix, **overrides):
    """MobileNet-0.25 SSD at its size 300 on the tiny synthetic set, on the CPU, no validation."""
    values = dict(network="mobilenet0.25", data_shape=300, batch_size=4, dataset="custom", dataset_root=dataset,
                  num_workers=0, gpus="", epochs=1, lr=0.001, pretrained_base="False", save_prefix=str(prefix) + "/",
                  progress=False, log_interval=0, val_interval=0, seed=5, max_iterations=2)
    values.update(overrides)
    return TrainConfig(**values)


# ---------------------------------------------------------------------------------- targets and loss
def _boxes(rng, anchors, size, count):
    """(1, count, 6) real label rows: an anchor's own box (a tie at IoU 1), an exact duplicate with another class,
    small and large random boxes."""
    centers = anchors.asnumpy().reshape(-1, 4)
    rows = []
    for k in range(count):
        if k == 0:
            cx, cy, w, h = centers[rng.integers(len(centers))]
            box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        elif k == 1:
            box = list(rows[0][:4])
        else:
            x, y = rng.uniform(0, size * 0.8, 2)
            w, h = rng.uniform(6, size * 0.7, 2)
            box = [x, y, min(x + w, size), min(y + h, size)]
        rows.append(box + [float(rng.integers(0, 20)), 0.0])
    return np.array(rows, dtype=np.float32)[None]


@pytest.mark.mxnet
def test_target_generator_mines_hard_negatives_as_gluoncv(gcv, tiny_train_dataset):
    """``SSDTargetGenerator`` at gluon_ssd.model_zoo.ssd.target: its signature and defaults are gluoncv's, and on
    gluoncv's anchors of ssd_512_mobilenet1.0_voc with real rows, random class predictions and four settings
    (the defaults; another ratio, neg_thresh, iou_thresh and stds; a ratio so large that the cut reaches the
    anchors scored -1, positives included; mining off) the three outputs equal gluoncv's exactly."""
    reference_module = importlib.import_module("gluoncv.model_zoo.ssd.target")  # gcv.model_zoo.ssd is shadowed
    ours_module = importlib.import_module("gluon_ssd.model_zoo.ssd.target")
    theirs_sig = inspect.signature(reference_module.SSDTargetGenerator.__init__)
    ours_sig = inspect.signature(ours_module.SSDTargetGenerator.__init__)
    assert [(p.name, p.default) for p in ours_sig.parameters.values()] == \
        [(p.name, p.default) for p in theirs_sig.parameters.values()]

    ref_net = gcv.model_zoo.get_model("ssd_512_mobilenet1.0_voc", pretrained_base=False)
    ref_net.initialize()
    with mx.autograd.train_mode():
        anchors = ref_net(mx.nd.zeros((1, 3, 512, 512)))[2]
    rng = np.random.default_rng(7)
    settings = [{}, {"iou_thresh": 0.4, "neg_thresh": 0.3, "negative_mining_ratio": 2.5, "stds": (0.1, 0.1, 0.3, 0.3)},
                {"negative_mining_ratio": 3000}, {"negative_mining_ratio": -1}]
    for kwargs in settings:
        theirs, ours = reference_module.SSDTargetGenerator(**kwargs), ours_module.SSDTargetGenerator(**kwargs)
        for count in (1, 3, 9):
            labels = _boxes(rng, anchors, 512, count)
            preds = mx.nd.array(rng.normal(0, 2, (1, anchors.shape[1], 21)).astype(np.float32))
            args = (anchors, preds, mx.nd.array(labels[:, :, :4]), mx.nd.array(labels[:, :, 4:5]))
            ref = [o.asnumpy() for o in theirs(*args)]
            out = [o.asnumpy() for o in ours(*args)]
            for name, r, o in zip(("cls_targets", "box_targets", "box_masks"), ref, out):
                np.testing.assert_array_equal(o, r, err_msg=f"{kwargs}, {count} boxes: {name}")
            mined = (ref[0] == 0).sum()
            if kwargs.get("negative_mining_ratio", 3) == 3000:
                # the cut went past every eligible negative into the anchors scored -1 (positives among them)
                assert mined > 3 * (ref[0] > 0).sum() and (ref[0] == -1).sum() < anchors.shape[1] / 2
            elif kwargs.get("negative_mining_ratio", 3) > 0:
                assert 0 < mined < anchors.shape[1] / 10 and (ref[0] == -1).sum() > 0


@pytest.mark.mxnet
def test_loss_at_gluoncv_path_is_ours_and_gives_gluoncv_values(gcv):
    """``gluon_ssd.loss.SSDMultiBoxLoss`` is gluon_ssd.train.loss's class (a name, not a copy), with gluoncv's
    constructor; called as gluoncv's is (lists per device, targets with ignored anchors at -1), its three lists
    equal gluoncv's within float32 summation order (1e-5), with the defaults and with other arguments."""
    from gluon_ssd.loss import SSDMultiBoxLoss
    from gluon_ssd.train.loss import SSDMultiBoxLoss as Implementation

    assert SSDMultiBoxLoss is Implementation
    theirs_sig = inspect.signature(gcv.loss.SSDMultiBoxLoss.__init__).parameters
    ours_sig = inspect.signature(SSDMultiBoxLoss.__init__).parameters
    assert [(p.name, p.default) for p in ours_sig.values()] == [(p.name, p.default) for p in theirs_sig.values()]

    rng = np.random.default_rng(11)
    batch, anchors, classes = 4, 3000, 6
    cls_t = rng.choice([-1, 0, 0, 0, 0, 0, 0, 0, 1, 2, 5], size=(batch, anchors)).astype(np.float32)
    cls_t[2] = np.where(cls_t[2] > 0, 0, cls_t[2])  # an image without positives
    box_t = rng.normal(0, 1, (batch, anchors, 4)).astype(np.float32)
    cls_p = rng.normal(0, 2, (batch, anchors, classes + 1)).astype(np.float32)
    box_p = rng.normal(0, 1, (batch, anchors, 4)).astype(np.float32)
    split = [slice(0, 1), slice(1, 4)]  # two "devices" with unequal shares
    args = [[mx.nd.array(x[s]) for s in split] for x in (cls_p, box_p, cls_t, box_t)]
    for kwargs in ({}, {"negative_mining_ratio": 2, "rho": 0.5, "lambd": 2.0, "min_hard_negatives": 5}):
        reference = gcv.loss.SSDMultiBoxLoss(**kwargs)(*args)
        ours = SSDMultiBoxLoss(**kwargs)(*args)
        assert len(ours) == 3 and all(len(part) == 2 for part in ours)
        for ref_part, our_part in zip(reference, ours):
            for r, o in zip(ref_part, our_part):
                np.testing.assert_allclose(o.asnumpy(), r.asnumpy(), rtol=1e-5, atol=1e-6, err_msg=str(kwargs))


@pytest.mark.mxnet
def test_list_models_lists_what_get_model_takes_as_gluoncv(gcv):
    """gluoncv's SSD names (its ``get_model_list()``, int8 ones included) are listed by ours, at every path that
    lists them; the float32 names alone (the twin's) stay at ``list_models(int8=False)``."""
    from gluon_ssd import model_zoo, quantization, specs

    theirs = {n for n in gcv.model_zoo.get_model_list() if n.startswith("ssd_")}
    ours = gluon_ssd.list_models()
    assert any(n.endswith("_int8") for n in theirs)
    assert ours == model_zoo.list_models() and len(set(ours)) == len(ours)
    # gluoncv's names and one row of ours: the custom-class ResNet-18 (gluoncv has its voc and coco rows only)
    assert set(ours) - theirs == {"ssd_512_resnet18_v1_custom"} and theirs <= set(ours)
    assert specs.list_models(int8=False) == list(specs.MODEL_SPECS)
    assert specs.INT8_MODELS is quantization.INT8_MODELS  # one table
    # the existing imports of the zoo (now a package) keep working
    from gluon_ssd.model_zoo import MODEL_SPECS, build_ssd, get_model, get_spec  # noqa: F401


def test_initialize_after_get_model_changes_nothing_and_warns_nothing():
    """GluonCV's ``net = get_model(name, pretrained_base=False); net.initialize()``: ours is initialized already,
    so the call keeps every value without mxnet's 'already initialized' warnings; a network with uninitialized
    parameters gets them initialized; ``force_reinit=True`` draws them again."""
    from gluon_ssd.model_zoo import build_ssd
    from gluon_ssd.params import infer_shapes

    net = gluon_ssd.get_model("ssd_300_mobilenet0.25_voc", pretrained_base=False)
    before = {k: p.data().asnumpy().copy() for k, p in net.collect_params().items()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net.initialize()
        net.initialize(mx.init.Xavier())  # mxnet's Xavier fails on the fix_gamma vectors: never reached
    assert [str(w.message) for w in caught] == []
    assert all(np.array_equal(p.data().asnumpy(), before[k]) for k, p in net.collect_params().items())

    fresh = build_ssd("ssd_300_mobilenet0.25_voc")
    infer_shapes(fresh)
    fresh.initialize()
    assert all(p._data is not None for p in fresh.collect_params().values())

    head = "class_predictors.0.predictor.weight"
    net.initialize(force_reinit=True)
    after = net._collect_params_with_prefix()[head].data().asnumpy()
    assert not np.array_equal(after, before[net._collect_params_with_prefix()[head].name])


# --------------------------------------------------------------------------------------------- AMP
def test_amp_init_runs_before_the_network_and_before_init_trainer(tiny_train_dataset, tmp_path, monkeypatch):
    """--amp with --backend mxnet calls mxnet.contrib.amp.init() before the network is built and before
    amp.init_trainer (which asserts AMP is initialized); --backend torch never calls it. There is no GPU here: the
    GPU check and AMP's calls are replaced by recorders, the rest of set-up and one training step run as on a GPU."""
    from mxnet.contrib import amp

    calls = []

    @contextlib.contextmanager
    def scale_loss(loss, trainer):
        calls.append("amp.scale_loss")
        yield loss

    monkeypatch.setattr(amp, "init", lambda *a, **k: calls.append("amp.init"))
    monkeypatch.setattr(amp, "init_trainer", lambda trainer: calls.append("amp.init_trainer"))
    monkeypatch.setattr(amp, "scale_loss", scale_loss)
    monkeypatch.setattr(engine, "check_amp_devices", lambda ctx: None)
    build = run.build_network
    monkeypatch.setattr(run, "build_network", lambda *a: calls.append("build_network") or build(*a))

    train_in_process(_small_config(tiny_train_dataset, tmp_path / "mxnet", amp=True, max_iterations=1))
    assert calls == ["amp.init", "build_network", "amp.init_trainer", "amp.scale_loss"], calls

    calls.clear()
    run.prepare(_small_config(tiny_train_dataset, tmp_path / "torch", amp=True, backend="torch"))
    assert "amp.init" not in calls and "build_network" in calls


# ----------------------------------------------------------------- validation and saving epochs
class _ScheduleProbe:
    """A stub engine for the real loop: constant losses, a given mAP per epoch (what it validates is the epoch
    it was told of last), files recorded."""

    rank, parts, devices = 0, 1, 1

    def __init__(self, maps, prefix):
        self.maps, self.prefix, self.written = maps, prefix, []
        self.epoch = 0

    def setup(self):
        pass

    start = close = setup

    def set_learning_rate(self, lr):
        pass

    def loader(self, dataset, sampler):
        class Batches:
            def __iter__(self):
                return ((np.zeros((len(keys), 1)), None) for keys in sampler)
        return Batches()

    def step(self, images, labels):
        return 1.0, 0.6, 0.4

    @contextlib.contextmanager
    def detector(self):
        yield "the detector"

    def write_params(self, path):
        self.written.append(path[len(self.prefix):])

    def write_best(self, prefix, epoch, current_map):
        self.write_params(f"{prefix}_best.params")

    def save_checkpoint(self, path, meta):
        pass


def _gluoncv_files(epochs, val_interval, save_interval, maps, start=0):
    """GluonCV's train_ssd.py, written out: after epoch e it validates when ``e % val_interval == 0 or
    (save_interval and e % save_interval == 0)`` (else the mAP is 0), then ``save_params``: a mAP above the best
    so far (which starts at 0) writes _best.params and a line of _best_map.log; ``save_interval and
    e % save_interval == 0`` writes _{e:04d}_{map:.4f}.params."""
    validated, files, best_lines, best = [], [], [], 0.0
    for e in range(start, epochs):
        current = 0.0
        if e % val_interval == 0 or (save_interval and e % save_interval == 0):
            validated.append(e)
            current = maps[e]
        if current > best:
            best = current
            files.append("_best.params")
            best_lines.append(f"{e:04d}:\t{current:.4f}")
        if save_interval and e % save_interval == 0:
            files.append(f"_{e:04d}_{current:.4f}.params")
    return validated, files, best_lines


MAPS = [0.0, 0.3, 0.2, 0.5, 0.5, 0.1, 0.7, 0.0, 0.9, 0.9, 0.2, 0.95]


@pytest.mark.parametrize("val_interval, save_interval, start", [
    (1, 10, 0), (3, 5, 0), (4, 0, 0), (2, 3, 0), (3, 5, 7), (5, 5, 0), (0, 5, 0)])
def test_validation_and_saving_epochs_are_gluoncvs(tmp_path, monkeypatch, val_interval, save_interval, start):
    """The epochs that validate, the .params files and _best_map.log of the loop (both backends run it) against
    GluonCV's conditions written out by hand, 12 epochs; --val-interval 0 (a division by zero in GluonCV) turns
    validation, and with it GluonCV's files, off."""
    monkeypatch.setattr(loop, "plot_curves", lambda history, path: None)
    cfg = TrainConfig(gpus="", batch_size=2, epochs=len(MAPS), start_epoch=start, val_interval=val_interval,
                      save_interval=save_interval, save_prefix=str(tmp_path) + "/", model_name="m", progress=False,
                      log_interval=0, backend="mxnet")
    probe = _ScheduleProbe(MAPS, cfg.save_prefix + cfg.model_name)

    def validate(detector, dataset):
        value = MAPS[run_loop.epoch - 1]  # called after the epoch counter moved on
        return types.SimpleNamespace(map=value, names=["mAP"], values=[value])

    run_loop = TrainingLoop(cfg, probe, list(range(2)), object(), ("a",), validate)
    history = run_loop.fit()
    validated = [h["epoch"] for h in history if "map" in h]
    log_path = tmp_path / "m_best_map.log"
    best_lines = log_path.read_text().splitlines() if log_path.exists() else []
    if val_interval == 0:
        assert (validated, probe.written, best_lines) == ([], [], [])
        return
    expected = _gluoncv_files(len(MAPS), val_interval, save_interval, MAPS, start)
    assert (validated, probe.written, best_lines) == expected


def test_hand_written_schedule_of_one_pair():
    """The hand-written reference itself, on one pair worked out by hand: (3, 5) validates 0, 3, 5, 6, 9, 10."""
    validated, files, best = _gluoncv_files(12, 3, 5, MAPS)
    assert validated == [0, 3, 5, 6, 9, 10]
    assert files == ["_0000_0.0000.params", "_best.params", "_0005_0.1000.params", "_best.params", "_best.params",
                     "_0010_0.2000.params"]
    assert best == ["0003:\t0.5000", "0006:\t0.7000", "0009:\t0.9000"]


# -------------------------------------------------------------------------- the logged loss values
def test_logged_losses_are_gluoncvs_meters(tiny_train_dataset, tmp_path, caplog):
    """The log's CrossEntropy / SmoothL1 are what GluonCV's train_ssd.py logs: its ``mx.metric.Loss`` meters
    updated with ``[l * batch_size for l in cls_loss]`` (the per-device losses the loss returns), here fed the
    loss outputs of the same run; metrics.jsonl keeps per image values (the batch's loss / batch size)."""
    from gluon_ssd.data.transforms import SSDDefaultTrainTransform
    from gluon_ssd.train.loss import SSDMultiBoxLoss

    cfg = _small_config(tiny_train_dataset, tmp_path, cpu_contexts=2, log_interval=1, max_iterations=2)
    ce, l1 = mx.metric.Loss("CrossEntropy"), mx.metric.Loss("SmoothL1")
    expected, per_image = [], []
    loss = SSDMultiBoxLoss()

    def recording_loss(*args):
        out = loss(*args)
        _, cls_loss, box_loss = out
        ce.update(0, [c * cfg.batch_size for c in cls_loss])
        l1.update(0, [b * cfg.batch_size for b in box_loss])
        expected.append((ce.get()[1], l1.get()[1]))
        per_image.append(sum(float(c.sum().asscalar()) for c in cls_loss) / cfg.batch_size)
        return out

    net, train_ds, _, classes, _, _ = run.prepare(cfg)
    data = loop.SeededAugmentation(train_ds, SSDDefaultTrainTransform(300, 300), cfg.seed)
    trainer = run.training_loop(cfg, net, data, None, classes, None)
    trainer.engine._loss = recording_loss
    with caplog.at_level(logging.INFO, logger="gluon_ssd.train.loop"):
        trainer.fit()
    pattern = re.compile(r"CrossEntropy=([\d.]+), SmoothL1=([\d.]+)")
    logged = [tuple(float(v) for v in pattern.search(r.getMessage()).groups())
              for r in caplog.records if pattern.search(r.getMessage())]
    # two batch lines, then the epoch line with the meters after both batches
    assert len(expected) == 2 and len(logged) == 3
    for got, want in zip(logged, expected + expected[-1:]):
        np.testing.assert_allclose(got, want, rtol=0, atol=5e-4 + 1e-6)
    assert expected[0][0] > 1.0  # GluonCV's scale: the batch's summed loss per positive, not per image
    records = [json.loads(line) for line in open(trainer.prefix + "_metrics.jsonl")]
    np.testing.assert_allclose([r["cls_loss"] for r in records if r["kind"] == "iteration"], per_image, rtol=1e-6)


# ------------------------------------------------------------------------------------------ flags
def test_fractional_lr_decay_epoch_as_gluoncv():
    """``--lr-decay-epoch 160.5`` is accepted and decays where GluonCV's loop does: at the start of the first
    epoch whose index reaches it (161), for every fraction of the epoch; whole epochs decay as before."""
    from gluon_ssd.cli.train import parse_args

    cfg = parse_args(["--lr-decay-epoch", "200,160.5", "--gpus", ""])
    assert TrainingLoop(cfg, _ScheduleProbe([], ""), [], None, (), None).decay_epochs == (160.5, 200.0)

    def gluoncv_lr(epoch, steps, lr=0.001, decay=0.1):  # its per-epoch loop, written out
        steps = sorted(steps)
        for e in range(epoch + 1):
            while steps and e >= steps[0]:
                lr *= decay
                steps.pop(0)
        return lr

    for steps in ([160.5, 200.0], [160.0, 200.0]):
        for epoch in (0, 159, 160, 161, 199, 200, 239):
            for fraction in (0.0, 0.5, 0.99):
                assert learning_rate(epoch + fraction, 0.001, "step", 0.1, tuple(steps)) == \
                    pytest.approx(gluoncv_lr(epoch, list(steps)), rel=1e-12), (steps, epoch, fraction)
    cfg.lr_decay_epoch = "160,2OO"
    with pytest.raises(TrainingError, match=r"--lr-decay-epoch '160,2OO': '2OO' is not a number"):
        TrainingLoop(cfg, _ScheduleProbe([], ""), [], None, (), None)


def test_coco_validates_every_10_epochs_as_gluoncv(tmp_path, caplog):
    """--dataset coco turns --val-interval 1 into 10 (GluonCV's non-DALI path), with a log line; other values stay."""
    for given, expected in ((1, 10), (2, 2)):
        cfg = TrainConfig(dataset="coco", dataset_root=str(tmp_path / "no_coco"), gpus="", val_interval=given,
                          network="mobilenet0.25", data_shape=300, backend="mxnet")
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="gluon_ssd.train.run"), pytest.raises(TrainingError):
            run.prepare(cfg)  # no COCO dataset here: it stops there, after the interval is set
        assert cfg.val_interval == expected
        said = [r.getMessage() for r in caplog.records if "validating every 10 epochs" in r.getMessage()]
        assert len(said) == (given == 1)


def test_syncbn_with_several_mxnet_devices_says_why_not(tiny_train_dataset, tmp_path, capsys, caplog):
    """GluonCV builds its backbones with norm_layer=SyncBatchNorm for --syncbn on several devices; mxnet's model-zoo
    backbones take no norm_layer (checked here, so that the message stays true): train_ssd.py stops with that
    reason and what to do. VGG16 (no BatchNorm) and one device train with --syncbn, as in GluonCV."""
    from mxnet.gluon.model_zoo import vision

    import train_ssd

    with pytest.raises(TypeError, match="norm_layer"):
        vision.get_model("mobilenet0.25", norm_layer=mx.gluon.contrib.nn.SyncBatchNorm)
    args = ["--network", "mobilenet0.25", "--data-shape", "300", "--dataset", "custom", "--dataset-root",
            tiny_train_dataset, "--gpus", "", "--cpu-contexts", "2", "--batch-size", "4", "--pretrained-base",
            "False", "--save-prefix", str(tmp_path) + "/", "--syncbn"]
    assert train_ssd.main(args) == 2
    err = capsys.readouterr().err
    for fact in ("--syncbn with 2 devices", "mxnet.gluon.model_zoo.vision", "take no norm_layer argument",
                 "SyncBatchNorm cannot be put in", "without --syncbn", "--backend torch"):
        assert fact in err, err
    with pytest.raises(ValueError, match="take no norm_layer argument"):
        gluon_ssd.get_model("ssd_300_mobilenet0.25_voc", pretrained_base=False,
                            norm_layer=mx.gluon.contrib.nn.SyncBatchNorm, norm_kwargs={"num_devices": 2})
    gluon_ssd.get_model("ssd_300_mobilenet0.25_voc", pretrained_base=False, norm_layer=mx.gluon.nn.BatchNorm)

    with caplog.at_level(logging.INFO, logger="gluon_ssd.train.engine"):
        for network, contexts in (("vgg16_atrous", 2), ("mobilenet0.25", 1)):
            cfg = TrainConfig(network=network, data_shape=300, dataset="custom", syncbn=True, gpus="",
                              cpu_contexts=contexts, model_name=run.resolve_model_name(network, 300, "custom"))
            engine.check_syncbn(cfg, engine.training_contexts(cfg))
    assert sum("nothing to synchronize" in r.getMessage() for r in caplog.records) == 2


def test_512_architecture_at_300_is_said_in_one_warning(tiny_train_dataset, tmp_path, caplog):
    """--network mobilenet1.0 --data-shape 300: GluonCV refuses the name ssd_300_mobilenet1.0_*; this trains the
    512 architecture at 300 and names its files ssd_512_*: one WARNING line says so at the start. A size the zoo
    has (mobilenet0.25 at 300) warns about nothing."""
    for network, warned in (("mobilenet1.0", True), ("mobilenet0.25", False)):
        caplog.clear()
        cfg = _small_config(tiny_train_dataset, tmp_path / network, network=network)
        with caplog.at_level(logging.INFO, logger="gluon_ssd"):
            run.prepare(cfg)
        warnings_ = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        if not warned:
            assert warnings_ == []
            continue
        assert len(warnings_) == 1 and "\n" not in warnings_[0], warnings_
        assert cfg.model_name == "ssd_512_mobilenet1.0_custom"
        for fact in ("trains the 512 architecture", "at 300x300", "GluonCV's train_ssd.py refuses",
                     f"{tmp_path}/mobilenet1.0/ssd_512_mobilenet1.0_custom_*", "ssd_300_mobilenet1.0_custom"):
            assert fact in warnings_[0], warnings_[0]
