"""Keep ``import mxnet`` working beside NumPy 1.24-1.26.

MXNet 1.9.1 (its last release) still uses the aliases ``np.bool``, ``np.int``, ``np.float``,
``np.object``... that NumPy 1.24 removed. Where a wheel exists we pin ``numpy<1.24``; on
newer Pythons (no such wheel) restoring the aliases before the first ``import mxnet`` is enough.
The package ``__init__`` imports it first, before any of its modules imports mxnet.
"""
import warnings

import numpy as np

_REMOVED_ALIASES = {
    'bool': bool, 'int': int, 'float': float, 'complex': complex,
    'object': object, 'str': str, 'long': int, 'unicode': str,
}


def restore_numpy_aliases():
    """Re-add the builtin aliases NumPy 1.24 removed; a no-op on older NumPy."""
    for name, value in _REMOVED_ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, value)


restore_numpy_aliases()


# The distillation step runs parts of an SSD (features, predictors) without its anchor
# generators, whose constant parameters MXNet then reports as unused at every hybridized call
# (a UserWarning per run in every log). Only that report is silenced: any other unused
# parameter still warns.
warnings.filterwarnings('ignore', message=r'Parameter .*anchor_\d+.* is not used by any '
                        r'computation', category=UserWarning)
