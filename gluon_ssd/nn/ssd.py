"""The SSD detection network: feature maps -> per-layer class/box heads -> decode -> per-class NMS."""
from __future__ import annotations

import logging
import warnings

import mxnet as mx
from mxnet import autograd
from mxnet.gluon import nn

from ..specs import anchor_alloc_sizes
from .anchors import AnchorGenerator

log = logging.getLogger(__name__)

# The parameter-file format lives a layer above the network (gluon_ssd.params: GluonCV's legacy keys, shape
# checks, atomic writes), which sets these two on import; the model zoo imports it before building an SSD.
# Unset (an SSD built by hand without gluon_ssd.params), MXNet's own HybridBlock methods read and write
# the same structural keys.
_parameter_format: dict = {}


def use_parameter_format(load, save) -> None:
    """Make every SSD's ``load_parameters`` / ``save_parameters`` call ``load(net, path, ctx, allow_missing,
    ignore_extra)`` / ``save(net, path)`` (set by :mod:`gluon_ssd.params`)."""
    _parameter_format.update(load=load, save=save)


class ConvPredictor(nn.HybridBlock):
    """One prediction head: a single convolution (3x3 pad 1, or 1x1 pad 0 on the lite model)."""

    def __init__(self, channels, kernel=3, in_channels=0, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.predictor = nn.Conv2D(channels, kernel, padding=kernel // 2, in_channels=in_channels,
                                       weight_initializer=mx.init.Xavier(magnitude=2),
                                       bias_initializer="zeros", prefix="conv0_")

    def hybrid_forward(self, F, x):
        return self.predictor(x)


class SSD(nn.HybridBlock):
    """Single Shot MultiBox Detector.

    Parameters
    ----------
    features : HybridBlock mapping (B, 3, H, W) to the list of L feature maps.
    sizes : L+1 anchor sizes in input pixels.
    ratios : L lists of aspect ratios.
    steps : L anchor strides in input pixels.
    classes : foreground class names.
    anchor_kind : 'ssd' or 'lite'.
    predictor_kernel : 3, or 1 for the lite model.
    stds : box-coding standard deviations.
    nms_thresh, nms_topk, post_nms : see :meth:`set_nms`.

    Forward
    -------
    Inference: x (B, 3, H, W) -> ids (B, K, 1), scores (B, K, 1), boxes (B, K, 4) corners in input
    pixels; rows that hold no detection are -1 in every field and come last.
    Training (inside ``autograd.record()``): cls_preds (B, N, C+1) logits with background at 0,
    box_preds (B, N, 4) encoded offsets, anchors (1, N, 4) as (cx, cy, w, h).
    """

    def __init__(self, features_fn, sizes, ratios, steps, classes, anchor_kind="ssd", predictor_kernel=3,
                 stds=(0.1, 0.1, 0.2, 0.2), nms_thresh=0.45, nms_topk=400, post_nms=100,
                 anchor_alloc_size=128, **kwargs):
        super().__init__(**kwargs)
        num_layers = len(steps)
        if not (len(sizes) == num_layers + 1 and len(ratios) == num_layers):
            raise ValueError(f"an SSD with {num_layers} layers needs {num_layers + 1} sizes and "
                             f"{num_layers} ratio lists, got {len(sizes)} and {len(ratios)}")
        self.classes = tuple(classes)
        self._stds = tuple(float(s) for s in stds)
        self._predictor_kernel = predictor_kernel
        self.nms_thresh, self.nms_topk, self.post_nms = nms_thresh, nms_topk, post_nms
        self._graph_training = None
        with self.name_scope():
            self.features = features_fn()
            self.class_predictors = nn.HybridSequential()
            self.box_predictors = nn.HybridSequential()
            self.anchor_generators = nn.HybridSequential()
            for i, alloc in enumerate(anchor_alloc_sizes(num_layers, anchor_alloc_size)):
                gen = AnchorGenerator(i, (sizes[i], sizes[i + 1]), ratios[i], steps[i], (alloc, alloc),
                                      kind=anchor_kind, prefix=f"{anchor_kind}anchorgenerator{i}_")
                self.anchor_generators.add(gen)
                # GluonCV creates the class and box heads alternately, so their names interleave.
                self.class_predictors.add(ConvPredictor(gen.num_depth * (self.num_classes + 1),
                                                        predictor_kernel, prefix=f"convpredictor{2 * i}_"))
                self.box_predictors.add(ConvPredictor(gen.num_depth * 4, predictor_kernel,
                                                      prefix=f"convpredictor{2 * i + 1}_"))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def initialize(self, init=None, ctx=None, verbose=False, force_reinit=False):
        """Initialize the parameters that hold no data yet; keep the others, without a warning.

        Parameters
        ----------
        init : mx.init.Initializer, default ``mx.init.Uniform()`` (mxnet's), for parameters without an
            initializer of their own.
        ctx : mx.Context or list of them, default the current context.
        verbose : bool, as mxnet's: log which initializer each parameter gets.
        force_reinit : bool, True to initialize every parameter again (mxnet's behaviour).

        Notes
        -----
        Difference from mxnet: ``Block.initialize`` warns "already initialized, ignoring" once per such
        parameter. :func:`gluon_ssd.model_zoo.get_model` returns a network initialized with GluonCV's training
        initialization already, and GluonCV's scripts and tutorials call ``net.initialize()`` after
        ``get_model`` (theirs leaves the layers outside the backbone uninitialized): here that call changes
        nothing and says nothing.
        """
        init = mx.init.Uniform() if init is None else init
        if force_reinit:
            return super().initialize(init, ctx, verbose, force_reinit=True)
        params = list(self.collect_params().values())
        fresh = [p for p in params if p._data is None]
        if verbose:
            init.set_verbosity(verbose=verbose)
        for param in fresh:
            param.initialize(None, ctx, init)
        log.debug("initialize(): %d parameters initialized, %d already initialized and kept", len(fresh),
                  len(params) - len(fresh))
        return None

    def set_nms(self, nms_thresh=0.45, nms_topk=400, post_nms=100):
        """Per-class NMS settings: IoU threshold (outside (0, 1) disables NMS and the cut), the number
        of candidates kept before NMS (-1: all) and of detections returned (-1: all)."""
        self._clear_cached_op()
        self.nms_thresh, self.nms_topk, self.post_nms = nms_thresh, nms_topk, post_nms

    def forward(self, x, *args):
        # A hybridized graph is traced for one mode; rebuild it when the mode changes.
        training = autograd.is_training()
        if self._graph_training is not None and self._graph_training != training:
            self._clear_cached_op()
        self._graph_training = training
        if self._active and self._cached_op is None:
            with warnings.catch_warnings():
                # The stored anchor constants stay out of the graph when the formula computes the
                # anchors; mxnet would warn about them on every build.
                warnings.filterwarnings("ignore", message="Parameter .*anchor.* is not used",
                                        category=UserWarning)
                return super().forward(x, *args)
        return super().forward(x, *args)

    def hybrid_forward(self, F, x):
        feats = self.features(x)
        if len(feats) != len(self.class_predictors):
            raise ValueError(f"the feature extractor gave {len(feats)} maps for "
                             f"{len(self.class_predictors)} prediction layers")
        cls_preds = F.concat(*[F.flatten(F.transpose(cp(f), (0, 2, 3, 1)))
                               for f, cp in zip(feats, self.class_predictors)], dim=1)
        box_preds = F.concat(*[F.flatten(F.transpose(bp(f), (0, 2, 3, 1)))
                               for f, bp in zip(feats, self.box_predictors)], dim=1)
        anchors = F.concat(*[ag(f) for f, ag in zip(feats, self.anchor_generators)], dim=1)
        cls_preds = cls_preds.reshape((0, -1, self.num_classes + 1))
        box_preds = box_preds.reshape((0, -1, 4))
        if autograd.is_training():
            return cls_preds, box_preds, anchors
        return self._detect(F, cls_preds, box_preds, anchors)

    def _detect(self, F, cls_preds, box_preds, anchors):
        boxes = F.contrib.box_decode(box_preds, anchors, *self._stds, clip=-1, format="center")
        scores = F.softmax(cls_preds, axis=-1).slice_axis(axis=-1, begin=1, end=None)  # (B, N, C)
        keep = scores > 0.01
        ids = F.where(keep, F.broadcast_like(F.arange(self.num_classes).reshape((1, 1, -1)), scores),
                      F.ones_like(scores) * -1)
        scores = F.where(keep, scores, F.zeros_like(scores))
        # Class-major candidate list (B, C*N, 6) of [id, score, x1, y1, x2, y2].
        ids = F.transpose(ids, (0, 2, 1)).expand_dims(-1)
        scores = F.transpose(scores, (0, 2, 1)).expand_dims(-1)
        boxes = F.broadcast_like(boxes.expand_dims(1), ids, lhs_axes=(1,), rhs_axes=(1,))
        result = F.concat(ids, scores, boxes, dim=-1).reshape((0, -3, 6))
        if 0 < self.nms_thresh < 1:
            result = F.contrib.box_nms(result, overlap_thresh=self.nms_thresh, topk=self.nms_topk,
                                       valid_thresh=0.01, id_index=0, score_index=1, coord_start=2,
                                       force_suppress=False)
            if self.post_nms > 0:
                result = result.slice_axis(axis=1, begin=0, end=self.post_nms)
        return (result.slice_axis(axis=2, begin=0, end=1), result.slice_axis(axis=2, begin=1, end=2),
                result.slice_axis(axis=2, begin=2, end=6))

    def load_parameters(self, filename, ctx=None, allow_missing=False, ignore_extra=False, **kwargs):
        """Load GluonCV files (structural or legacy keys) or ours; errors name the mismatching keys."""
        load = _parameter_format.get("load")
        if load is None:
            super().load_parameters(filename, ctx, allow_missing, ignore_extra, **kwargs)
            return
        load(self, filename, ctx, allow_missing, ignore_extra)

    def save_parameters(self, filename, deduplicate=False):
        """Save with GluonCV's structural keys, atomically (no half-written file on a crash)."""
        save = _parameter_format.get("save")
        if save is None:
            super().save_parameters(filename, deduplicate)
            return
        save(self, filename)

    def reset_class(self, classes, reuse_weights=None):
        """Replace the class list and the class heads.

        Parameters
        ----------
        classes : the new foreground class names.
        reuse_weights : which old class's head weights each new class starts from: a list of names
            present in both, or a dict {new: old} of names or indices. The background weights are
            always kept. Other classes start from a fresh initialization.
        """
        old = self.classes
        new = tuple(classes)
        mapping = _class_mapping(old, new, reuse_weights)
        self._clear_cached_op()
        self.classes = new
        heads = nn.HybridSequential(prefix=self.class_predictors.prefix)
        for head, gen in zip(self.class_predictors, self.anchor_generators):
            weight = head.predictor.weight
            ctx = weight.list_ctx()
            fresh = ConvPredictor(gen.num_depth * (len(new) + 1), self._predictor_kernel,
                                  in_channels=weight.shape[1], prefix=head.prefix)
            fresh.initialize(ctx=ctx)
            if mapping is not None:
                for old_p, new_p in ((head.predictor.weight, fresh.predictor.weight),
                                     (head.predictor.bias, fresh.predictor.bias)):
                    src = old_p.data().asnumpy()
                    dst = new_p.data().asnumpy()
                    a = gen.num_depth
                    src = src.reshape((a, len(old) + 1) + src.shape[1:])
                    dst = dst.reshape((a, len(new) + 1) + dst.shape[1:])
                    dst[:, 0] = src[:, 0]
                    for n_idx, o_idx in mapping.items():
                        dst[:, n_idx + 1] = src[:, o_idx + 1]
                    new_p.set_data(mx.nd.array(dst.reshape(new_p.shape), ctx=ctx[0]))
            heads.add(fresh)
        self.class_predictors = heads
        log.info("reset classes: %d -> %d, reused %d", len(old), len(new), len(mapping or {}))


def _class_mapping(old, new, reuse):
    """{new index: old index} from reuse_weights in any of GluonCV's accepted forms."""
    if reuse is None:
        return None

    def index(names, key, which):
        if isinstance(key, str):
            if key not in names:
                raise ValueError(f"class {key!r} is not among the {which} classes {list(names)}")
            return names.index(key)
        if not 0 <= int(key) < len(names):
            raise ValueError(f"class index {key} is out of range for the {len(names)} {which} classes")
        return int(key)

    if isinstance(reuse, dict):
        return {index(new, k, "new"): index(old, v, "old") for k, v in reuse.items()}
    if isinstance(reuse, (list, tuple)):
        shared = [c for c in reuse if c in old and c in new]
        for c in reuse:
            if c not in shared:
                log.warning("reuse_weights: %r is not in both the old and the new class lists; skipped", c)
        return {new.index(c): old.index(c) for c in shared}
    raise TypeError(f"reuse_weights must be a list of names or a dict, not {type(reuse).__name__}")
