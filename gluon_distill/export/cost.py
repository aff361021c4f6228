"""Cost counting of an exported graph: parameters and multiply-accumulates per image."""
import json

import numpy as np


def count_params_macs(sym, data_shape, params=None):
    """``(parameters, multiply-accumulates)`` per image of the graph ``sym`` at
    ``(1, 3, S, S)``: MACs of Convolution, Deconvolution and FullyConnected nodes from shape
    inference; parameters = elements of ``params`` (a dict of arrays) the graph uses."""
    internals = sym.get_internals()
    arg_shapes, out_shapes, aux_shapes = internals.infer_shape(data=(1, 3, data_shape,
                                                                     data_shape))
    args = dict(zip(internals.list_arguments(), arg_shapes))
    outs = dict(zip(internals.list_outputs(), out_shapes))
    nodes = json.loads(sym.tojson())['nodes']
    macs = 0
    for node in nodes:
        if node['op'] not in ('Convolution', 'Deconvolution', 'FullyConnected'):
            continue
        w = args[nodes[node['inputs'][1][0]]['name']]
        out = outs[node['name'] + '_output']
        if node['op'] == 'FullyConnected':
            macs += int(np.prod(w))
        else:
            macs += int(np.prod(out[1:])) * int(np.prod(w[1:]))
    used = set(sym.list_arguments()) | set(sym.list_auxiliary_states())
    n_params = 0
    if params is not None:
        n_params = int(sum(v.size for k, v in params.items() if k in used and
                           not k.endswith(('running_mean', 'running_var')) and
                           'anchor' not in k))
    return n_params, macs
