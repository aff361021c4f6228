"""gluon-distill: adversarial knowledge distillation for object detectors on MXNet Gluon."""
from . import _compat  # noqa: F401  (must run before the first `import mxnet`)

__version__ = '0.1.0'
