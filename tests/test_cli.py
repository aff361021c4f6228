"""The command line as one product: `gluon-distill COMMAND`, one name per concept across the
commands, defaults visible, errors that name the fix, generated reference pages, the package
installed with its configs (issue items 3, 5-8)."""
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
import yaml

from conftest import REPO, tool

from gluon_distill.config import Config, ConfigError, load_config

PY = sys.executable
ENV = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS='1')
TRAINING = ('train', 'distill', 'train-rcnn')
# every command that trains (the YOLOv3 family's command too)
TRAINING_COMMANDS = TRAINING + ('train-yolo3',)


def _commands():
    from gluon_distill import commands
    return commands


def _docgen():
    from gluon_distill import docgen
    return docgen


def _config(name):
    from gluon_distill import config
    return getattr(config, name)


def _run(args, cwd=REPO, timeout=300):
    return subprocess.run([PY] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, cwd=str(cwd), env=ENV)


def _parser(name):
    return _commands().command_module(name).build_parser(prog='gluon-distill ' + name)


def _call(name, argv, capsys):
    """``gluon-distill NAME ARGV`` in this process: (exit status, stdout, stderr)."""
    try:
        code = _commands().main([name] + [str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def _shown_options(parser):
    import argparse
    shown = set()
    for action in parser._actions:
        if action.help is not argparse.SUPPRESS:
            shown |= set(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                shown |= _shown_options(sub)
    return shown


# ----------------------------------------------------------- item 3: generated reference pages

@pytest.mark.skipif(sys.version_info[:2] not in ((3, 11), (3, 12)),
                    reason='the pages are generated with the argparse of Python 3.11/3.12')
def test_committed_reference_pages_equal_a_fresh_generation():
    for path, text in _docgen().pages(str(REPO / 'docs')).items():
        with open(path) as f:
            assert f.read() == text, '{} is out of date: python -m gluon_distill.docgen'.format(
                path)


def test_config_page_has_every_key_and_cli_page_every_command():
    config = (REPO / 'docs' / 'config.md').read_text()
    cli = (REPO / 'docs' / 'cli.md').read_text()
    keys = [key for _, _, rows in _docgen().config_keys() for key, _ in rows]
    assert len(keys) > 90 and set(keys) == set(_config('KEY_HELP'))
    for key in keys:
        assert '| `{}` |'.format(key) in config, key
    for name in _commands().COMMANDS:
        assert '\n## gluon-distill {}\n'.format(name) in cli
        assert 'usage: gluon-distill {} '.format(name) in cli


def test_docgen_check_names_stale_pages_and_one_command_writes_them(tmp_path, capsys):
    assert _docgen().main(['--docs', str(tmp_path), '--check']) == 1
    assert not list(tmp_path.iterdir())
    assert _docgen().main(['--docs', str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ['cli.md', 'config.md']
    assert _docgen().main(['--docs', str(tmp_path), '--check']) == 0


# ------------------------------------------------------------ item 5: one name per concept

def test_one_name_per_concept_across_the_commands():
    shown = {name: _shown_options(_parser(name)) for name in _commands().COMMANDS}
    former = {'--save-dir', '--results', '--output', '--voc-root', '--workers', '--root',
              '--save-prefix', '--dataset-root'}
    for name, options in shown.items():
        assert not options & former, (name, options & former)
    # every output is --out, every data root --data-root
    for name in ('train', 'distill', 'train-rcnn', 'eval', 'export', 'detect', 'convert', 'plot',
                 'reproduce'):
        assert '--out' in shown[name], name
    for name in ('train', 'distill', 'train-rcnn', 'eval', 'check', 'convert'):
        assert '--data-root' in shown[name], name
    # --seed is the training seed (training commands only), --split-seed the split's
    for name, options in shown.items():
        assert ('--seed' in options) == (name in TRAINING_COMMANDS), name
    for name in TRAINING_COMMANDS + ('check',):
        assert '--split-seed' in shown[name] and '--val-fraction' in shown[name], name
    # --num-workers: data loader workers only; the launcher's processes have their own name
    from gluon_distill import demo, launch
    assert '--num-workers' in _shown_options(demo.build_parser())
    launcher = _shown_options(launch.build_parser())
    assert '--num-workers' not in launcher and '--num-processes' in launcher


def test_training_commands_share_the_flags_that_mean_the_same():
    train, distill, rcnn = (_shown_options(_parser(n)) for n in TRAINING)
    assert train <= distill and train <= rcnn
    for flag in ('--wd', '--lr-decay-epoch', '--print-config'):
        assert flag in train and flag in distill and flag in rcnn
    for flag in ('--roi-mode', '--max-size'):
        assert flag in distill and flag in rcnn


def test_lists_take_commas():
    from gluon_distill.commands._training import resolve
    args = _parser('train').parse_args(['--lr-decay-epoch', '14,20'])
    assert resolve(args).train.lr_steps == [14, 20]
    assert _parser('reproduce').parse_args(['--methods', 'gan,fgfi']).methods == ['gan', 'fgfi']
    assert _parser('export').parse_args(['--params', 'p', '--out', 'o', '--format',
                                         'mxnet,onnx']).format == ['mxnet', 'onnx']
    assert _parser('check').parse_args(['--data-root', 'r', '--classes', 'cat,dog']).classes == \
        ['cat', 'dog']
    converted = _parser('convert').parse_args(['voc2coco', '--data-root', 'r', '--out', 'o.json',
                                               '--classes', 'a,b', '--category-ids', '3,7'])
    assert converted.classes == ['a', 'b'] and converted.category_ids == [3, 7]
    with pytest.raises(SystemExit):
        _parser('export').parse_args(['--params', 'p', '--out', 'o', '--format', 'mxnet,tf'])


@pytest.mark.parametrize('name, argv, dest, value, former', [
    ('eval', ['--params', 'p', '--save-dir', 'ev'], 'out', 'ev', '--save-dir'),
    ('reproduce', ['--results', 'res'], 'out', 'res', '--results'),
    ('plot', ['run', '--output', 'a.png'], 'out', 'a.png', '--output'),
    ('convert', ['voc2coco', '--voc-root', 'r', '--out', 'o.json'], 'data_root', 'r',
     '--voc-root'),
    ('check', ['--data-root', 'r', '--seed', '3'], 'split_seed', 3, '--seed'),
    ('reproduce', ['--methods', 'gan', 'head_only'], 'methods', ['gan', 'head_only'],
     '--methods'),
    ('export', ['--params', 'p', '--out', 'o', '--format', 'mxnet', '--format', 'onnx'],
     'format', ['mxnet', 'onnx'], '--format'),
])
def test_former_spellings_still_work_with_a_one_line_notice(name, argv, dest, value, former,
                                                            capsys):
    args = _parser(name).parse_args(argv)
    assert getattr(args, dest) == value
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and former in err[0] and 'read as such' in err[0], err


def test_former_spellings_of_check_demo_and_launch(capsys):
    from gluon_distill import demo, launch
    from gluon_distill.commands.check_dataset import parse_args
    assert parse_args(['some/root', '--seed', '2']).root == 'some/root'
    err = capsys.readouterr().err
    assert '--data-root some/root' in err and '--split-seed' in err
    assert demo.build_parser().parse_args(['--workers', '0']).num_workers == 0
    assert '--workers is now --num-workers' in capsys.readouterr().err
    args = launch.parse_args(['--num-workers', '2', '--', 'true'])
    assert args.num_workers == 2 and args.command == ['true']
    assert '--num-workers is now --num-processes' in capsys.readouterr().err


# ------------------------------------------------------------------- item 6: defaults visible

def _defaults(name):
    if name == 'train-rcnn':
        from gluon_distill.commands.train_rcnn import recipe
        return recipe()
    if name == 'train-yolo3':
        from gluon_distill.commands.train_yolo3 import recipe
        return recipe()
    return Config()


@pytest.mark.parametrize('name', TRAINING_COMMANDS)
def test_training_help_shows_the_resolved_default_of_every_flag(name, capsys):
    code, out, _ = _call(name, ['--help'], capsys)
    assert code == 0
    assert 'None' not in out
    text = ' '.join(out.split())
    defaults = _defaults(name)
    parser = _parser(name)
    flags = [a for a in parser._actions if a.dest in _config('FLAG_ALIASES')]
    assert len(flags) >= 22
    for action in flags:
        dotted = _config('FLAG_ALIASES')[action.dest]
        shown = '({}; default: {})'.format(dotted, _config('format_default')(
            _config('get_key')(defaults, dotted)))
        assert shown in text, (action.dest, shown)
    if name == 'train-rcnn':   # GluonCV's Faster R-CNN recipe, not the SSD defaults
        assert '(train.epochs; default: 20)' in text and '(train.lr_steps; default: 14,20)' in text


def test_help_after_a_config_shows_that_files_values(tmp_path, capsys):
    path = tmp_path / 'exp.yaml'
    path.write_text('train:\n  epochs: 7\n  out: runs/mine\n')
    code, out, _ = _call('train', ['--config', path, '--set', 'train.lr=0.25', '--help'], capsys)
    text = ' '.join(out.split())
    assert code == 0
    assert '(train.epochs; default: 7)' in text and '(train.out; default: runs/mine)' in text
    assert '(train.lr; default: 0.25)' in text and '(train.batch_size; default: 32)' in text


@pytest.mark.parametrize('name', TRAINING_COMMANDS)
def test_print_config_prints_the_resolved_yaml_and_exits(name, tmp_path, capsys):
    path = tmp_path / 'exp.yaml'
    path.write_text('train:\n  epochs: 7\n  lr: 1e-2\nmodel:\n  network: tiny\n')
    out_dir = tmp_path / 'never'
    code, out, err = _call(name, ['--config', path, '--set', 'train.lr=0.5', '--epochs', '3',
                                  '--out', out_dir, '--lr-decay-epoch', '2,3', '--print-config'],
                           capsys)
    assert code == 0, err
    printed = yaml.safe_load(out)
    assert printed['train']['epochs'] == 3          # the flag beats the file
    assert printed['train']['lr'] == 0.5            # --set beats the file
    assert printed['train']['lr_steps'] == [2, 3]
    assert printed['model']['network'] == 'tiny'    # the file beats the defaults
    assert printed['model']['family'] == {'train-rcnn': 'faster_rcnn',
                                          'train-yolo3': 'yolo3'}.get(name, 'ssd')
    assert load_config(None, ['train.epochs=3']).to_dict().keys() == printed.keys()
    assert not out_dir.exists()


# ---------------------------------------------------------------- item 7: errors name the fix

@pytest.mark.parametrize('argv, fix', [
    (['--data-rot', 'x'], 'did you mean --data-root'),
    (['--epohcs', '3'], 'did you mean --epochs'),
    (['--gpus', '0,1'], 'use --ctx gpu:0,1'),
    (['--gpus=2'], 'use --ctx gpu:2'),
    (['--dataset-root', '/data/voc'], 'use --data-root /data/voc'),
    (['--save-prefix', 'runs/ssd'], 'use --out runs/ssd'),
    (['--dataset', 'coco'], 'use --data-root ~/.mxnet/datasets/coco'),
    (['--momentum', '0.8'], 'use --set train.momentum=0.8'),
])
def test_an_unknown_flag_names_its_fix(argv, fix, capsys):
    code, out, err = _call('train', argv, capsys)
    assert code == 2 and out == ''
    lines = err.strip().splitlines()
    flag = argv[0].split('=')[0]
    assert lines[0].startswith('gluon-distill train: error: unrecognized argument ' + flag), err
    assert fix in lines[0], err
    assert 'usage:' not in err


def test_unknown_flags_of_other_commands_are_answered_too(capsys):
    code, _, err = _call('eval', ['--params', 'p', '--save-prefix', 'x', '--gpus', '0'], capsys)
    assert code == 2 and 'use --out x' in err and 'use --ctx gpu:0' in err
    code, _, err = _call('check', ['--data-root', 'r', '--sed', '1'], capsys)
    assert code == 2 and 'did you mean --seed' not in err   # a former spelling is not offered
    code, _, err = _call('convert', ['voc2coco', '--data-root', 'r', '--out', 'o', '--clases', 'a'],
                         capsys)
    assert code == 2 and 'did you mean --classes' in err


def test_a_config_path_typo_names_the_near_configs(tmp_path, monkeypatch):
    monkeypatch.chdir(str(tmp_path))
    with pytest.raises(ConfigError) as e:
        load_config('voc/ssd512_resnet50_v1_to_mobilenet10.yaml')
    assert 'did you mean voc/ssd512_resnet50_v1_to_mobilenet1.0.yaml' in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config('experiments/voc/teacher_ssd512_resnet50.yaml')
    assert 'experiments/voc/teacher_ssd512_resnet50_v1.yaml' in str(e.value)
    (tmp_path / 'mine.yaml').write_text('train:\n  epochs: 2\n')
    with pytest.raises(ConfigError) as e:
        load_config('mien.yaml')
    assert 'did you mean mine.yaml' in str(e.value)


def test_shipped_configs_are_found_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(str(tmp_path))
    for path in ('voc/ssd512_resnet50_v1_to_mobilenet1.0.yaml',
                 'experiments/voc/ssd512_resnet50_v1_to_mobilenet1.0.yaml'):
        assert load_config(path).experiment.name == 'ssd512_resnet50_v1_to_mobilenet1.0'


def test_ctx_gpu_without_gpus_suggests_cpu_and_the_gpu_extra(tmp_path):
    import mxnet as mx
    if mx.context.num_gpus():
        pytest.skip('this machine has GPUs')
    from gluon_distill.engine.devices import parse_ctx
    with pytest.raises(ValueError) as e:
        parse_ctx('gpu')
    assert '--ctx cpu' in str(e.value) and 'gluon-distill[cu112]' in str(e.value)
    res = _run(['-m', 'gluon_distill', 'train', '--ctx', 'gpu:0,1', '--data-root', 'synthetic',
                '--out', tmp_path / 'run'], cwd=tmp_path)
    errors = [line for line in res.stderr.splitlines() if line.startswith('error:')]
    assert res.returncode == 2 and len(errors) == 1, res.stderr
    assert '--ctx gpu:0,1' in errors[0] and '--ctx cpu' in errors[0]
    assert 'gluon-distill[cu112]' in errors[0] and not (tmp_path / 'run').exists()


@pytest.mark.parametrize('content', ['empty', 'files'])
def test_an_empty_or_unrecognised_data_root_gives_one_report(content, tmp_path):
    root = tmp_path / 'root'
    root.mkdir()
    if content == 'files':
        (root / 'images').mkdir()
        (root / 'labels.txt').write_text('cat\n')
    res = _run(['tools/train_ssd.py', '--data-root', root, '--out', tmp_path / 'run',
                '--num-workers', '0'])
    assert res.returncode == 2
    err = res.stderr[res.stderr.index('error:'):]
    assert err.count('error:') == 1 and err.count('A data root is one of') == 1
    assert 'is empty' in err if content == 'empty' else 'holds images/, labels.txt' in err
    for kind in ('a VOC root', 'a COCO root', 'synthetic'):
        assert kind in err
    assert 'plain VOC root' not in res.stderr and len(res.stderr.splitlines()) <= 8
    # the dataset check says the same, once
    check = _run(['tools/check_dataset.py', '--data-root', root])
    assert check.returncode == 1 and check.stderr.count('A data root is one of') == 1
    assert check.stdout == ''


# ------------------------------------------------------------- item 8: one installed command

def test_python_m_gluon_distill_lists_and_runs_every_command(tmp_path, capsys):
    res = _run(['-m', 'gluon_distill', '--help'], cwd=tmp_path)
    assert res.returncode == 0
    for name in _commands().COMMANDS:
        assert '\n  {} '.format(name) in res.stdout
    for name in _commands().COMMANDS:
        code, out, _ = _call(name, ['--help'], capsys)
        assert code == 0 and out.startswith('usage: gluon-distill {} '.format(name)), name
    code, _, err = _call('trian', [], capsys)
    assert code == 2 and 'did you mean train?' in err
    code, _, err = _call('check_dataset', [], capsys)
    assert code == 2 and 'did you mean check?' in err


def test_the_tools_scripts_are_aliases_of_the_commands():
    for name, (module, alias, _) in _commands().COMMANDS.items():
        assert alias == 'tools/{}.py'.format(module)
        assert tool(module) is _commands().command_module(name).main
        assert len((REPO / alias).read_text().splitlines()) <= 14


def test_reproduce_finds_the_tables_configs_from_another_folder(tmp_path):
    res = _run([REPO / 'tools' / 'reproduce.py', '--table', '3', '--dry-run', '--methods',
                'cosine'], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    runs = [line for line in res.stdout.splitlines() if line.startswith('[todo]')]
    assert len(runs) == 5 and all('voc07_rcnn/' in line for line in runs)


def test_the_wheel_ships_the_configs_and_the_command(tmp_path):
    """``pip install .`` installs what a wheel built from the checkout holds: every config of
    experiments/ as gluon_distill/experiments/, and the gluon-distill console script."""
    src = tmp_path / 'src'
    src.mkdir()
    for name in ('setup.py', 'MANIFEST.in', 'README.md', 'LICENSE'):
        if (REPO / name).exists():
            shutil.copy(str(REPO / name), str(src / name))
    ignore = shutil.ignore_patterns('__pycache__', '*.pyc')
    for name in ('gluon_distill', 'experiments'):
        shutil.copytree(str(REPO / name), str(src / name), ignore=ignore)
    res = subprocess.run([PY, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q',
                          '-w', str(tmp_path / 'dist'), str(src)], capture_output=True, text=True,
                         timeout=600, cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    (wheel,) = (tmp_path / 'dist').glob('gluon_distill-*.whl')
    names = set(zipfile.ZipFile(str(wheel)).namelist())
    configs = sorted(p.relative_to(REPO / 'experiments').as_posix()
                     for p in (REPO / 'experiments').glob('*/*.yaml'))
    assert len(configs) > 60
    for config in configs:
        assert 'gluon_distill/experiments/' + config in names, config
    assert 'gluon_distill/__main__.py' in names and 'gluon_distill/commands/train_ssd.py' in names
    (entry,) = [n for n in names if n.endswith('entry_points.txt')]
    text = zipfile.ZipFile(str(wheel)).read(entry).decode()
    assert 'gluon-distill = gluon_distill.commands:main' in text


def test_output_piped_into_head_ends_quietly():
    """``gluon-distill reproduce --table 1 --dry-run | head -1``: the reader closes the pipe; the
    command ends without a traceback (exit 1). The read end is closed before the command starts,
    so every write meets the closed pipe."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        res = subprocess.run([PY, '-m', 'gluon_distill', 'reproduce', '--table', '1',
                              '--dry-run'], stdout=write_end, stderr=subprocess.PIPE,
                             cwd=str(REPO), env=ENV, timeout=120, text=True)
    finally:
        os.close(write_end)
    assert 'Traceback' not in res.stderr and 'BrokenPipeError' not in res.stderr, res.stderr
    assert res.returncode == 1
