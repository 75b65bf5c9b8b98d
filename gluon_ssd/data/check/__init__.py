"""Check a detection dataset before training on it: ``python -m gluon_ssd.data.check`` (:mod:`gluon_ssd.cli.check`).

Every image and annotation that the readers of :mod:`gluon_ssd.data` would read for training is read here
with the readers' own functions (:func:`~gluon_ssd.data.voc.read_voc_entry`,
:func:`~gluon_ssd.data.voc.voc_objects`, :func:`~gluon_ssd.data.coco.load_coco`,
:func:`~gluon_ssd.data.coco.coco_objects`, :func:`~gluon_ssd.data.custom.read_image`), and what they would
refuse, drop or silently change is reported, each problem with its file:

* ``fatal``: training stops: no usable image, a class name the dataset does not have (the readers raise on
  it), a missing split file, folder or annotation JSON, COCO categories other than the expected ones, and
  any unusable file of a validation split (validation reads with ``on_error='raise'``);
* ``dropped``: the reader leaves the item or box out and training goes on: unreadable or truncated images,
  missing or malformed XML of a training split, empty boxes (zero or negative width or height), boxes
  entirely outside the image, COCO images without usable objects (``skip_empty``);
* ``warning``: used, but probably not as meant: boxes clipped to the image, images without objects,
  image sizes that differ from the annotation's, an image id listed twice, an image in both a training and a
  validation split.

It also counts the objects per class (the ones training sees: kept boxes of usable images, difficult ones
included) and compares the object sizes with the anchors of the model that ``train_ssd.py`` would train
(:func:`gluon_ssd.specs.resolve_model_name`): an object's size is ``sqrt(w * h)`` in network-input pixels
after the fixed (not aspect-preserving) resize to ``data_shape x data_shape``, with ``w = x2 - x1`` of the
reader's label; an anchor's size is ``sqrt(w * h)`` of each anchor shape of each layer. Objects smaller than
the smallest anchor overlap every anchor little, so SSD matches them poorly or not at all; their number is
reported (the command line draws a histogram against the anchor sizes, ``box_sizes.png``).

Which splits, and how strictly. By default the splits ``train_ssd.py`` reads (:data:`TRAINING_SPLITS`).
Splits given by name are checked as training splits, except the validation-like names: VOC and custom
``val`` and ``test``, COCO names whose part after the last ``_`` contains ``val`` (``instances_val2017``);
those get the validation rules (every file must be usable).

Modules: :mod:`.report` (the findings and their collector), :mod:`.voc` and :mod:`.coco` (the checks of each
layout), :mod:`.driver` (:func:`check_dataset`). The text and the plot for people are the command line's
(:mod:`gluon_ssd.cli.check`: exit status 0 when training would work, 1 when it would fail, 2 for bad arguments).
"""
from ..open import TRAINING_SPLITS
from .driver import check_dataset, save_report
from .report import DATASETS, SEVERITIES, CheckReport, Problem, SplitReport, anchor_sizes, split_role

__all__ = ["DATASETS", "SEVERITIES", "TRAINING_SPLITS", "Problem", "SplitReport", "CheckReport", "check_dataset",
           "save_report", "split_role", "anchor_sizes"]
