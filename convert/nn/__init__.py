"""The PyTorch twin's network (twin of :mod:`gluon_ssd.nn`): the SSD (:mod:`.ssd`), its backbones (:mod:`.vgg`,
:mod:`.resnetv1b`, :mod:`.features` for the ``mxnet.gluon.model_zoo.vision`` ones), the layers that carry their
MXNet names and train BatchNorm as MXNet does (:mod:`.layers`), the anchors (:mod:`.anchors`) and the decode +
per-class NMS (:mod:`.postprocess`). It knows no file format (that is :mod:`convert.weights`)."""
