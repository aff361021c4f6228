#!/usr/bin/env python
"""Latency of the shipped detectors on this CPU: teacher, plain SSDs, distilled students.

    python bench/latency.py                      # 512 px, 5 warm-up + 20 timed at batch 1
    python bench/latency.py --runs 10 --batch-runs 2

Real zoo architectures with random weights (pretrained_base=False, nothing downloaded),
20 classes: the ResNet50 v1 SSD512 teacher, the plain ResNet18 v1 and MobileNet 1.0 SSD512,
and the MobileNet 1.0 and ResNet18 students composed with ``plan_student`` from that teacher
(adapters + the teacher's head), exported as ``tools/export.py`` does (adapters folded into
the head, verified against the unfolded network). Each model is timed as exported, in MXNet
(``SymbolBlock.imports``, hybridized with static_alloc) and in ONNX Runtime (full graph
optimisation), both with ``--threads`` threads. Models are timed in interleaved rounds so
that background load hits all of them alike; timings on a shared machine remain noisy.
Parameters and multiply-accumulates (conv/dense layers, per image, from symbol shape
inference) are listed for the exported graphs and, for comparison, the unfolded students.
Last line: ``student_vs_teacher=X.XX student_vs_plain=Y.YY`` (ONNX Runtime, batch 1 median:
the distilled MobileNet student / the ResNet50 teacher, and / the plain MobileNet SSD).
"""
import argparse
import warnings
import os
import sys
import tempfile
import time

THREADS = int(os.environ.get('BENCH_THREADS', '2'))
os.environ.setdefault('OMP_NUM_THREADS', str(THREADS))

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np  # noqa: E402

import gluon_distill  # noqa: E402,F401
import mxnet as mx  # noqa: E402

VOC = ['aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
       'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa',
       'train', 'tvmonitor']
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


class _ModelCfg:
    def __init__(self, network, data_shape):
        self.network, self.data_shape = network, data_shape
        self.width, self.blocks, self.pretrained_base = 32, 1, False
        self.mean, self.std = MEAN, STD


def calibrate_head(net, size, seed=0):
    """Random deep backbones with inference-mode BatchNorm (running mean 0, variance 1) give
    feature maps of huge magnitude, saturated softmax and overflowing box decoding; scale
    each scale's predictors by 1 / std of the map they read so the raw outputs are O(1) and
    the detections (used to verify the export) are meaningful."""
    x = mx.nd.array(np.random.RandomState(seed).randn(1, 3, size, size).astype(np.float32))
    with mx.autograd.predict_mode():
        maps = net.features(x)
    for k, m in enumerate(maps):
        s = float(m.asnumpy().std()) or 1.0
        for group in (net.class_predictors, net.box_predictors):
            w = group[k].predictor.weight
            w.set_data(w.data() / s)


def build_models(size):
    """``[(label, net, spec)]``: the teacher, plain SSDs and distilled students (unfolded)."""
    from gluon_distill.distill.build import Teacher, plan_student
    from gluon_distill.models.ssd import build_ssd, initialize, resolve_arch, anchors_of
    ctx = [mx.cpu()]
    models = []
    mx.random.seed(0)
    for network in ('resnet50_v1', 'resnet18_v1', 'mobilenet1.0'):
        arch = resolve_arch(network, size)
        net = build_ssd(arch, VOC)
        initialize(net, ctx)
        anchors_of(net, size)
        calibrate_head(net, size)
        spec = {'kind': 'ssd', 'arch': arch.to_dict(), 'classes': VOC, 'data_shape': size,
                'mean': MEAN, 'std': STD}
        models.append((network, net, spec))
    teacher_net, teacher_spec = models[0][1], models[0][2]
    teacher = Teacher(teacher_net, resolve_arch('resnet50_v1', size), VOC, MEAN, STD,
                      'random ResNet50 v1 teacher')
    for network in ('mobilenet1.0', 'resnet18_v1'):
        plan = plan_student(teacher, _ModelCfg(network, size), VOC, ctx)
        anchors_of(plan.net, size)
        calibrate_head(plan.net, size)
        spec = dict(teacher_spec, kind='distilled_ssd', student_arch=plan.arch.to_dict(),
                    adapters={'student_channels': plan.student_channels,
                              'teacher_channels': plan.teacher_channels, 'folded': False})
        models.append(('distilled ' + network, plan.net, spec))
    return models


def cost(net, size):
    """``(params, MACs)`` of ``net``'s inference graph at batch 1."""
    from gluon_distill.export import count_params_macs, _sym_and_params
    net.set_nms()
    sym, params = _sym_and_params(net, mx.nd.zeros((1, 3, size, size)))
    net.hybridize(active=False)
    net.set_nms()
    return count_params_macs(sym, size, params)


def timed(fn, x):
    t = time.perf_counter()
    fn(x)
    return time.perf_counter() - t


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--size', type=int, default=512)
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--runs', type=int, default=20, help='timed runs at batch 1')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--batch-runs', type=int, default=3, help='timed runs at --batch')
    parser.add_argument('--out', help='keep the exported models here (default: a temp dir)')
    args = parser.parse_args(argv)
    warnings.filterwarnings('ignore')

    from gluon_distill.export import (count_params_macs, export_detector, format_report,
                                      load_mxnet, onnx_session, PREFIX)
    t0 = time.time()
    size = args.size
    models = build_models(size)
    root = args.out or tempfile.mkdtemp(prefix='latency_')
    rows = []
    for label, net, spec in models:
        d = os.path.join(root, label.replace(' ', '_'))
        params, macs = cost(net, size)
        info = export_detector(None, d, ['mxnet', 'onnx'], net=net, spec=spec)
        print('exported {} ({}) in {:.0f}s\n{}'.format(
            label, 'adapters folded' if info['adapters_folded'] else 'as is', time.time() - t0,
            format_report(info['verification'])), flush=True)
        sym = mx.sym.load(os.path.join(d, PREFIX + '-symbol.json'))
        saved = {k.split(':', 1)[1]: v for k, v in
                 mx.nd.load(os.path.join(d, PREFIX + '-0000.params')).items()}
        e_params, e_macs = count_params_macs(sym, size, saved)
        rows.append({'label': label, 'dir': d, 'params': e_params, 'macs': e_macs,
                     'unfolded': (params, macs) if info['adapters_folded'] else None})

    # runners
    for r in rows:
        block = load_mxnet(r['dir'])
        sess = onnx_session(os.path.join(r['dir'], PREFIX + '.onnx'), threads=THREADS)
        name = sess.get_inputs()[0].name
        r['mxnet'] = lambda x, b=block: [o.wait_to_read() for o in b(mx.nd.array(x))]
        r['onnx'] = lambda x, s=sess, n=name: s.run(None, {n: x})
    rng = np.random.RandomState(0)
    x1 = rng.randn(1, 3, size, size).astype(np.float32)
    xb = rng.randn(args.batch, 3, size, size).astype(np.float32)
    for runtime in ('mxnet', 'onnx'):
        for phase, x, warm, runs in (('b1', x1, args.warmup, args.runs),
                                     ('bn', xb, 1, args.batch_runs)):
            for r in rows:
                r.setdefault(runtime + phase, [])
            for i in range(warm + runs):           # interleaved rounds over the models
                for r in rows:
                    t = timed(r[runtime], x)
                    if i >= warm:
                        r[runtime + phase].append(t)
            print('timed {} {} ({:.0f}s)'.format(runtime, phase, time.time() - t0),
                  flush=True)

    print('\nLatency at {0} px on this CPU ({1} threads; batch 1: median / p90 of {2} runs '
          'after {3} warm-up; batch {4}: images/s from the median of {5} runs)'.format(
              size, THREADS, args.runs, args.warmup, args.batch, args.batch_runs))
    head = ('| model (as exported) | params (M) | GMACs | MXNet b1 median ms | MXNet b1 p90 ms | '
            'MXNet b{0} img/s | ORT b1 median ms | ORT b1 p90 ms | ORT b{0} img/s |'.format(
                args.batch))
    print(head)
    print('|---|' + '---:|' * 8)
    for r in rows:
        cells = [r['label'] + (' (folded)' if r['unfolded'] else ''),
                 '{:.2f}'.format(r['params'] / 1e6), '{:.2f}'.format(r['macs'] / 1e9)]
        for runtime in ('mxnet', 'onnx'):
            b1 = np.array(r[runtime + 'b1']) * 1e3
            bn = np.median(r[runtime + 'bn'])
            r[runtime + '_median'] = float(np.median(b1))
            cells += ['{:.0f}'.format(np.median(b1)), '{:.0f}'.format(np.percentile(b1, 90)),
                      '{:.1f}'.format(args.batch / bn)]
        print('| ' + ' | '.join(cells) + ' |')
    print('\nUnfolded students (adapters + the teacher\'s wide head, as trained), for '
          'comparison:')
    for r in rows:
        if r['unfolded']:
            print('  {}: {:.2f} M params, {:.2f} GMACs (folded: {:.2f} M, {:.2f} GMACs)'.format(
                r['label'], r['unfolded'][0] / 1e6, r['unfolded'][1] / 1e9, r['params'] / 1e6,
                r['macs'] / 1e9))
    by = {r['label']: r for r in rows}
    student = by['distilled mobilenet1.0']['onnx_median']
    print('total {:.0f}s'.format(time.time() - t0))
    print('student_vs_teacher={:.2f} student_vs_plain={:.2f}'.format(
        student / by['resnet50_v1']['onnx_median'], student / by['mobilenet1.0']['onnx_median']))


if __name__ == '__main__':
    main()
