"""Tests of the experiment configuration: defaults, YAML files, --set overrides, flags."""
import argparse
import dataclasses
import os
import sys

import pytest
import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gluon_distill.config import (  # noqa: E402
    CHOICES, DISTILL_ABLATION, DISTILL_METHODS, Config, ConfigError, FLAG_ALIASES,
    add_common_arguments, check_choices, config_from, config_from_args, load_config, set_key)


def parse(argv):
    parser = add_common_arguments(argparse.ArgumentParser())
    return config_from_args(parser.parse_args(argv))


def write_yaml(path, data):
    path.write_text(yaml.safe_dump(data))
    return str(path)


# --- defaults ----------------------------------------------------------------------------------

def test_defaults_are_gluoncv_ssd_recipe():
    # GluonCV scripts/detection/ssd/train_ssd.py: sgd, lr 1e-3, momentum 0.9, wd 5e-4,
    # batch 32, 240 epochs, lr steps 160,200 with decay 0.1, 512 px input.
    cfg = Config()
    assert cfg.train.optimizer == 'sgd'
    assert cfg.train.lr == pytest.approx(1e-3)
    assert cfg.train.momentum == pytest.approx(0.9)
    assert cfg.train.wd == pytest.approx(5e-4)
    assert cfg.train.batch_size == 32
    assert cfg.train.epochs == 240
    assert cfg.train.lr_steps == [160, 200]
    assert cfg.train.lr_decay == pytest.approx(0.1)
    assert cfg.model.data_shape == 512


def test_load_config_without_file_or_overrides_is_default():
    assert load_config() == Config()


def test_defaults_are_not_shared_between_instances():
    a, b = Config(), Config()
    a.train.lr_steps.append(230)
    a.model.mean[0] = 0.0
    assert b.train.lr_steps == [160, 200]
    assert b.model.mean[0] == pytest.approx(0.485)


# --- YAML file ---------------------------------------------------------------------------------

def test_yaml_file_sets_keys_and_keeps_other_defaults(tmp_path):
    path = write_yaml(tmp_path / 'exp.yaml', {
        'model': {'network': 'resnet18_v1', 'data_shape': 300},
        'train': {'lr': 0.01, 'lr_steps': [3, 7], 'hybridize': False},
        'data': {'classes': ['cat', 'dog'], 'synthetic': {'num_train': 12}},
    })
    cfg = load_config(path)
    assert cfg.model.network == 'resnet18_v1'
    assert cfg.model.data_shape == 300
    assert cfg.train.lr == pytest.approx(0.01)
    assert cfg.train.lr_steps == [3, 7]
    assert cfg.train.hybridize is False
    assert cfg.data.classes == ['cat', 'dog']
    assert cfg.data.synthetic.num_train == 12
    # untouched keys keep their defaults
    assert cfg.train.batch_size == 32
    assert cfg.data.synthetic.num_val == Config().data.synthetic.num_val
    assert cfg.eval == Config().eval


def test_empty_yaml_file_gives_defaults(tmp_path):
    path = tmp_path / 'empty.yaml'
    path.write_text('')
    assert load_config(str(path)) == Config()


def test_missing_config_file_raises_config_error(tmp_path):
    path = str(tmp_path / 'nope.yaml')
    with pytest.raises(ConfigError, match='nope.yaml'):
        load_config(path)


def test_invalid_yaml_raises_config_error(tmp_path):
    path = tmp_path / 'bad.yaml'
    path.write_text('train: [lr: 1\n')
    with pytest.raises(ConfigError, match='bad.yaml'):
        load_config(str(path))


# --- --set overrides ---------------------------------------------------------------------------

def test_set_parses_values_as_yaml():
    cfg = load_config(overrides=[
        'train.epochs=7', 'train.lr=2.5e-2', 'train.lr_steps=[4, 6]', 'train.resume=true',
        'model.network=tiny', 'data.classes=[a, b, c]', 'train.hybridize=no',
        'data.synthetic.seed=5'])
    assert cfg.train.epochs == 7 and type(cfg.train.epochs) is int
    assert cfg.train.lr == pytest.approx(0.025) and type(cfg.train.lr) is float
    assert cfg.train.lr_steps == [4, 6]
    assert cfg.train.resume is True
    assert cfg.train.hybridize is False
    assert cfg.model.network == 'tiny'
    assert cfg.data.classes == ['a', 'b', 'c']
    assert cfg.data.synthetic.seed == 5


def test_set_with_empty_value_gives_empty_string():
    cfg = load_config(overrides=['model.params='])
    assert cfg.model.params == ''


def test_set_without_equals_sign_raises():
    with pytest.raises(ConfigError, match='train.lr'):
        load_config(overrides=['train.lr'])


def test_set_applies_in_order_last_wins():
    cfg = load_config(overrides=['train.epochs=3', 'train.epochs=9'])
    assert cfg.train.epochs == 9


def test_set_whole_section_with_mapping():
    cfg = load_config(overrides=['eval={nms_thresh: 0.5, post_nms: 10}'])
    assert cfg.eval.nms_thresh == pytest.approx(0.5)
    assert cfg.eval.post_nms == 10
    assert cfg.eval.nms_topk == Config().eval.nms_topk


# --- precedence --------------------------------------------------------------------------------

def test_precedence_default_file_set_flag(tmp_path):
    path = write_yaml(tmp_path / 'exp.yaml', {
        'train': {'epochs': 11, 'batch_size': 8, 'lr': 0.05, 'seed': 3},
        'model': {'network': 'resnet18_v1'},
    })
    cfg = parse(['--config', path,
                 '--set', 'train.batch_size=4', '--set', 'train.lr=0.02',
                 '--set', 'model.network=tiny',
                 '--lr', '0.007'])
    assert cfg.train.momentum == pytest.approx(0.9)  # default (nobody set it)
    assert cfg.train.epochs == 11                     # file beats default
    assert cfg.train.seed == 3                        # file beats default
    assert cfg.train.batch_size == 4                  # --set beats file
    assert cfg.model.network == 'tiny'                # --set beats file
    assert cfg.train.lr == pytest.approx(0.007)       # explicit flag beats --set and file


def test_flag_beats_file_for_every_kind_of_flag(tmp_path):
    path = write_yaml(tmp_path / 'exp.yaml', {
        'model': {'pretrained_base': True, 'data_shape': 300},
        'data': {'root': '/from/file'},
        'train': {'ctx': 'cpu:0,1'},
    })
    cfg = parse(['--config', path, '--no-pretrained-base', '--data-shape', '128',
                 '--data-root', 'synthetic', '--ctx', 'cpu', '--resume'])
    assert cfg.model.pretrained_base is False
    assert cfg.model.data_shape == 128
    assert cfg.data.root == 'synthetic'
    assert cfg.train.ctx == 'cpu'
    assert cfg.train.resume is True


def test_flags_not_given_do_not_override_file(tmp_path):
    path = write_yaml(tmp_path / 'exp.yaml', {
        'model': {'pretrained_base': False}, 'train': {'resume': True, 'epochs': 2}})
    cfg = parse(['--config', path])
    assert cfg.model.pretrained_base is False
    assert cfg.train.resume is True
    assert cfg.train.epochs == 2


def test_flag_values_are_type_checked():
    cfg = parse(['--epochs', '5', '--lr', '1'])
    assert cfg.train.epochs == 5
    assert cfg.train.lr == 1.0 and type(cfg.train.lr) is float


# --- unknown keys ------------------------------------------------------------------------------

@pytest.mark.parametrize('data, key', [
    ({'trian': {'lr': 0.1}}, 'trian'),
    ({'train': {'learning_rate': 0.1}}, 'train.learning_rate'),
    ({'data': {'synthetic': {'num_tran': 5}}}, 'data.synthetic.num_tran'),
])
def test_unknown_key_in_file_names_dotted_key(tmp_path, data, key):
    path = write_yaml(tmp_path / 'exp.yaml', data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert repr(key) in str(info.value)
    assert 'exp.yaml' in str(info.value)


@pytest.mark.parametrize('override, key', [
    ('trian.lr=0.1', 'trian.lr'),
    ('train.learning_rate=0.1', 'train.learning_rate'),
    ('data.synthetic.num_tran=5', 'data.synthetic.num_tran'),
    ('train.lr.x=1', 'train.lr.x'),
])
def test_unknown_key_in_set_names_dotted_key(override, key):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    assert repr(key) in str(info.value)


def test_unknown_key_error_lists_valid_keys():
    with pytest.raises(ConfigError) as info:
        load_config(overrides=['train.learning_rate=0.1'])
    assert 'lr_steps' in str(info.value) and 'momentum' in str(info.value)


def test_section_given_a_scalar_raises(tmp_path):
    path = write_yaml(tmp_path / 'exp.yaml', {'train': 5})
    with pytest.raises(ConfigError, match='train'):
        load_config(path)


# --- types -------------------------------------------------------------------------------------

@pytest.mark.parametrize('override, key', [
    ('train.epochs=ten', 'train.epochs'),
    ('train.epochs=2.5', 'train.epochs'),
    ('train.epochs=true', 'train.epochs'),
    ('train.lr=fast', 'train.lr'),
    ('train.resume=1', 'train.resume'),
    ('model.pretrained_base=0', 'model.pretrained_base'),
    ('train.lr_steps=160', 'train.lr_steps'),
    ('train.lr_steps=[160, x]', 'train.lr_steps[1]'),
    ('model.mean=0.5', 'model.mean'),
    ('model.network=[a]', 'model.network'),
    ('data.classes=cat', 'data.classes'),
])
def test_wrong_type_in_set_names_key(override, key):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    assert key + ':' in str(info.value)


@pytest.mark.parametrize('data, key', [
    ({'train': {'batch_size': '32'}}, 'train.batch_size'),
    ({'train': {'hybridize': 1}}, 'train.hybridize'),
    ({'train': {'lr_steps': 160}}, 'train.lr_steps'),
    ({'data': {'synthetic': {'seed': 'zero'}}}, 'data.synthetic.seed'),
])
def test_wrong_type_in_file_names_key(tmp_path, data, key):
    path = write_yaml(tmp_path / 'exp.yaml', data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert key + ':' in str(info.value)


def test_int_accepted_for_float(tmp_path):
    path = write_yaml(tmp_path / 'exp.yaml', {'train': {'lr': 1, 'momentum': 0},
                                              'model': {'mean': [0, 1, 2]}})
    cfg = load_config(path, overrides=['eval.nms_thresh=1'])
    assert cfg.train.lr == 1.0 and type(cfg.train.lr) is float
    assert cfg.train.momentum == 0.0 and type(cfg.train.momentum) is float
    assert cfg.model.mean == [0.0, 1.0, 2.0]
    assert all(type(v) is float for v in cfg.model.mean)
    assert cfg.eval.nms_thresh == 1.0 and type(cfg.eval.nms_thresh) is float


def test_optional_list_accepts_null():
    cfg = load_config(overrides=['data.classes=[a]', 'data.classes=null'])
    assert cfg.data.classes is None


def test_set_key_rejects_bad_value_without_changing_config():
    cfg = Config()
    with pytest.raises(ConfigError):
        set_key(cfg, 'train.epochs', 'many')
    assert cfg.train.epochs == 240


# --- dump / load round trip --------------------------------------------------------------------

def test_dump_then_load_round_trips(tmp_path):
    cfg = load_config(overrides=[
        'model.network=tiny', 'model.data_shape=128', 'train.lr=0.02', 'train.lr_steps=[2, 4]',
        'data.classes=[cat, dog]', 'train.resume=true', 'data.synthetic.num_train=9',
        'teacher.network=resnet18_v1'])
    path = tmp_path / 'config.yaml'
    cfg.dump(path)
    loaded = load_config(str(path))
    assert loaded == cfg
    assert loaded != Config()
    assert [p.name for p in tmp_path.iterdir()] == ['config.yaml']  # no temp file left


def test_dump_of_defaults_round_trips(tmp_path):
    path = tmp_path / 'config.yaml'
    Config().dump(path)
    assert load_config(str(path)) == Config()


# --- flag aliases ------------------------------------------------------------------------------

def _all_dotted_keys(node, prefix=''):
    keys = set()
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        dotted = prefix + f.name
        if dataclasses.is_dataclass(value):
            keys |= _all_dotted_keys(value, dotted + '.')
        else:
            keys.add(dotted)
    return keys


def test_every_flag_alias_targets_a_real_key():
    keys = _all_dotted_keys(Config())
    bad = {flag: dotted for flag, dotted in FLAG_ALIASES.items() if dotted not in keys}
    assert not bad
    assert len(set(FLAG_ALIASES.values())) == len(FLAG_ALIASES)


def test_every_tool_flag_is_an_alias():
    # config_from_args only applies flags listed in FLAG_ALIASES: any other flag of the
    # common parser would be silently ignored.
    parser = add_common_arguments(argparse.ArgumentParser())
    dests = {a.dest for a in parser._actions} - {'help', 'config', 'set'}
    assert dests <= set(FLAG_ALIASES)


# --- YAML 1.1 exponent floats (issue 8, item 11) -------------------------------------------------

def test_exponent_floats_without_a_dot_are_floats_in_files_and_overrides(tmp_path):
    path = tmp_path / 'exp.yaml'
    path.write_text('train:\n  lr: 1e-3\n  wd: 5E-4\n  lr_decay: 1e-1\n'
                    'distill:\n  critic_lr: 5e-4\n')
    cfg = load_config(str(path), ['distill.clip=3e-2', 'train.momentum=9e-1'])
    assert cfg.train.lr == 1e-3 and isinstance(cfg.train.lr, float)
    assert cfg.train.wd == 5e-4 and cfg.train.lr_decay == 1e-1
    assert cfg.distill.critic_lr == 5e-4
    assert cfg.distill.clip == 3e-2 and cfg.train.momentum == 9e-1
    assert parse(['--set', 'train.lr=1e-3']).train.lr == 1e-3


def test_exponent_float_for_an_int_key_is_still_a_type_error():
    with pytest.raises(ConfigError, match='train.epochs'):
        load_config(None, ['train.epochs=1e2'])


def test_strings_that_only_look_numeric_stay_strings():
    cfg = load_config(None, ['train.out=1e', 'data.train_split=e3'])
    assert cfg.train.out == '1e' and cfg.data.train_split == 'e3'


def test_overwrite_flag_sets_train_overwrite():
    assert parse([]).train.overwrite is False
    assert parse(['--overwrite']).train.overwrite is True


def test_only_the_anchor_generators_unused_parameter_warning_is_silenced():
    import importlib
    import warnings
    from gluon_distill import _compat
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('default')
        importlib.reload(_compat)  # installs its filter on top of 'default'
        warnings.warn('Parameter ssd3_ssdanchorgenerator0_anchor_0, ssd3_ssdanchorgenerator1_'
                      'anchor_1 is not used by any computation. Is this intended?', UserWarning)
        warnings.warn('Parameter ssd3_conv0_weight is not used by any computation. Is this '
                      'intended?', UserWarning)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and 'conv0_weight' in messages[0], messages


# --- allowed values ----------------------------------------------------------------------------

def _nested(dotted, value):
    """``a.b.c``, v -> {'a': {'b': {'c': v}}}: the YAML file that sets one key."""
    data = value
    for part in reversed(dotted.split('.')):
        data = {part: data}
    return data


@pytest.mark.parametrize('key', sorted(CHOICES))
def test_a_value_outside_the_choices_is_an_error_naming_key_and_choices(key, tmp_path):
    allowed = ', '.join(CHOICES[key])
    message = '{}: expected one of {}, got {!r}'.format(key, allowed, 'nonsense')
    with pytest.raises(ConfigError) as e:
        load_config(overrides=['{}=nonsense'.format(key)])
    assert message in str(e.value)
    path = write_yaml(tmp_path / 'bad.yaml', _nested(key, 'nonsense'))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert path in str(e.value) and message in str(e.value)
    for value in CHOICES[key]:  # every declared value is accepted by both routes
        assert load_config(overrides=['{}={}'.format(key, value)]).to_dict() == \
            load_config(write_yaml(tmp_path / 'ok.yaml', _nested(key, value))).to_dict()


@pytest.mark.parametrize('method, message', [
    ('kd', 'distill.method: expected one of head_only, gan, mimic, fgfi'),
    ('head_only+mimic', 'combines with nothing'),
    ('gan+gan', 'names a method twice'),
])
def test_a_bad_distill_method_is_an_error_from_yaml_and_set(method, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=['distill.method=' + method])
    with pytest.raises(ConfigError, match=message):
        load_config(write_yaml(tmp_path / 'bad.yaml', {'distill': {'method': method}}))


def test_method_combinations_are_accepted():
    for method in ('gan', 'head_only', 'gan+fgfi', 'mimic+fgfi'):
        assert load_config(overrides=['distill.method=' + method]).distill.method == method


def test_a_former_flat_key_with_a_bad_value_names_the_key_as_written(tmp_path):
    with pytest.warns(FutureWarning):
        with pytest.raises(ConfigError, match='distill.critic: expected one of dcgan, bn, plain'):
            load_config(overrides=['distill.critic=batchnorm'])
        with pytest.raises(ConfigError, match='distill.adv_optimizer: expected one of shared'):
            load_config(write_yaml(tmp_path / 'bad.yaml',
                                   {'distill': {'adv_optimizer': 'rmsprop'}}))


def test_check_choices_catches_a_bad_value_assigned_directly():
    cfg = Config()
    cfg.train.optimizer = 'nag'
    with pytest.raises(ConfigError, match='train.optimizer: expected one of sgd, adam'):
        check_choices(cfg)
    check_choices(cfg.distill, 'distill')  # another section: not checked


def test_the_schema_names_the_methods_the_library_builds():
    from gluon_distill.distill.methods import ABLATION, METHODS
    assert set(METHODS) == set(DISTILL_METHODS) and ABLATION == DISTILL_ABLATION


def test_config_from_equals_the_set_key_sequence():
    values = {'data.root': 'synthetic', 'model.network': 'tiny', 'train.optimizer': 'adam',
              'train.lr_steps': [3, 4], 'distill.method': 'gan+fgfi',
              'distill.gan.critic_width': 16}
    cfg = Config()
    for key, value in values.items():
        set_key(cfg, key, value)
    assert config_from(values) == cfg
    base = config_from({'train.epochs': 3})
    derived = config_from({'train.lr': 0.5}, base=base)
    assert (derived.train.epochs, derived.train.lr) == (3, 0.5)
    assert base.train.lr == Config().train.lr  # the base is not changed
    with pytest.raises(ConfigError, match='data.pipeline: expected one of fast, gluoncv'):
        config_from({'data.pipeline': 'slow'})
