#!/usr/bin/env python
"""Latency of the shipped detectors on this CPU: teacher, plain SSDs, distilled students, INT8.

    python bench/latency.py                      # 512 px, 5 warm-up + 20 timed at batch 1
    python bench/latency.py --runs 10 --batch-runs 2
    python bench/latency.py --models deploy/student deploy/teacher   # your own export folders

Real zoo architectures with random weights (pretrained_base=False, nothing downloaded),
20 classes: the ResNet50 v1 SSD512 teacher, the plain ResNet18 v1 and MobileNet 1.0 SSD512,
and the MobileNet 1.0 and ResNet18 students composed with ``plan_student`` from that teacher
(adapters + the teacher's head), exported as ``tools/export.py`` does (adapters folded into
the head, verified against the unfolded network), and the distilled MobileNet student's ONNX
model quantised to INT8 as ``tools/export.py --quantize int8`` does
(:func:`gluon_distill.export.quantize.quantize_onnx`), calibrated on ``--calibration-images``
raccoon photos (generated images when the photos are absent; random weights have no mAP to
verify). Each model is timed as exported, in MXNet (``SymbolBlock.imports``, hybridized with
static_alloc; not the INT8 file, an ONNX model) and in ONNX Runtime (full graph
optimisation), both with ``--threads`` threads. Models are timed in interleaved rounds so that
background load hits all of them alike; timings on a shared machine remain noisy. Parameters
and multiply-accumulates (conv/dense layers, per image, from symbol shape inference) are listed
for the exported graphs and, for comparison, the unfolded students.

Two tables: every model's latency, and the deployer's: teacher / plain student / distilled
student (float, INT8) per runtime at batch 1 and batch ``--batch``, as ratios to the teacher
and to the float distilled student, measured in the same rounds. Last line:
``student_vs_teacher=X.XX student_vs_plain=Y.YY int8_vs_float=Z.ZZ int8_vs_teacher=W.WW``
(ONNX Runtime, batch 1 medians).

``--models DIR...`` times export folders instead (each file the folder holds: model.onnx,
model-int8.onnx in ONNX Runtime, the symbol in MXNet) at their own input size, in the same
interleaved rounds, with ratios to the first folder and to the float model of the first folder
that holds an INT8 one, e.g. ``--models deploy/teacher deploy/plain deploy/student``.
"""
import argparse
import warnings
import os
import sys
import tempfile
import time

THREADS = int(os.environ.get('BENCH_THREADS', '2'))
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
    from gluon_distill.models.teacher import Teacher, plan_student
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


def calibration_inputs(size, n, mean=MEAN, std=STD):
    """``n`` calibration inputs ``(1, 3, size, size)``: raccoon photos preprocessed as the
    runtime does, or generated smooth images when the photos are absent."""
    from gluon_distill.runtime import find_images, preprocess, read_image
    from gluon_distill.export import verify_input
    raccoon = os.path.join(REPO, '..', 'shared', 'data', 'raccoon', 'JPEGImages')
    pre = {'resize': 'square', 'size': size}
    if os.path.isdir(raccoon):
        paths = [p for p, _ in find_images([raccoon])[0]][:n]
        return [preprocess(read_image(p), pre, mean, std)[0] for p in paths], \
            '{} raccoon photos'.format(len(paths))
    return [verify_input(size, mean, std, batch=1, seed=i) for i in range(n)], \
        '{} generated images'.format(n)


def quantize_int8(d, size, n):
    """Write ``d/model-int8.onnx`` from ``d/model.onnx`` (tools/export.py's recipe)."""
    from gluon_distill.export.quantize import INT8_FILE, quantize_onnx
    inputs, what = calibration_inputs(size, n)

    class Reader:
        def __init__(self):
            self.items = iter(inputs)

        def get_next(self):
            x = next(self.items, None)
            return None if x is None else {'data': x}
    t = time.time()
    done = quantize_onnx(os.path.join(d, 'model.onnx'), os.path.join(d, INT8_FILE), Reader())
    print('quantised {} to INT8 ({} nodes: {}) on {} in {:.0f}s'.format(
        d, done['quantized_nodes'], done['op_types'], what, time.time() - t), flush=True)


def runners(row, threads):
    """``row['mxnet']``, ``row['onnx']``: callables timing the row's files (None: absent)."""
    from gluon_distill.export import PREFIX, load_mxnet, onnx_session
    d, fmt = row['dir'], row.get('format', 'float')
    row['mxnet'] = row['onnx'] = None
    if fmt == 'float' and os.path.isfile(os.path.join(d, PREFIX + '-symbol.json')):
        block = load_mxnet(d)
        row['mxnet'] = lambda x, b=block: [o.wait_to_read() for o in b(mx.nd.array(x))]
    name = PREFIX + ('-int8' if fmt == 'int8' else '') + '.onnx'
    if os.path.isfile(os.path.join(d, name)):
        sess = onnx_session(os.path.join(d, name), threads=threads)
        row['onnx'] = lambda x, s=sess, n=sess.get_inputs()[0].name: s.run(None, {n: x})


def time_rows(rows, size, args, t0):
    """Interleaved rounds over the rows: ``row[runtime + 'b1']`` (batch 1 seconds) and
    ``row[runtime + 'bn']`` (batch ``args.batch`` seconds)."""
    rng = np.random.RandomState(0)
    x1 = rng.randn(1, 3, size, size).astype(np.float32)
    xb = rng.randn(args.batch, 3, size, size).astype(np.float32)
    for runtime in ('mxnet', 'onnx'):
        for phase, x, warm, runs in (('b1', x1, args.warmup, args.runs),
                                     ('bn', xb, 1, args.batch_runs)):
            live = [r for r in rows if r[runtime] is not None]
            for r in live:
                r[runtime + phase] = []
            for i in range(warm + runs):           # interleaved rounds over the models
                for r in live:
                    t = timed(r[runtime], x)
                    if i >= warm:
                        r[runtime + phase].append(t)
            print('timed {} {} ({:.0f}s)'.format(runtime, phase, time.time() - t0),
                  flush=True)
    for r in rows:
        for runtime in ('mxnet', 'onnx'):
            if r[runtime] is not None:
                r[runtime + '_median'] = float(np.median(r[runtime + 'b1']))
                r[runtime + '_batch'] = float(np.median(r[runtime + 'bn'])) / args.batch


def ratio_table(rows, reference, teacher, batch, names=('teacher', 'float student')):
    """The deployer's table: per runtime and row, batch 1 latency and batch ``batch`` time per
    image, each also as a ratio to ``teacher`` and ``reference`` (rows, or None), the columns
    named after ``names``."""
    lines = ['| model | runtime | b1 median ms | b1 / {1} | b1 / {2} | '
             'b{0} img/s | b{0} / {1} | b{0} / {2} |'.format(batch, *names),
             '|---|---|---:|---:|---:|---:|---:|---:|']
    for runtime, label in (('onnx', 'ONNX Runtime'), ('mxnet', 'MXNet')):
        for r in rows:
            if r[runtime] is None:
                why = ('an ONNX model' if r.get('format') == 'int8' else
                       'no {} files'.format('ONNX' if runtime == 'onnx' else 'symbol'))
                lines.append('| {} | {} | n/a ({}) | | | | | |'.format(r['label'], label, why))
                continue
            cells = [r['label'], label, '{:.3g}'.format(r[runtime + '_median'] * 1e3)]
            for key in ('_median', '_batch'):
                for ref in (teacher, reference):
                    ok = ref is not None and ref[runtime] is not None
                    cells.append('{:.2f}'.format(r[runtime + key] / ref[runtime + key])
                                 if ok else '')
                if key == '_median':
                    cells.append('{:.1f}'.format(1.0 / r[runtime + '_batch']))
            # order: b1 ms, b1/teacher, b1/ref, img/s, b8/teacher, b8/ref
            lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def time_folders(args):
    """``--models DIR...``: every file of each export folder, ratios to the first float."""
    import json
    t0 = time.time()
    rows = []
    for d in args.models:
        with open(os.path.join(d, 'deploy.json')) as f:
            info = json.load(f)
        for fmt in ('float', 'int8'):
            row = {'label': '{} ({})'.format(d.rstrip('/'), fmt), 'dir': d, 'format': fmt,
                   'size': info['data_shape']}
            runners(row, THREADS)
            if row['onnx'] or row['mxnet']:
                rows.append(row)
    sizes = {r['size'] for r in rows}
    if len(sizes) != 1:
        raise SystemExit('--models: folders of one input size only, got {}'.format(sizes))
    size = sizes.pop()
    time_rows(rows, size, args, t0)
    print('\nLatency at {} px on this CPU ({} thread(s); batch 1: median of {} runs after {} '
          'warm-up; batch {}: median of {} runs); {}'.format(
              size, THREADS, args.runs, args.warmup, args.batch, args.batch_runs, load()))
    # ratios to the first folder (e.g. the teacher) and to the float model of the first folder
    # that also holds an INT8 one (e.g. the distilled student)
    first = rows[0]
    student = next((r for r in rows if r['format'] == 'float' and (r['dir'], 'int8') in
                    {(q['dir'], q['format']) for q in rows}), first)
    print(ratio_table(rows, student, first, args.batch,
                      ('first', 'float ' + os.path.basename(student['dir'].rstrip('/')))))
    by = {(r['dir'], r['format']): r for r in rows}
    for d in args.models:
        f, q = by.get((d, 'float')), by.get((d, 'int8'))
        if f and q and f['onnx'] and q['onnx']:
            print('{}: int8_vs_float={:.2f} (batch 1) {:.2f} (batch {})'.format(
                d, q['onnx_median'] / f['onnx_median'], q['onnx_batch'] / f['onnx_batch'],
                args.batch))


def load():
    return 'load average {:.2f} {:.2f} {:.2f} on {} cores'.format(*os.getloadavg(),
                                                                   os.cpu_count())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--size', type=int, default=512)
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--runs', type=int, default=20, help='timed runs at batch 1')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--batch-runs', type=int, default=3, help='timed runs at --batch')
    parser.add_argument('--calibration-images', type=int, default=32,
                        help='images the INT8 model is calibrated on')
    parser.add_argument('--out', help='keep the exported models here (default: a temp dir)')
    parser.add_argument('--models', nargs='+', metavar='DIR',
                        help='time these export folders instead of the zoo models')
    args = parser.parse_args(argv)
    warnings.filterwarnings('ignore')
    if args.models:
        return time_folders(args)

    from gluon_distill.export import count_params_macs, export_detector, format_report, PREFIX
    t0 = time.time()
    print('# {}; MXNet {}'.format(load(), mx.__version__), flush=True)
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
        if label == 'distilled mobilenet1.0':
            quantize_int8(d, size, args.calibration_images)
            rows.append({'label': label + ' INT8', 'dir': d, 'format': 'int8',
                         'params': e_params, 'macs': e_macs, 'unfolded': None})
    for r in rows:
        runners(r, THREADS)
    time_rows(rows, size, args, t0)

    print('\nLatency at {0} px on this CPU ({1} threads; batch 1: median / p90 of {2} runs '
          'after {3} warm-up; batch {4}: images/s from the median of {5} runs); {6}'.format(
              size, THREADS, args.runs, args.warmup, args.batch, args.batch_runs, load()))
    head = ('| model (as exported) | params (M) | GMACs | MXNet b1 median ms | MXNet b1 p90 ms | '
            'MXNet b{0} img/s | ORT b1 median ms | ORT b1 p90 ms | ORT b{0} img/s |'.format(
                args.batch))
    print(head)
    print('|---|' + '---:|' * 8)
    for r in rows:
        label = r['label'] + (' (folded)' if r['unfolded'] else '')
        if r.get('format') == 'int8':
            label = r['label'].replace(' INT8', ' (folded), INT8')
        cells = [label, '{:.2f}'.format(r['params'] / 1e6), '{:.2f}'.format(r['macs'] / 1e9)]
        for runtime in ('mxnet', 'onnx'):
            if r[runtime] is None:
                cells += ['n/a', 'n/a', 'n/a']
                continue
            b1 = np.array(r[runtime + 'b1']) * 1e3
            cells += ['{:.0f}'.format(np.median(b1)), '{:.0f}'.format(np.percentile(b1, 90)),
                      '{:.1f}'.format(1.0 / r[runtime + '_batch'])]
        print('| ' + ' | '.join(cells) + ' |')
    print('\nUnfolded students (adapters + the teacher\'s wide head, as trained), for '
          'comparison:')
    for r in rows:
        if r['unfolded']:
            print('  {}: {:.2f} M params, {:.2f} GMACs (folded: {:.2f} M, {:.2f} GMACs)'.format(
                r['label'], r['unfolded'][0] / 1e6, r['unfolded'][1] / 1e9, r['params'] / 1e6,
                r['macs'] / 1e9))
    by = {r['label']: r for r in rows}
    teacher, plain = by['resnet50_v1'], by['mobilenet1.0']
    student, int8 = by['distilled mobilenet1.0'], by['distilled mobilenet1.0 INT8']
    deploy_rows = [dict(teacher, label='teacher: resnet50_v1'),
                   dict(plain, label='plain student: mobilenet1.0'),
                   dict(student, label='distilled student: mobilenet1.0, float'),
                   dict(int8, label='distilled student: mobilenet1.0, INT8')]
    print('\nFor a deployer: latency ratios measured in the same rounds (lower is faster; '
          'batch {}: time per image)'.format(args.batch))
    print(ratio_table(deploy_rows, deploy_rows[2], deploy_rows[0], args.batch))
    print('total {:.0f}s; {}'.format(time.time() - t0, load()))
    print('student_vs_teacher={:.2f} student_vs_plain={:.2f} int8_vs_float={:.2f} '
          'int8_vs_teacher={:.2f}'.format(
              student['onnx_median'] / teacher['onnx_median'],
              student['onnx_median'] / plain['onnx_median'],
              int8['onnx_median'] / student['onnx_median'],
              int8['onnx_median'] / teacher['onnx_median']))


if __name__ == '__main__':
    main()
