"""Tests of the SSD builders: zoo presets vs GluonCV, anchor scaling, the tiny backbone,
offline errors, initialisation and the model.json round trip."""
import json
import os
import sys
import warnings

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gluon_distill  # noqa: E402,F401  (numpy shim before mxnet/gluoncv)
import mxnet as mx  # noqa: E402
import gluoncv  # noqa: E402

from gluon_distill.models.ssd import (  # noqa: E402
    ModelError, ZOO_NETWORKS, anchors_of, build_ssd, initialize, resolve_arch)
from gluon_distill.models.tiny import TINY_STRIDES, tiny_channels  # noqa: E402
from gluon_distill.models.io import (  # noqa: E402
    MODEL_JSON, load_detector, model_spec, provenance, read_model_json, write_model_json)

VOC = list(gluoncv.data.VOCDetection.CLASSES)

warnings.filterwarnings('ignore', message='Cannot decide type')


def _anchors_by_layer(net, size):
    """Per-layer anchor grids ``(H, W, depth, 4)`` of an initialised SSD, without running the
    convolutions: feature map shapes by symbolic shape inference, then each anchor generator
    on a map of that shape (what ``SSD.hybrid_forward`` does)."""
    maps = net.features(mx.sym.var('data'))
    layers = []
    for sym, gen in zip(maps, net.anchor_generators):
        _, out_shapes, _ = sym.infer_shape(data=(1, 3, size, size))
        h, w = out_shapes[0][2:]
        a = gen(mx.nd.zeros((1, 1, h, w))).asnumpy()
        layers.append(a.reshape(h, w, gen.num_depth, 4))
    return layers


@pytest.fixture(scope='module')
def resnet50_512():
    """Our ssd_512_resnet50_v1 next to GluonCV's, both initialised (no pretrained weights)."""
    zoo = gluoncv.model_zoo.get_model('ssd_512_resnet50_v1_voc', pretrained_base=False)
    ours = build_ssd(resolve_arch('ssd_512_resnet50_v1', 512), VOC)
    initialize(zoo, mx.cpu())
    initialize(ours, mx.cpu())
    return zoo, ours


# --- the zoo table mirrors GluonCV's presets ---------------------------------------------------

def test_resnet50_512_anchors_equal_gluoncv_preset(resnet50_512):
    zoo, ours = resnet50_512
    expected = anchors_of(zoo, 512).asnumpy()
    got = anchors_of(ours, 512).asnumpy()
    assert got.shape == expected.shape
    assert expected.shape[1] == 6132  # 32^2*4 + 16^2*6 + 8^2*6 + 4^2*6 + 2^2*4 + 1*4
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    # the per-layer helper used below reproduces what the network outputs
    layers = _anchors_by_layer(ours, 512)
    np.testing.assert_allclose(np.concatenate([l.reshape(-1, 4) for l in layers]), got[0],
                               rtol=0, atol=1e-4)


def test_base_name_and_zoo_name_resolve_alike():
    full = resolve_arch('ssd_512_resnet50_v1', 512)
    base = resolve_arch('resnet50_v1', 512)
    suffixed = resolve_arch('ssd_512_resnet50_v1_voc', 0)
    assert full == base == suffixed
    assert base.data_shape == 512


@pytest.mark.parametrize('zoo_name, base, size', [
    ('ssd_512_resnet18_v1_voc', 'resnet18_v1', 512),
    ('ssd_512_resnet50_v1_voc', 'resnet50_v1', 512),
    ('ssd_512_resnet101_v2_voc', 'resnet101_v2', 512),
    ('ssd_512_mobilenet1.0_voc', 'mobilenet1.0', 512),
    ('ssd_300_vgg16_atrous_voc', 'vgg16_atrous', 300),
    ('ssd_512_vgg16_atrous_voc', 'vgg16_atrous', 512),
    # COCO presets by their full names: two differ from the VOC ones in their anchor sizes
    ('ssd_512_resnet50_v1_coco', 'ssd_512_resnet50_v1_coco', 512),
    ('ssd_300_vgg16_atrous_coco', 'ssd_300_vgg16_atrous_coco', 300),
    ('ssd_512_mobilenet1.0_coco', 'ssd_512_mobilenet1.0_coco', 512),
])
def test_every_zoo_entry_has_gluoncv_anchor_generators(zoo_name, base, size):
    """Same number of scales, same ratios, same anchor tables (sizes and steps) as the preset."""
    zoo = gluoncv.model_zoo.get_model(zoo_name, pretrained_base=False)
    ours = build_ssd(resolve_arch(base, size), VOC)
    assert len(ours.anchor_generators) == len(zoo.anchor_generators)
    for mine, theirs in zip(ours.anchor_generators, zoo.anchor_generators):
        assert mine.num_depth == theirs.num_depth
        assert list(mine._ratios) == list(theirs._ratios)
        np.testing.assert_allclose(mine._sizes, theirs._sizes, rtol=1e-6)
        for gen in (mine, theirs):
            gen.collect_params().initialize(ctx=mx.cpu())
        np.testing.assert_allclose(mine.anchors.data().asnumpy(),
                                   theirs.anchors.data().asnumpy(), rtol=0, atol=1e-3)


def test_anchors_scale_with_data_shape(resnet50_512):
    _, ours512 = resnet50_512
    net256 = build_ssd(resolve_arch('resnet50_v1', 256), VOC)
    initialize(net256, mx.cpu())
    big_layers = _anchors_by_layer(ours512, 512)
    small_layers = _anchors_by_layer(net256, 256)
    assert [l.shape[0] for l in big_layers] == [32, 16, 8, 4, 2, 1]
    assert [l.shape[0] for l in small_layers] == [16, 8, 4, 2, 1, 1]
    for big, small in zip(big_layers, small_layers):
        side = small.shape[0]
        assert small.shape[2:] == big.shape[2:]
        np.testing.assert_allclose(small, big[:side, :side] / 2.0, rtol=1e-5, atol=1e-3)


def test_resolve_arch_scales_sizes_and_steps_with_explicit_data_shape():
    a512 = resolve_arch('ssd_512_resnet50_v1', 512)
    a384 = resolve_arch('ssd_512_resnet50_v1', 384)  # explicit size wins over the name
    assert a384.data_shape == 384
    np.testing.assert_allclose(a384.sizes, np.array(a512.sizes) * 0.75, atol=1e-3)
    np.testing.assert_allclose(a384.steps, np.array(a512.steps) * 0.75, atol=1e-3)
    assert a384.ratios == a512.ratios


@pytest.mark.parametrize('name', ['resnet51_v1', 'ssd_512_nonet', 'Tiny', ''])
def test_unknown_network_lists_choices(name):
    with pytest.raises(ModelError) as info:
        resolve_arch(name, 512)
    msg = str(info.value)
    assert repr(name) in msg
    for choice in ['resnet18_v1', 'resnet50_v1', 'mobilenet1.0', 'vgg16_atrous', 'tiny']:
        assert choice in msg
    assert set(ZOO_NETWORKS) >= {'resnet18_v1', 'resnet50_v1', 'mobilenet1.0', 'vgg16_atrous'}


# --- tiny --------------------------------------------------------------------------------------

@pytest.mark.parametrize('width, blocks, size', [(8, 1, 128), (4, 2, 256)])
def test_tiny_feature_maps_strides_and_channels(width, blocks, size):
    arch = resolve_arch('tiny', size, width=width, blocks=blocks)
    net = build_ssd(arch, ['a', 'b'])
    initialize(net, mx.cpu())
    maps = net.features(mx.nd.zeros((2, 3, size, size)))
    assert len(maps) == 5
    assert [m.shape[2] for m in maps] == [size // s for s in TINY_STRIDES]
    assert [m.shape[3] for m in maps] == [size // s for s in TINY_STRIDES]
    assert [m.shape[1] for m in maps] == list(tiny_channels(width))
    assert all(m.shape[0] == 2 for m in maps)
    if size == 128:
        assert [m.shape[2] for m in maps] == [16, 8, 4, 2, 1]
    # the detector's anchors cover every cell of every map
    anchors = anchors_of(net, size).asnumpy()[0]
    depths = [g.num_depth for g in net.anchor_generators]
    assert len(anchors) == sum((size // s) ** 2 * d for s, d in zip(TINY_STRIDES, depths))


def test_tiny_anchor_sizes_are_fractions_of_input():
    for size in (128, 256):
        arch = resolve_arch('tiny', size)
        assert arch.steps == list(TINY_STRIDES)
        assert len(arch.sizes) == len(arch.ratios) + 1 == 6
        np.testing.assert_allclose(arch.sizes[0], 0.1 * size, rtol=1e-3)
        np.testing.assert_allclose(arch.sizes[-1], 0.9 * size, rtol=1e-3)
        assert arch.sizes == sorted(arch.sizes)


def test_tiny_blocks_add_depth():
    shallow = build_ssd(resolve_arch('tiny', 128, width=8, blocks=0), ['a'])
    deep = build_ssd(resolve_arch('tiny', 128, width=8, blocks=2), ['a'])
    count = lambda n: len(list(n.features.collect_params('.*conv.*weight').keys()))  # noqa: E731
    assert count(deep) == count(shallow) + 2 * 5


# --- pretrained base offline -------------------------------------------------------------------

def test_pretrained_base_offline_fails_with_path_and_hint():
    from gluoncv.model_zoo.model_store import short_hash
    expected = os.path.join(os.path.expanduser('~/.mxnet/models'),
                            'resnet18_v1-{}.params'.format(short_hash('resnet18_v1')))
    if os.path.exists(expected):
        pytest.skip('the resnet18_v1 weights are already present: no download is attempted')
    arch = resolve_arch('resnet18_v1', 128)
    with pytest.raises(ModelError) as info:
        build_ssd(arch, ['a'], pretrained_base=True)
    msg = str(info.value)
    assert expected in msg
    assert '--no-pretrained-base' in msg
    assert 'resnet18_v1' in msg


def test_pretrained_base_ignored_for_tiny():
    net = build_ssd(resolve_arch('tiny', 128, width=4), ['a'], pretrained_base=True)
    initialize(net, mx.cpu())
    assert len(anchors_of(net, 128).shape) == 3


# --- initialisation ----------------------------------------------------------------------------

def test_initialize_zoo_network_every_parameter_set_and_bn_neutral():
    net = build_ssd(resolve_arch('resnet18_v1', 128), ['a', 'b'], pretrained_base=False)
    initialize(net, mx.cpu())
    ids, scores, boxes = net(mx.nd.zeros((1, 3, 128, 128)))  # completes deferred shapes
    assert ids.shape[0] == scores.shape[0] == boxes.shape[0] == 1
    params = dict(net.collect_params().items())
    assert params
    values = {}
    for name, p in params.items():
        values[name] = p.data().asnumpy()  # raises if any parameter is uninitialised
        assert np.isfinite(values[name]).all(), name
    gammas = [n for n in params if n.endswith('gamma')]
    betas = [n for n in params if n.endswith('beta')]
    means = [n for n in params if n.endswith(('running_mean', 'moving_mean'))]
    varis = [n for n in params if n.endswith(('running_var', 'moving_var'))]
    # backbone BN and the SymbolBlock feature expander's BN both covered
    assert any('expand' in n for n in gammas) and any('resnet' in n for n in gammas)
    assert len(gammas) == len(betas) == len(means) == len(varis) > 20
    for n in gammas + varis:
        np.testing.assert_array_equal(values[n], 1.0, err_msg=n)
    for n in betas + means:
        np.testing.assert_array_equal(values[n], 0.0, err_msg=n)
    weights = [n for n in params if n.endswith('weight') and values[n].ndim == 4]
    assert weights
    for n in weights:
        assert values[n].std() > 0, n  # random, not constant


# --- model.json round trip ---------------------------------------------------------------------

def _trained_tiny(tmp_path, classes=('cat', 'dog'), width=8):
    arch = resolve_arch('tiny', 128, width=width, blocks=1)
    net = build_ssd(arch, list(classes))
    initialize(net, mx.cpu())
    x = mx.nd.random.uniform(shape=(2, 3, 128, 128), ctx=mx.cpu())
    with mx.autograd.train_mode():
        net(x)  # moves the BatchNorm running statistics away from their init
    params_path = str(tmp_path / 'last.params')
    net.save_parameters(params_path)
    spec = model_spec(arch, classes, [0.4, 0.5, 0.6], [0.2, 0.25, 0.3],
                      provenance(7, 'abc', argv=['train.py']))
    write_model_json(str(tmp_path), spec)
    return net, arch, params_path, x


def test_model_json_round_trip_gives_same_detections(tmp_path):
    net, arch, params_path, x = _trained_tiny(tmp_path)
    net.set_nms()
    ids, scores, boxes = [o.asnumpy() for o in net(x)]
    loaded, spec = load_detector(params_path)
    ids2, scores2, boxes2 = [o.asnumpy() for o in loaded(x)]
    assert ids.shape == ids2.shape and ids.shape[:2] == (2, 100)
    np.testing.assert_array_equal(ids2, ids)
    np.testing.assert_allclose(scores2, scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(boxes2, boxes, rtol=1e-5, atol=1e-4)
    assert spec['classes'] == ['cat', 'dog']
    assert spec['arch'] == arch.to_dict()
    assert spec['mean'] == [0.4, 0.5, 0.6] and spec['std'] == [0.2, 0.25, 0.3]
    assert spec['provenance']['seed'] == 7
    assert spec['provenance']['dataset_fingerprint'] == 'abc'
    assert list(loaded.classes) == ['cat', 'dog']


def test_model_json_is_found_beside_best_params_with_best_json(tmp_path):
    """A run directory holds best.params, best.json (epoch, mAP) and model.json."""
    net, _, params_path, x = _trained_tiny(tmp_path)
    best = str(tmp_path / 'best.params')
    os.replace(params_path, best)
    (tmp_path / 'best.json').write_text(json.dumps({'epoch': 3, 'mAP': 0.5}))
    net.set_nms()
    expected = net(x)[1].asnumpy()
    loaded, spec = load_detector(best)
    assert spec['classes'] == ['cat', 'dog']
    np.testing.assert_allclose(loaded(x)[1].asnumpy(), expected, rtol=1e-5, atol=1e-6)


def test_read_model_json_without_file_names_path(tmp_path):
    params_path = str(tmp_path / 'weights.params')
    with pytest.raises(ModelError) as info:
        read_model_json(params_path)
    msg = str(info.value)
    assert params_path in msg
    assert os.path.join(str(tmp_path), MODEL_JSON) in msg


def test_read_model_json_rejects_foreign_json(tmp_path):
    (tmp_path / MODEL_JSON).write_text(json.dumps({'format': 'something/else'}))
    with pytest.raises(ModelError, match='something/else'):
        read_model_json(str(tmp_path / 'w.params'))


def test_load_detector_missing_params_file(tmp_path):
    with pytest.raises(ModelError, match='no weight file'):
        load_detector(str(tmp_path / 'absent.params'))


@pytest.mark.parametrize('other', ['wider', 'more_classes', 'zoo'])
def test_params_of_another_architecture_raise_model_error(tmp_path, other):
    _, arch, params_path, _ = _trained_tiny(tmp_path)
    if other == 'wider':
        spec_arch, classes = resolve_arch('tiny', 128, width=16), ['cat', 'dog']
    elif other == 'more_classes':
        spec_arch, classes = arch, ['cat', 'dog', 'cow']
    else:
        spec_arch, classes = resolve_arch('resnet18_v1', 128), ['cat', 'dog']
    write_model_json(str(tmp_path), model_spec(spec_arch, classes, [0] * 3, [1] * 3, {}))
    with pytest.raises(ModelError) as info:
        load_detector(params_path)
    assert params_path in str(info.value)
    assert 'does not match' in str(info.value)


# --- networks that are not GluonCV presets ------------------------------------------------------

@pytest.mark.parametrize('network, channels', [
    ('mobilenetv2_1.0', [576, 1280, 512, 512, 256, 256]),
    ('resnet101_v2_stages', [1024, 2048, 512, 512, 256, 256]),
    ('resnet101_v2', [256, 512, 512, 512, 256, 256]),
])
def test_extra_networks_taps_at_512(network, channels):
    from gluon_distill.models.student import feature_shapes
    net = build_ssd(resolve_arch(network, 512), VOC)
    initialize(net, mx.cpu())
    shapes = feature_shapes(net.features, 512, mx.cpu())
    assert [c for c, _, _ in shapes] == channels
    assert [h for _, h, _ in shapes] == [32, 16, 8, 4, 2, 1]
    assert anchors_of(net, 512).shape == (1, 6132, 4)  # as every 6-scale 512 preset


@pytest.mark.parametrize('network, base', [('mobilenetv2_1.0', 'mobilenetv2_1.0'),
                                           ('resnet101_v2_stages', 'resnet101_v2')])
def test_extra_networks_pretrained_base_offline_names_the_base(network, base):
    from gluoncv.model_zoo.model_store import short_hash
    expected = os.path.join(os.path.expanduser('~/.mxnet/models'),
                            '{}-{}.params'.format(base, short_hash(base)))
    if os.path.exists(expected):
        pytest.skip('the {} weights are already present'.format(base))
    with pytest.raises(ModelError) as info:
        build_ssd(resolve_arch(network, 128), ['a'], pretrained_base=True)
    assert expected in str(info.value) and repr(base) in str(info.value)

