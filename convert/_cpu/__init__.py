"""The C kernels of the torch trainer (:mod:`convert._cpu.kernels`, source ``kernels.c``): fused BatchNorm + ReLU,
MXNet's SGD update and the C library's ``logf`` on CPU tensors. A leaf: it sees tensors, never modules, and imports
nothing of the project, so every other part of :mod:`convert` may use it."""
