"""Shared fixtures: the generated dataset, built once per session, and small configs."""
import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SHARED_RACCOON = REPO.parent / 'shared' / 'data' / 'raccoon'


def tool(name):
    """``main`` of ``tools/<name>.py``, imported in this process."""
    tools = str(REPO / 'tools')
    if tools not in sys.path:
        sys.path.insert(0, tools)
    spec = importlib.util.spec_from_file_location('tool_' + name, os.path.join(tools,
                                                                            name + '.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope='session')
def synthetic_root(tmp_path_factory):
    """A small generated VOC root (train 48, val 16 images) shared by the session."""
    from gluon_distill.data.synthetic import make_synthetic_voc
    root = tmp_path_factory.mktemp('synthetic') / 'voc'
    return make_synthetic_voc(str(root), num_train=48, num_val=16, size_range=(96, 128), seed=3)


def tiny_config(root, out, **overrides):
    """A 64 px tiny-SSD config on ``root`` that trains in seconds."""
    from gluon_distill.config import config_from
    sets = {
        'data.root': root, 'data.train_split': 'train', 'data.val_split': 'val',
        'data.num_workers': 0, 'model.network': 'tiny', 'model.data_shape': 64,
        'model.width': 8, 'model.blocks': 1, 'model.pretrained_base': False,
        'train.epochs': 1, 'train.batch_size': 8, 'train.optimizer': 'adam', 'train.lr': 0.001,
        'train.out': str(out), 'train.progress': False, 'train.log_interval': 2,
    }
    sets.update(overrides)
    return config_from(sets)
