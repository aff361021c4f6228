"""`make demo QUICK=1`: the main command runs end to end and reports what it promises."""
import json

import pytest

from gluon_distill.demo import run_demo, demo_config, main, ROLES
from gluon_distill.mini import ARMS as MINI_ARMS

LABELS = ['teacher (wide, deep)', 'student, no teacher', 'student, teacher head only',
          'student, mimic-distilled', 'student, FGFI-distilled', 'student, GAN-distilled']


def _value(cfg, key):
    for part in key.split('.'):
        cfg = getattr(cfg, part)
    return cfg


def _diff(row, reference):
    return round(row['mAP'] - reference['mAP'], 4) + 0.0


def test_quick_demo_trains_all_models_and_reports(tmp_path, capsys):
    out = tmp_path / 'demo'
    # a subset first: the teacher and the no-teacher student only
    rows = run_demo(str(out), quick=True, workers=0, arms=['no_teacher'])
    assert [r['model'] for r in rows] == LABELS[:2]
    assert not (out / 'head_only').exists() and not (out / 'fgfi').exists()
    capsys.readouterr()
    teacher_mtime = (out / 'teacher' / 'last.ckpt').stat().st_mtime
    student_mtime = (out / 'student' / 'last.ckpt').stat().st_mtime

    # then all arms: the two finished stages are reused, the four others trained
    rows = run_demo(str(out), quick=True, workers=0)
    printed = capsys.readouterr().out
    assert [r['model'] for r in rows] == LABELS
    assert (out / 'teacher' / 'last.ckpt').stat().st_mtime == teacher_mtime
    assert (out / 'student' / 'last.ckpt').stat().st_mtime == student_mtime
    for row in rows:
        assert 0.0 <= row['mAP'] <= 1.0
        assert '{:.4f}'.format(row['mAP']) in printed
    teacher, student, head_only, mimic, fgfi, gan = rows
    assert teacher['parameters'] > 2 * student['parameters']  # clearly wider and deeper
    # folded, every distilled student costs exactly what the plain student costs: the
    # adapters are folded into the head, FGFI's adaptation layer is left behind
    for row in (head_only, mimic, fgfi, gan):
        assert row['deployed_parameters'] == student['parameters'], row['model']
        assert row['parameters'] > student['parameters']  # before folding: the adapters
    # each method's loss was in the student's objective (FGFI's after its quick warm-up)
    for role, key in (('mimic', 'Loss_mimic'), ('fgfi', 'Loss_fgfi')):
        records = [json.loads(line) for line in (out / role / 'metrics.jsonl').open()]
        assert any(r.get(key, 0) > 0 for r in records), role
    # the honest comparison, one line per teacher-using student
    for name, row in (('mimic-distilled', mimic), ('FGFI-distilled', fgfi),
                      ('GAN-distilled', gan)):
        assert '  {}: {:+.4f} vs no teacher, {:+.4f} vs head only\n'.format(
            name, _diff(row, student), _diff(row, head_only)) in printed
    assert '  head only: {:+.4f} vs no teacher\n'.format(_diff(head_only, student)) in printed
    assert 'one seed' in printed
    assert (out / 'demo.png').stat().st_size > 10000
    summary = json.loads((out / 'demo.json').read_text())
    assert summary['quick'] is True and len(summary['rows']) == 6
    for role in ROLES:
        assert (out / role / 'summary.json').exists()
    assert str(out / 'demo.png') in printed

    # run again: finished stages are reused, not retrained
    mtimes = {role: (out / role / 'last.ckpt').stat().st_mtime for role in ROLES}
    run_demo(str(out), quick=True, workers=0)
    assert {role: (out / role / 'last.ckpt').stat().st_mtime for role in ROLES} == mtimes


def test_demo_students_use_the_mini_reproduction_settings(tmp_path):
    """Mimic and FGFI run with the mini-reproduction's arms (the methods' defaults)."""
    for role in ('mimic', 'fgfi'):
        cfg = demo_config(role, str(tmp_path), quick=False)
        for key, value in MINI_ARMS[role].items():
            assert _value(cfg, key) == value, key
        assert cfg.distill.fold_adapters is True
    assert demo_config('head_only', str(tmp_path)).distill.method == 'head_only'
    assert demo_config('distilled', str(tmp_path)).distill.method == 'gan'


def test_demo_rejects_unknown_arms(capsys):
    with pytest.raises(SystemExit) as e:
        main(['--quick', '--arms', 'no_teacher,fgfi2'])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert 'fgfi2' in err and 'no_teacher, head_only, mimic, fgfi, gan' in err
