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


def detect_output(stdout):
    """``{path: [(class, score, box array), ...]}`` of the lines tools/detect.py prints."""
    import numpy as np
    found, current = {}, None
    for line in stdout.splitlines():
        if line.startswith('  ') and current is not None:
            parts = line.split()
            found[current].append((parts[0], float(parts[1]),
                                   np.array([float(v) for v in parts[2:6]])))
        elif ' detection' in line and ' -> ' in line:
            current = line.split(': ')[0]
            found[current] = []
    return found


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


def spy_distillation_plan(monkeypatch, family_name, extra=None):
    """``seen``, filled by each distillation run of the family ``family_name``: its
    ``teacher`` and ``plan``, the teacher's weights at load (``teacher_at_load``) and
    whatever ``extra(teacher, plan)`` returns (a dict)."""
    from gluon_distill.families import get_family
    family = get_family(family_name)
    original = family.distillation_plan
    seen = {}

    def plan(cfg, classes, ctx):
        t, p = original(cfg, classes, ctx)
        seen['teacher'], seen['plan'] = t, p
        seen['teacher_at_load'] = {k: v.data().copy() for k, v in
                                   t.net.collect_params().items()}
        seen.update(extra(t, p) if extra else {})
        return t, p
    monkeypatch.setattr(family, 'distillation_plan', plan)
    return seen


def teacher_unchanged(seen):
    """Whether the teacher of :func:`spy_distillation_plan`'s ``seen`` still has the weights
    it was loaded with."""
    import numpy as np
    now = seen['teacher'].net.collect_params()
    return all(np.array_equal(now[k].data().asnumpy(), v.asnumpy())
               for k, v in seen['teacher_at_load'].items())
