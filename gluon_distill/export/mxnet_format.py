"""MXNet export: GluonCV's inference graph (NMS included) and the raw-output graph."""
import os
import warnings

import mxnet as mx
from mxnet import gluon

from .graph import PREFIX, RawSSD, _sym_and_params


def export_mxnet(net, out_dir, data_shape, nms=(0.45, 400, 100)):
    """Write ``model-symbol.json`` (GluonCV's NMS graph), ``model-raw-symbol.json`` and
    ``model-0000.params`` to ``out_dir``; returns the file paths."""
    os.makedirs(out_dir, exist_ok=True)
    ctx = net.collect_params().list_ctx()[0]
    x = mx.nd.zeros((1, 3, data_shape, data_shape), ctx=ctx)
    net.set_nms(*nms)                      # clears a cached (maybe training) graph
    net.hybridize()
    with mx.autograd.predict_mode():
        net(x)
    prefix = os.path.join(out_dir, PREFIX)
    net.export(prefix, 0)
    raw_sym, _ = _sym_and_params(RawSSD(net), x)
    raw_sym.save(prefix + '-raw-symbol.json')
    net.hybridize(active=False)
    net.set_nms(*nms)
    return {'symbol': prefix + '-symbol.json', 'raw_symbol': prefix + '-raw-symbol.json',
            'params': prefix + '-0000.params'}


def load_mxnet(out_dir, raw=False, ctx=None, static=True):
    """The exported detector (or its raw-output graph) as a SymbolBlock, hybridized with static
    memory unless ``static`` is false (the verifications of detectors whose exports are loaded
    once per check: Faster R-CNN, YOLOv3)."""
    prefix = os.path.join(out_dir, PREFIX)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        block = gluon.SymbolBlock.imports(prefix + ('-raw' if raw else '') + '-symbol.json',
                                          ['data'], prefix + '-0000.params', ctx=ctx or mx.cpu())
    if static:
        block.hybridize(static_alloc=True, static_shape=True)
    return block
