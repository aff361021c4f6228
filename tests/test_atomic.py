"""One atomic writer: every file a run or a tool writes (checkpoints, config.yaml, summaries,
metrics, deploy.json, the mini reproduction's results) goes through
:func:`gluon_distill.io_utils.atomic_write`, so a write stopped half way (Ctrl-C, an
unserialisable value, a crash) leaves the old file whole and no temporary file behind."""
import json
import os

import pytest

import gluon_distill  # noqa: F401
import mxnet as mx
from mxnet.gluon import nn

from gluon_distill import io_utils
from gluon_distill.config import Config
from gluon_distill.engine.checkpoint import read_checkpoint, save_checkpoint
from gluon_distill.io_utils import WriteError, atomic_write, atomic_write_json
from gluon_distill.mini import write_results


@pytest.fixture
def ctrl_c_before_rename(monkeypatch):
    """Ctrl-C once the new content is in the temporary file but before it is renamed: the
    helper's fsync is the last step before the rename (a plain ``open(path, 'w')`` writer
    never reaches it and overwrites the file)."""
    def interrupted(fd):
        raise KeyboardInterrupt
    monkeypatch.setattr(io_utils.os, 'fsync', interrupted)


def _only(directory, *names):
    assert sorted(os.listdir(str(directory))) == sorted(names)


def test_helper_keeps_old_file_on_any_exception(tmp_path):
    path = tmp_path / 'a.json'
    path.write_text('old')

    def half_then_fail(tmp):
        with open(tmp, 'w') as f:
            f.write('{"half": ')
        raise RuntimeError('boom')
    with pytest.raises(RuntimeError, match='boom'):
        atomic_write(str(path), half_then_fail)
    assert path.read_text() == 'old'
    _only(tmp_path, 'a.json')
    with pytest.raises(TypeError):
        atomic_write_json(str(path), {'x': {1, 2}})
    assert path.read_text() == 'old'
    _only(tmp_path, 'a.json')
    atomic_write_json(str(path), {'x': 1})
    assert json.loads(path.read_text()) == {'x': 1}
    _only(tmp_path, 'a.json')


def test_helper_read_only_folder_is_a_write_error(tmp_path):
    if os.geteuid() == 0:
        pytest.skip('root writes into read-only folders')
    folder = tmp_path / 'ro'
    folder.mkdir()
    (folder / 'a.json').write_text('old')
    folder.chmod(0o500)
    try:
        with pytest.raises(WriteError, match='cannot write .*a.json: Permission denied'):
            atomic_write_json(str(folder / 'a.json'), {'x': 1})
    finally:
        folder.chmod(0o700)
    assert (folder / 'a.json').read_text() == 'old'


def test_config_dump_unserialisable_value_leaves_no_temp_file(tmp_path):
    path = tmp_path / 'config.yaml'
    Config().dump(str(path))
    old = path.read_text()
    cfg = Config()
    cfg.experiment.name = object()  # yaml.safe_dump cannot represent it
    with pytest.raises(Exception):
        cfg.dump(str(path))
    assert path.read_text() == old
    _only(tmp_path, 'config.yaml')


def test_config_dump_interrupted(tmp_path, ctrl_c_before_rename):
    path = tmp_path / 'config.yaml'
    path.write_text('old')
    with pytest.raises(KeyboardInterrupt):
        Config().dump(str(path))
    assert path.read_text() == 'old'
    _only(tmp_path, 'config.yaml')


def _rows(final):
    return {'baseline': [{'seed': 0, 'final_mAP': final, 'best_mAP': 0.5, 'diverged': False,
                          'seconds': 1.0}]}


def test_mini_results_unserialisable_value_keeps_old_results(tmp_path):
    write_results(str(tmp_path), {'best_mAP': 0.6}, _rows(0.4), 2)
    old = (tmp_path / 'results.json').read_text()
    assert json.loads(old)['arms']['baseline']['final_mean'] == pytest.approx(0.4)
    bad = _rows(0.3)
    bad['baseline'][0]['seconds'] = {1.0}  # not JSON
    with pytest.raises(TypeError):
        write_results(str(tmp_path), {'best_mAP': 0.6}, bad, 2)
    assert (tmp_path / 'results.json').read_text() == old
    _only(tmp_path, 'results.json', 'results.md')


def test_mini_results_interrupted(tmp_path, ctrl_c_before_rename):
    (tmp_path / 'results.json').write_text('old')
    with pytest.raises(KeyboardInterrupt):
        write_results(str(tmp_path), {'best_mAP': 0.6}, _rows(0.4), 2)
    assert (tmp_path / 'results.json').read_text() == 'old'
    _only(tmp_path, 'results.json')


def test_checkpoint_interrupted(tmp_path, monkeypatch):
    net = nn.Dense(2, in_units=3)
    net.initialize(ctx=mx.cpu())
    path = str(tmp_path / 'last.ckpt')
    save_checkpoint(path, {'net': net}, {}, {'epoch': 1})

    def interrupted(fd):
        raise KeyboardInterrupt
    monkeypatch.setattr(io_utils.os, 'fsync', interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {'net': net}, {}, {'epoch': 2})
    monkeypatch.undo()
    assert read_checkpoint(path)[2]['epoch'] == 1
    _only(tmp_path, 'last.ckpt')


def test_deploy_json_interrupted(tmp_path, ctrl_c_before_rename):
    from gluon_distill.export import export_detector
    from gluon_distill.models.io import MODEL_JSON, model_spec
    from gluon_distill.models.ssd import anchors_of, build_ssd, initialize, resolve_arch
    arch = resolve_arch('tiny', 64, width=8)
    net = build_ssd(arch, ['a', 'b'])
    initialize(net, [mx.cpu()])
    anchors_of(net, 64)
    model = tmp_path / 'model'
    model.mkdir()
    net.save_parameters(str(model / 'net.params'))
    spec = model_spec(arch, ['a', 'b'], [0.5] * 3, [0.25] * 3, {})
    (model / MODEL_JSON).write_text(json.dumps(spec))  # not through the interrupted helper
    out = tmp_path / 'export'
    out.mkdir()
    (out / 'deploy.json').write_text('old')

    with pytest.raises(KeyboardInterrupt):
        export_detector(str(model / 'net.params'), str(out), ['mxnet'], verify=False)
    assert (out / 'deploy.json').read_text() == 'old'
    assert not [n for n in os.listdir(str(out)) if n.endswith('.tmp')]


def test_files_written_as_one_are_all_written_or_none(tmp_path, monkeypatch):
    """:func:`gluon_distill.io_utils.atomic_write_all` (an epoch's last.ckpt, last.params,
    best.params, best.json): a write that fails after others succeeded leaves every file as it
    was; otherwise all are renamed, the first one last."""
    from gluon_distill.io_utils import atomic_write_all, text_writer
    for name in ('last.ckpt', 'last.params'):
        (tmp_path / name).write_text('old ' + name)

    def full(tmp):
        with open(tmp, 'w') as f:
            f.write('half')
        raise OSError(28, 'No space left on device')
    with pytest.raises(WriteError, match='cannot write .*last.params: No space left'):
        atomic_write_all([(str(tmp_path / 'last.ckpt'), text_writer('new'),
                           str(tmp_path / 'prev.ckpt')),
                          (str(tmp_path / 'last.params'), full)])
    _only(tmp_path, 'last.ckpt', 'last.params')
    assert (tmp_path / 'last.ckpt').read_text() == 'old last.ckpt'

    renamed = []
    original = io_utils.os.replace

    def replace(src, dst):
        renamed.append(os.path.basename(dst))
        original(src, dst)
    monkeypatch.setattr(io_utils.os, 'replace', replace)
    atomic_write_all([(str(tmp_path / 'last.ckpt'), text_writer('new ckpt'),
                       str(tmp_path / 'prev.ckpt')),
                      (str(tmp_path / 'last.params'), text_writer('new params')),
                      (str(tmp_path / 'best.json'), text_writer('{}'))])
    monkeypatch.undo()
    assert renamed == ['last.params', 'best.json', 'prev.ckpt', 'last.ckpt']
    _only(tmp_path, 'last.ckpt', 'prev.ckpt', 'last.params', 'best.json')
    assert (tmp_path / 'prev.ckpt').read_text() == 'old last.ckpt'
    assert (tmp_path / 'last.ckpt').read_text() == 'new ckpt'
