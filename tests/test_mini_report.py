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


def test_cosine_arms_pair_with_head_only_and_gan(tmp_path):
    """``cosine`` and ``gan_cosine`` (our reading of "cosine attention"): each minus head-only,
    and ``gan_cosine`` also minus ``gan`` (what the cosine term adds to the critics); the same
    for the Faster R-CNN arms."""
    rows = {'head_only': [_run(0, 0.50), _run(1, 0.40)],
            'gan': [_run(0, 0.52), _run(1, 0.41)],
            'cosine': [_run(0, 0.53), _run(1, 0.43)],
            'gan_cosine': [_run(0, 0.55), _run(1, 0.42)],
            'rcnn_head_only': [_run(0, 0.30)], 'rcnn_gan': [_run(0, 0.31)],
            'rcnn_gan_cosine': [_run(0, 0.35)]}
    results = write_results(str(tmp_path), {'best_mAP': 0.7}, rows, 10)
    arms = results['arms']
    assert arms['cosine']['minus_head_only']['per_seed'] == pytest.approx({0: 0.03, 1: 0.03})
    assert arms['gan_cosine']['minus_head_only']['per_seed'] == pytest.approx({0: 0.05,
                                                                               1: 0.02})
    assert arms['gan_cosine']['minus_gan']['per_seed'] == pytest.approx({0: 0.03, 1: 0.01})
    assert arms['rcnn_gan_cosine']['minus_rcnn_gan']['per_seed'] == pytest.approx({0: 0.04})
    assert 'minus_gan' not in arms['cosine']
    text = (tmp_path / 'results.md').read_text()
    for line in ('| cosine - head_only | 2 |', '| gan_cosine - head_only | 2 |',
                 '| gan_cosine - gan | 2 | s0=+0.030, s1=+0.010 | +0.0200 |',
                 '| rcnn_gan_cosine - rcnn_head_only | 1 |',
                 '| rcnn_gan_cosine - rcnn_gan | 1 |'):
        assert line in text, line


def test_cosine_arms_write_every_setting():
    """The cosine arms state their settings themselves; ``gan_cosine`` is the ``gan`` arm plus
    the cosine term (same critics, no warm-up, the run's LR steps), and the Faster R-CNN arms
    are the SSD arms' settings on the C4 map. The existing arms are unchanged."""
    from gluon_distill import mini
    cosine_keys = {'distill.cosine.weight', 'distill.cosine.attention_power',
                   'distill.cosine.epochs'}
    assert cosine_keys <= set(mini.ARMS['cosine']) and mini.ARMS['cosine'][
        'distill.method'] == 'cosine'
    gan_cosine = mini.ARMS['gan_cosine']
    assert {k: v for k, v in gan_cosine.items() if k not in cosine_keys | {
        'distill.method', 'distill.gan.critic_warmup_epochs', 'distill.gan.lr_steps'}} == \
        {k: v for k, v in mini.ARMS['gan'].items() if k != 'distill.method'}
    assert mini.ARMS['rcnn_cosine'] == mini.ARMS['cosine']
    assert mini.ARMS['rcnn_gan_cosine'] == gan_cosine
    assert 'distill.cosine.weight' not in mini.ARMS['gan']
    for arm, family in (('cosine', 'ssd'), ('gan_cosine', 'ssd'), ('rcnn_cosine', 'faster_rcnn'),
                        ('rcnn_gan_cosine', 'faster_rcnn')):
        cfg = mini.arm_config(arm, 2, '/tmp/m', 40, '/tmp/m/teacher/best.params')
        d = cfg.distill
        assert cfg.model.family == family and cfg.train.out == '/tmp/m/{}_seed2'.format(arm)
        assert d.method == ('gan+cosine' if 'gan' in arm else 'cosine')
        assert (d.cosine.weight, d.cosine.attention_power, d.cosine.epochs) == (1.0, 2.0, -1)
        assert d.init_head_from_teacher and cfg.teacher.params == '/tmp/m/teacher/best.params'
        if 'gan' in arm:
            g = d.gan
            assert (g.critic, g.critic_width, g.critic_batch, g.adv_optimizer, g.clip,
                    g.critic_warmup_epochs, g.lr_steps) == ('dcgan', 64, 'joint', 'adam', 0.03,
                                                            0, None)
