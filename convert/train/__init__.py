"""Training the PyTorch twin (twin of :mod:`gluon_ssd.train`): the targets (:mod:`.target`), the loss and one step
(:mod:`.loss`), MXNet's SGD (:mod:`.optim`) and the start of a run without MXNet (:mod:`.start`). The loop is
gluon_ssd's (:mod:`gluon_ssd.train.loop`); the torch engine it drives is :mod:`.engine` (twin of
:mod:`gluon_ssd.train.engine`)."""
