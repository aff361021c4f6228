"""Shared behaviour of the command-line tools: known errors become one clear line."""
import sys


def known_errors():
    from .config import ConfigError
    from .data.report import DatasetError
    from .engine.checkpoint import CheckpointError
    from .engine.distributed import DistributedError
    from .engine.hooks import TrainingDiverged
    from .models.ssd import ModelError
    return (ConfigError, DatasetError, CheckpointError, TrainingDiverged, ModelError, ValueError,
            FileNotFoundError, DistributedError)


def run_tool(fn):
    """Run ``fn()``; print known errors as ``error: ...`` (exit 2), Ctrl-C exits 130."""
    try:
        fn()
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130
    except known_errors() as e:
        print('error: {}'.format(e), file=sys.stderr)
        return 2
    return 0
