"""The PyTorch twin's weights and files (twin of :mod:`gluon_ssd.params`): gluon <-> torch conversion by name and
shape and the ``.pth`` format (:mod:`.mapping`), MXNet's layer names of the backbones and loading an ImageNet
classifier into a twin (:mod:`.names`), and MXNet's initializers (:mod:`.init`)."""
