"""tools/reproduce.py end to end on a tiny "Table 1" of 64 px networks on the generated data."""
import csv
import json
import os
import subprocess
import sys

import pytest
import yaml

from conftest import REPO

TOOL = str(REPO / 'tools' / 'reproduce.py')

COMMON = {
    'data': {'train_split': 'train', 'val_split': 'val', 'num_workers': 0},
    'model': {'network': 'tiny', 'data_shape': 64, 'width': 8, 'blocks': 1,
              'pretrained_base': False},
    'train': {'epochs': 1, 'batch_size': 16, 'optimizer': 'adam', 'lr': 0.001, 'ctx': 'cpu',
              'progress': False, 'log_interval': 2},
}


def _write(folder, name, root, runs, paper_table, published, model=None, teacher=None,
           distill=None):
    cfg = {k: dict(v) for k, v in COMMON.items()}
    cfg['data']['root'] = str(root)
    cfg['train']['out'] = str(runs / name)
    cfg['experiment'] = {'name': name, 'paper_table': paper_table, 'published_mAP': published}
    if model:
        cfg['model'].update(model)
    if teacher:
        cfg['teacher'] = teacher
        cfg['distill'] = distill
    with open(os.path.join(folder, name + '.yaml'), 'w') as f:
        yaml.safe_dump(cfg, f)


@pytest.fixture
def tiny_table(synthetic_root, tmp_path):
    """A teacher, a baseline and three students (gan, head_only, mimic) plus a Table 2 config."""
    folder, runs = tmp_path / 'experiments', tmp_path / 'runs'
    folder.mkdir()
    teacher = {'network': 'tiny', 'params': str(runs / 'teacher_tiny' / 'best.params')}
    _write(folder, 'teacher_tiny', synthetic_root, runs, 'teacher of Table 1', 0.80,
           model={'width': 16})
    _write(folder, 'baseline_tiny', synthetic_root, runs, 'Table 1, tiny student', 0.70)
    # named so that it sorts before the teacher: order must come from the dependency
    _write(folder, 'a_tiny_to_tiny', synthetic_root, runs, 'Table 1, tiny from tiny', 0.75,
           teacher=teacher, distill={'method': 'gan', 'critic_width': 8})
    _write(folder, 'a_tiny_to_tiny_head_only', synthetic_root, runs, 'comparison for Table 1',
           None, teacher=teacher, distill={'method': 'head_only'})
    _write(folder, 'a_tiny_to_tiny_mimic', synthetic_root, runs, 'comparison for Table 1',
           None, teacher=teacher, distill={'method': 'mimic'})
    _write(folder, 'other_table', synthetic_root, runs, 'Table 2, not ours', 0.5)
    return folder, runs, tmp_path / 'results'


def _tool(*args):
    proc = subprocess.run([sys.executable, TOOL] + list(args), cwd=str(REPO),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_reproduce_tiny_table_end_to_end(tiny_table):
    folder, runs, results = tiny_table
    common = ['--table', '1', '--experiments', str(folder), '--results', str(results),
              '--methods', 'gan', 'head_only', '--ctx', 'cpu']

    printed = _tool(*(common + ['--dry-run'])).splitlines()
    assert not runs.exists() and not results.exists()  # trained nothing
    commands = [line for line in printed if line.startswith('[todo] python tools/')]
    names = [c.split('--config ')[1].split()[0] for c in commands]
    assert [os.path.basename(n) for n in names] == [
        'teacher_tiny.yaml', 'baseline_tiny.yaml', 'a_tiny_to_tiny.yaml',
        'a_tiny_to_tiny_head_only.yaml']  # no mimic (--methods), no Table 2
    assert 'tools/train_ssd.py' in commands[0] and 'tools/train_distill.py' in commands[2]
    assert all(c.split('#')[0].rstrip().endswith('--ctx cpu') for c in commands)
    assert printed[-1].startswith('estimate: ') and 'GPU-hours' in printed[-1]
    assert 'assumed' in printed[-1] and 'not a measurement' in printed[-1]

    _tool(*common)
    summaries = {name: runs / name / 'summary.json' for name in
                 ('teacher_tiny', 'baseline_tiny', 'a_tiny_to_tiny', 'a_tiny_to_tiny_head_only')}
    mtimes = {name: os.path.getmtime(str(p)) for name, p in summaries.items()}
    assert mtimes['teacher_tiny'] < mtimes['a_tiny_to_tiny']
    assert mtimes['teacher_tiny'] < mtimes['a_tiny_to_tiny_head_only']
    assert not (runs / 'a_tiny_to_tiny_mimic').exists()
    assert not (runs / 'other_table').exists()

    with open(str(results / 'table1.csv')) as f:
        rows = {r['name']: r for r in csv.DictReader(f)}
    assert list(rows) == ['teacher_tiny', 'baseline_tiny', 'a_tiny_to_tiny',
                          'a_tiny_to_tiny_head_only']
    gan = rows['a_tiny_to_tiny']
    assert gan['method'] == 'gan' and float(gan['paper_mAP']) == 0.75
    ours = float(gan['our_mAP'])
    assert 0.0 <= ours <= 1.0
    assert float(gan['difference']) == pytest.approx(ours - 0.75, abs=1e-4)
    assert rows['a_tiny_to_tiny_head_only']['paper_mAP'] == ''
    assert rows['a_tiny_to_tiny_head_only']['difference'] == ''
    md = (results / 'table1.md').read_text()
    assert '| a_tiny_to_tiny | student | gan | 0.750 | {:.3f} | {:+.3f} |'.format(
        ours, ours - 0.75) in md
    assert '| a_tiny_to_tiny_head_only | student | head_only | — |' in md
    assert (results / 'table1.png').stat().st_size > 1000

    # a second call trains nothing and gives the same table
    before = md
    printed = _tool(*common)
    assert {name: os.path.getmtime(str(p)) for name, p in summaries.items()} == mtimes
    assert (results / 'table1.md').read_text() == before
    assert 'wrote' in printed
    again = _tool(*(common + ['--dry-run']))
    assert again.count('[done]') == 4 and '[todo]' not in again


def test_reproduce_unknown_method_is_one_line_error(tiny_table):
    folder, _, results = tiny_table
    proc = subprocess.run([sys.executable, TOOL, '--experiments', str(folder), '--methods',
                           'distil', '--dry-run'], cwd=str(REPO), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: unknown method 'distil': expected some of gan, "
                                   "head_only, mimic, fgfi, cosine")


def test_reproduce_resumes_a_cut_off_run(synthetic_root, tmp_path):
    folder, runs, results = tmp_path / 'experiments', tmp_path / 'runs', tmp_path / 'results'
    folder.mkdir()
    _write(str(folder), 'baseline_tiny', synthetic_root, runs, 'Table 1, tiny', 0.7,
           model={'width': 4})
    common = ['--experiments', str(folder), '--results', str(results)]
    # one epoch of two, then "cut off": the checkpoint stays, summary.json does not
    _tool(*(common + ['--set', 'train.epochs=1']))
    out = runs / 'baseline_tiny'
    (out / 'summary.json').unlink()
    assert '[resume] python tools/train_ssd.py' in _tool(*(common + ['--set', 'train.epochs=2',
                                                                      '--dry-run']))
    _tool(*(common + ['--set', 'train.epochs=2']))
    log = (out / 'train.log').read_text()
    assert 'continuing at epoch 1' in log
    assert '"epochs": 2' in (out / 'summary.json').read_text()


# ----------------------------------------------------------------------------- Table 2 (COCO)

def test_reproduce_table2_dry_run_lists_the_coco_configs():
    """--table 2 defaults to experiments/coco: the teacher, the 3 baselines, then the 12
    distillations, and a GPU-hour estimate from the COCO train2017 size."""
    printed = _tool('--table', '2', '--dry-run', '--results', '/nonexistent').splitlines()
    commands = [line for line in printed if line.startswith('[')]
    assert len(commands) == 16
    assert all('--config experiments/coco/' in c for c in commands)
    assert 'train_ssd.py --config experiments/coco/teacher_ssd512_resnet50_v1.yaml' in commands[0]
    assert all('tools/train_ssd.py' in c and 'baseline_' in c for c in commands[1:4])
    assert all('tools/train_distill.py' in c for c in commands[4:])
    assert all('?' not in c.split('#')[1] for c in commands)  # every run has an image count
    assert printed[-1].startswith('estimate: ') and 'for the 16 unfinished runs' in printed[-1]
    gan = _tool('--table', '2', '--dry-run', '--methods', 'gan').splitlines()
    assert len([line for line in gan if line.startswith('[')]) == 7


def test_reproduce_tiny_coco_table_reports_ap(tmp_path):
    """A tiny Table 2 on the generated COCO set: a teacher and a GAN student; table2.csv holds
    COCO AP@[.5:.95] of best.params, what tools/eval.py reports."""
    from gluon_distill.data.synthetic_coco import make_synthetic_coco
    from gluon_distill.evaluate import evaluate_params
    root = make_synthetic_coco(str(tmp_path / 'syn'), num_train=16, num_val=6,
                               size_range=(64, 96), seed=2)
    folder, runs, results = tmp_path / 'experiments', tmp_path / 'runs', tmp_path / 'results'
    folder.mkdir()
    coco = {'data': {'format': 'coco'}}
    _write(str(folder), 'teacher_tiny', root, runs, 'teacher of Table 2', 0.30,
           model={'width': 8})
    _write(str(folder), 'tiny_to_tiny', root, runs, 'Table 2, tiny student, tiny teacher', 0.25,
           teacher={'network': 'tiny', 'params': str(runs / 'teacher_tiny' / 'best.params')},
           distill={'method': 'gan', 'gan': {'critic_width': 8}})
    for name in ('teacher_tiny', 'tiny_to_tiny'):
        path = folder / (name + '.yaml')
        cfg = yaml.safe_load(path.read_text())
        cfg['data'].update(coco['data'])
        path.write_text(yaml.safe_dump(cfg))
    _tool('--table', '2', '--experiments', str(folder), '--results', str(results))
    with open(str(results / 'table2.csv')) as f:
        rows = {r['name']: r for r in csv.DictReader(f)}
    assert list(rows) == ['teacher_tiny', 'tiny_to_tiny']
    result, _ = evaluate_params(str(runs / 'tiny_to_tiny' / 'best.params'), progress=False)
    assert float(rows['tiny_to_tiny']['our_AP']) == pytest.approx(result['AP'], abs=1e-4)
    assert float(rows['tiny_to_tiny']['paper_AP']) == 0.25
    md = (results / 'table2.md').read_text()
    assert 'COCO AP@[.5:.95]' in md and '| paper AP | our AP |' in md


# ------------------------------------------------- the cosine rows and the logged schedules

def _commands(*args):
    printed = _tool(*(list(args) + ['--dry-run', '--results', '/nonexistent'])).splitlines()
    return {line.split('--config ')[1].split()[0]: line.split('#', 1)[1]
            for line in printed if line.startswith('[')}


def test_reproduce_table3_dry_run_lists_the_cosine_rows_with_the_logged_schedule():
    """Table 3's GAN rows are "with GAN-KD and cosine attention": their configs (gan+cosine)
    and the plain-GAN ablations, each with the authors' Faster R-CNN log's schedule."""
    commands = _commands('--table', '3')
    assert len(commands) == 8
    stem = 'experiments/voc07_rcnn/faster_rcnn_resnet101_v1d_to_resnet50_v1b_'
    logged = ('38 epochs, batch 4, lr 0.0001 x0.1 at 32, 36; GAN epochs 0-26 (critics alone '
              '0-1), critic lr 0.0005 x0.1 at 5, 20')
    for roi in ('roipool', 'roialign'):
        assert commands[stem + roi + '_cosine.yaml'].startswith(
            ' gan+cosine; ' + logged + '; cosine epochs 0-26 (weight 1); ~')
        assert commands[stem + roi + '.yaml'].startswith(' gan; ' + logged + '; ~')
    assert commands[stem + 'fgfi.yaml'].startswith(
        ' fgfi; 38 epochs, batch 4, lr 0.0001 x0.1 at 32, 36; FGFI from iteration 400; ~')
    assert commands['experiments/voc07_rcnn/teacher_faster_rcnn_resnet101_v1d.yaml'].startswith(
        ' teacher; 20 epochs, batch 1, lr 0.001 x0.1 at 14, 20; ~')   # GluonCV's recipe
    cosine = _commands('--table', '3', '--methods', 'cosine')
    assert sorted(n for n in cosine if 'cosine' in n) == [stem + 'roialign_cosine.yaml',
                                                          stem + 'roipool_cosine.yaml']
    assert len(cosine) == 5  # and the teacher and both baselines


def test_reproduce_table1_dry_run_lists_the_cosine_row_with_the_logged_schedule():
    commands = _commands('--table', '1')
    assert len(commands) == 43
    cosine = commands['experiments/voc/ssd512_resnet50_v1_to_mobilenet1.0_cosine.yaml']
    assert cosine.startswith(' gan+cosine; 340 epochs, batch 64, lr 0.001 x0.1 at 80, 100; GAN '
                             'epochs 0-339, critic lr 0.0005 x0.1 at 80, 100; cosine epochs '
                             '0-339 (weight 1); ~')
    for name, line in commands.items():   # every distillation on the authors' SSD log
        if '_to_' in name:
            assert '340 epochs, batch 64, lr 0.001 x0.1 at 80, 100' in line, name
        else:
            assert '240 epochs, batch 32, lr 0.001 x0.1 at 160, 200' in line, name
    assert len(_commands('--table', '1', '--methods', 'gan')) == 3 + 3 + 9 + 1


# ------------------------------------------------------ the results page (--report)

TABLE_FOLDERS = {1: 'experiments/voc', 2: 'experiments/coco', 3: 'experiments/voc07_rcnn'}


@pytest.fixture
def report_dir(tmp_path, monkeypatch):
    """A folder with the repository's experiments (a link) and no runs: the report's working
    directory, where the configs' train.out (runs/...) are looked up."""
    (tmp_path / 'experiments').symlink_to(REPO / 'experiments')
    monkeypatch.chdir(str(tmp_path))
    return tmp_path


def _report(cwd, *args):
    proc = subprocess.run([sys.executable, TOOL, '--report'] + list(args), cwd=str(cwd),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _page_rows(text):
    """{config path: its row} of the page's tables."""
    rows = {}
    for line in text.splitlines():
        if line.startswith('| ') and '[`experiments/' in line:
            rows[line.split('[`', 1)[1].split('`]', 1)[0]] = line
    return rows


def test_report_without_runs_lists_every_config_as_not_run(report_dir):
    from gluon_distill.reproduce import collect_runs
    from gluon_distill.results_page import eval_command, train_command
    printed = _report(report_dir)
    page = report_dir / 'docs' / 'results.md'
    assert 'wrote docs/results.md' in printed
    text = page.read_text()
    assert text.startswith('# Results\n')
    assert '\n    python tools/reproduce.py --report\n' in text   # its generation command
    rows = _page_rows(text)
    total = 0
    for table, folder in TABLE_FOLDERS.items():
        assert '\n## Table {}: '.format(table) in text
        for run in collect_runs(folder, table):
            total += 1
            row = rows[run.path]
            assert '| not run |' in row, row
            assert '`{}`'.format(train_command(run)) in row
            assert '`{}`'.format(eval_command(run)) in row
            assert '](../{})'.format(run.path) in row   # links the config from docs/
    assert total == 43 + 16 + 8 and len(rows) == total
    # the cosine rows are the paper's cells, under the authors' labels; plain GAN: ablations
    cosine = rows['experiments/voc/ssd512_resnet50_v1_to_mobilenet1.0_cosine.yaml']
    assert cosine.startswith('| MobileNetV1 student, ResNet50 teacher (with cosine attention) '
                             '| `gan+cosine` | 78.4 | not run |')
    stem = 'experiments/voc07_rcnn/faster_rcnn_resnet101_v1d_to_resnet50_v1b_'
    assert rows[stem + 'roialign_cosine.yaml'].startswith(
        '| ResNet50 student, RoIAlign, with GAN-KD and cosine attention | `gan+cosine` | 74.0 |')
    assert rows[stem + 'roipool_cosine.yaml'].startswith(
        '| ResNet50 student, RoIPooling, with GAN-KD and cosine attention | `gan+cosine` | 73.8 |')
    table3 = text.split('\n## Table 3: ')[1].split('\n## ')[0]
    cells, ablations = table3.split('### Ablations and comparisons (not in the paper)')
    assert stem + 'roialign_cosine.yaml' in cells and stem + 'roialign.yaml' not in cells
    assert rows[stem + 'roialign.yaml'].split(' | ')[1].startswith(
        'ablation of Table 3 (ResNet50 student, RoIAlign): GAN-KD without cosine attention')
    assert stem + 'roialign.yaml' in ablations
    head_only = rows['experiments/voc/ssd512_resnet50_v1_to_mobilenet1.0_head_only.yaml']
    assert '| `head_only` | not run |' in head_only
    assert text.split('\n## Table 1: ')[1].index('ssd512_resnet50_v1_to_mobilenet1.0_head_only') \
        > text.split('\n## Table 1: ')[1].index('### Ablations')
    evidence = text.split('\n## CPU evidence\n')[1]
    assert 'python bench/mini_repro.py' in evidence and '--report --evidence' in evidence
    assert '--demo' in evidence


def test_report_shows_the_number_of_a_finished_run(report_dir):
    def files(out, contents):
        folder = report_dir / out
        folder.mkdir(parents=True)
        for name, value in contents.items():
            (folder / name).write_text(json.dumps(value))
    files('runs/voc/ssd512_resnet50_v1_to_mobilenet1.0_cosine',
          {'summary.json': {'epochs': 340}, 'reproduce_eval.json': {'mAP': 0.78123}})
    files('runs/voc07_rcnn/baseline_faster_rcnn_resnet50_v1b_roialign',
          {'summary.json': {'epochs': 20}, 'best.json': {'epoch': 17, 'mAP': 0.70456}})
    files('runs/coco/ssd512_resnet50_v1_to_mobilenet1.0_head_only', {'last.ckpt': ''})
    files('runs/coco/baseline_ssd512_mobilenet1.0', {'best.json': {'epoch': 3, 'mAP': 0.1}})
    _report(report_dir, '--out', 'out/page.md')
    text = (report_dir / 'out' / 'page.md').read_text()
    assert '\n    python tools/reproduce.py --report --out out/page.md\n' in text
    rows = _page_rows(text)
    assert rows['experiments/voc/ssd512_resnet50_v1_to_mobilenet1.0_cosine.yaml'].startswith(
        '| MobileNetV1 student, ResNet50 teacher (with cosine attention) | `gan+cosine` | 78.4 '
        '| 78.12 |')
    assert '| 71.7 | 70.46 (best.json) |' in \
        rows['experiments/voc07_rcnn/baseline_faster_rcnn_resnet50_v1b_roialign.yaml']
    assert '| not finished |' in \
        rows['experiments/coco/ssd512_resnet50_v1_to_mobilenet1.0_head_only.yaml']
    # best.json of a run without summary.json (still training): not a result
    assert '| 21.7 | not run |' in rows['experiments/coco/baseline_ssd512_mobilenet1.0.yaml']
    assert '43 runs, 1 finished' in text and '8 runs, 1 finished' in text
    assert sum('| not run |' in row for row in rows.values()) == 67 - 3


def test_report_quotes_the_evidence_folders(report_dir):
    from gluon_distill.demo import format_table
    from gluon_distill.mini import write_results
    run = {'diverged': False, 'seconds': 1.0, 'grad_ratio': None}
    rows = {'head_only': [dict(run, seed=s, final_mAP=f, best_mAP=b) for s, f, b in
                          ((0, 0.5012, 0.55), (1, 0.6031, 0.61), (2, 0.5547, 0.58))],
            'gan': [dict(run, seed=s, final_mAP=f, best_mAP=b,
                         grad_ratio={'mean': 1.5, 'min': 1.0, 'max': 2.0})
                    for s, f, b in ((0, 0.5321, 0.54), (1, 0.6402, 0.65), (2, 0.5611, 0.57))]}
    evidence = report_dir / 'ev' / 'mini_hand'
    evidence.mkdir(parents=True)
    write_results(str(evidence), {'best_mAP': 0.7123}, rows, 30)
    results = json.loads((evidence / 'results.json').read_text())
    results_md = (evidence / 'results.md').read_text()
    demo = report_dir / 'demo_out'
    demo.mkdir()
    demo_rows = [{'model': 'teacher (wide, deep)', 'role': 'teacher', 'parameters': 1000,
                  'mAP': 0.80661},
                 {'model': 'student, GAN-distilled', 'role': 'distilled', 'parameters': 900,
                  'deployed_parameters': 500, 'mAP': 0.58034}]
    (demo / 'demo.json').write_text(json.dumps({'rows': demo_rows, 'quick': False}))
    (demo / 'demo.png').write_bytes((evidence / 'paired.png').read_bytes())

    _report(report_dir, '--evidence', 'ev/mini_hand', '--demo', 'demo_out')
    text = (report_dir / 'docs' / 'results.md').read_text()
    assert '\n    python tools/reproduce.py --report --evidence ev/mini_hand --demo demo_out\n' \
        in text
    section = text.split('\n## CPU evidence\n')[1]
    for arm in ('head_only', 'gan'):
        record = results['arms'][arm]
        for key in ('final', 'best'):
            quoted = '{:.4f} ± {:.4f}'.format(record[key + '_mean'], record[key + '_std'])
            assert quoted in section and quoted in results_md
    diff = results['arms']['gan']['minus_head_only']
    for quoted in ('{:+.4f}'.format(diff['mean']),
                   '[{:+.4f}, {:+.4f}]'.format(*diff['interval95']),
                   's1={:+.3f}'.format(diff['per_seed']['1'])):
        assert quoted in section and quoted in results_md
    assert '| `gan - head_only` | 3 |' in section
    assert 'teacher best mAP 0.7123' in section and 'students trained 30 epochs' in section
    image = report_dir / 'docs' / 'images' / 'mini_hand_paired.png'
    assert image.read_bytes() == (evidence / 'paired.png').read_bytes()
    assert '](images/mini_hand_paired.png)' in section
    for line in format_table(demo_rows).splitlines():   # the demo's own table
        assert '    ' + line in section
    assert '0.8066' in section and '500' in section
    assert (report_dir / 'docs' / 'images' / 'demo_out_demo.png').exists()

    proc = subprocess.run([sys.executable, TOOL, '--report', '--evidence', 'demo_out'],
                          cwd=str(report_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
    assert proc.returncode == 2 and proc.stderr.startswith('error: demo_out: no results.json')


def test_commands_name_the_installed_command_outside_a_checkout(monkeypatch, tmp_path):
    """In a source checkout the printed commands run tools/*.py; where the package was
    pip-installed (no tools/ beside it) they run the ``gluon-distill`` command instead."""
    from gluon_distill import reproduce
    assert reproduce._command_prefix('distill', 'train_distill') == \
        'python tools/train_distill.py'
    (tmp_path / 'gluon_distill').mkdir()
    monkeypatch.setattr(reproduce, '__file__', str(tmp_path / 'gluon_distill' / 'reproduce.py'))
    assert reproduce._command_prefix('distill', 'train_distill') == 'gluon-distill distill'
    assert reproduce._command_prefix('train-rcnn', 'train_rcnn') == 'gluon-distill train-rcnn'
