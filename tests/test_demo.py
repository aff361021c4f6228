"""`make demo QUICK=1`: the main command runs end to end and reports what it promises."""
import json

from gluon_distill.demo import run_demo, ROLES


def test_quick_demo_trains_all_models_and_reports(tmp_path, capsys):
    out = tmp_path / 'demo'
    rows = run_demo(str(out), quick=True, workers=0)
    printed = capsys.readouterr().out
    assert [r['model'] for r in rows] == ['teacher (wide, deep)', 'student, no teacher',
                                          'student, teacher head only',
                                          'student, GAN-distilled']
    for row in rows:
        assert 0.0 <= row['mAP'] <= 1.0
        assert '{:.4f}'.format(row['mAP']) in printed
    teacher, student, head_only, distilled = rows
    assert teacher['parameters'] > 2 * student['parameters']  # clearly wider and deeper
    # folded, the distilled students cost exactly what the plain student costs
    assert distilled['deployed_parameters'] == student['parameters']
    assert head_only['deployed_parameters'] == student['parameters']
    assert (out / 'demo.png').stat().st_size > 10000
    summary = json.loads((out / 'demo.json').read_text())
    assert summary['quick'] is True and len(summary['rows']) == 4
    for role in ROLES:
        assert (out / role / 'summary.json').exists()
    assert str(out / 'demo.png') in printed
    # run again: finished stages are reused, not retrained
    mtime = (out / 'teacher' / 'last.ckpt').stat().st_mtime
    run_demo(str(out), quick=True, workers=0)
    assert (out / 'teacher' / 'last.ckpt').stat().st_mtime == mtime
