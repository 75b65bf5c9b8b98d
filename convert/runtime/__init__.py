"""Running the PyTorch twin (twin of :mod:`gluon_ssd.predict`, :mod:`gluon_ssd.deploy` and
:mod:`gluon_ssd.quantization`): inference on a device and dtype (:mod:`.inference`), the TorchScript and ONNX
exports (:mod:`.export`), int8 through ONNX Runtime (:mod:`.quantization`) and the comparison of the twin against
gluon_ssd's MXNet network (:mod:`.verify`)."""
