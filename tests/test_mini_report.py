"""The mini-reproduction's report: differences paired by seed (a distillation arm minus the
head-only student), their mean and 95% interval, the logged gradient share, and the plot."""
import json
import math

import pytest

from gluon_distill.mini import paired_differences, t975, write_results


def _run(seed, final, ratio=None):
    return {'seed': seed, 'final_mAP': final, 'best_mAP': final, 'diverged': False,
            'seconds': 1.0, 'grad_ratio': {'mean': ratio, 'min': ratio, 'max': ratio}
            if ratio is not None else None}


def test_paired_differences_by_hand():
    head = [_run(0, 0.50), _run(1, 0.40), _run(2, 0.60), _run(3, 0.55)]
    gan = [_run(0, 0.55), _run(1, 0.38), _run(2, 0.66), _run(4, 0.9)]  # seed 4 has no pair
    diff = paired_differences(gan, head)
    assert diff['per_seed'] == pytest.approx({0: 0.05, 1: -0.02, 2: 0.06})
    mean = (0.05 - 0.02 + 0.06) / 3
    sd = math.sqrt(((0.05 - mean) ** 2 + (-0.02 - mean) ** 2 + (0.06 - mean) ** 2) / 2)
    half = 4.303 * sd / math.sqrt(3)
    assert diff['mean'] == pytest.approx(mean)
    assert diff['std'] == pytest.approx(sd)
    assert diff['interval95'] == pytest.approx([mean - half, mean + half])
    assert paired_differences([_run(0, 0.5)], head)['interval95'] is None
    assert paired_differences([_run(9, 0.5)], head) is None


def test_t_quantiles():
    assert t975(4) == 2.776 and t975(1) == 12.706
    assert t975(11) == 2.228  # between listed df: the smaller df's, a wider interval
    assert t975(100) == 2.042


def test_results_pair_each_arm_with_its_reference(tmp_path):
    rows = {'baseline': [_run(0, 0.30), _run(1, 0.32)],
            'head_only': [_run(0, 0.50), _run(1, 0.40)],
            'gan': [_run(0, 0.45, 0.8), _run(1, 0.44, 1.2)]}
    results = write_results(str(tmp_path), {'best_mAP': 0.7}, rows, 10)
    gan = results['arms']['gan']['minus_head_only']
    assert gan['per_seed'] == pytest.approx({0: -0.05, 1: 0.04})
    assert gan['grad_ratio_mean'] == pytest.approx(1.0)
    head = results['arms']['head_only']['minus_baseline']
    assert head['mean'] == pytest.approx(0.14)
    text = (tmp_path / 'results.md').read_text()
    assert '| gan - head_only | 2 | s0=-0.050, s1=+0.040 | -0.0050 |' in text
    assert '| head_only - baseline | 2 |' in text
    assert (tmp_path / 'paired.png').stat().st_size > 1000
    assert json.loads((tmp_path / 'results.json').read_text())['arms']['gan'][
        'minus_head_only']['interval95'][0] < -0.005
