#!/usr/bin/env python
"""INT8 choices, measured: quantise an export folder's ``model.onnx`` several ways and give each
variant's mAP and ONNX Runtime latency beside the float model's.

    python bench/int8_variants.py runs/deploy_raccoon/export/student --out runs/int8_variants
    python bench/int8_variants.py /tmp/lat/distilled_mobilenet1.0 --no-map \\
        --calibration ../shared/data/raccoon/JPEGImages --calibration-images 16 --runs 10

Variants (:func:`gluon_distill.export.quantize.quantize_onnx`; ``default`` is what
``tools/export.py --quantize int8`` writes: QDQ, weights int8 per output channel, activations
uint8, the network up to its predictors, MinMax over ``--calibration-images`` images):
``per_tensor`` (weights per tensor), ``qoperator`` (QOperator format), ``all_nodes`` (every node
ONNX Runtime can quantise, post-processing included), ``s8s8`` (int8 activations),
``entropy`` / ``percentile`` (histogram calibration), ``cal16`` / ``cal160`` (16 or 160
calibration images). A variant that fails to quantise is listed with the reason.

mAP: the float and each INT8 file through the runtime on the validation split recorded in
``deploy.json`` (as ``tools/eval.py --model DIR --format int8``); ``--no-map`` for a folder
without data (random weights). Latency: batch 1 and batch ``--batch`` (time per image) in
interleaved rounds, ``--threads`` intra-op threads, as ratios to the float model. The
calibration images are those of ``tools/export.py``: ``--calibration DIR`` or the recorded
training split.
"""
import argparse
import logging
import os
import shutil
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np  # noqa: E402

import gluon_distill  # noqa: E402,F401

VARIANTS = {
    'default': {},
    'per_tensor': {'per_channel': False},
    'qoperator': {'quant_format': 'qoperator'},
    'all_nodes': {'network_only': False},
    's8s8': {'activations': 'int8'},
    'entropy': {'method': 'entropy'},
    'percentile': {'method': 'percentile'},
    'cal16': {'images': 16},
    'cal160': {'images': 160},
}


def quantise(folder, out, name, args):
    """``out/name/`` holding deploy.json, model.onnx and the variant's model-int8.onnx."""
    from gluon_distill.export.quantize import (INT8_FILE, _Reader, calibration_images,
                                               quantize_onnx)
    from gluon_distill.runtime import read_deploy
    options = dict(VARIANTS[name])
    images = options.pop('images', args.calibration_images)
    info = read_deploy(folder)
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    for f in ('deploy.json', 'model.onnx'):
        shutil.copy(os.path.join(folder, f), os.path.join(d, f))
    paths, what = calibration_images(info, args.calibration, images)
    t = time.time()
    done = quantize_onnx(os.path.join(d, 'model.onnx'), os.path.join(d, INT8_FILE),
                         _Reader(paths, info), **options)
    print('{}: {} nodes quantised in {:.0f}s, calibrated on {}'.format(
        name, done['quantized_nodes'], time.time() - t, what), flush=True)
    return d


def evaluate(folder, fmt):
    from gluon_distill.evaluation.exported import evaluate_export, metric_of
    result, _ = evaluate_export(folder, format=fmt, progress=False)
    return metric_of(result)[1]


def session(path, threads):
    from gluon_distill.runtime.detector import OnnxBackend
    backend = OnnxBackend(path, threads)
    return lambda x: backend.session.run(None, {backend.input: x})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('folder', help='an export folder with model.onnx')
    parser.add_argument('--out', default='runs/int8_variants', help='where the variants go')
    parser.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument('--calibration', metavar='DIR',
                        help='as tools/export.py (default: the recorded training split)')
    parser.add_argument('--calibration-images', type=int, default=100)
    parser.add_argument('--no-map', action='store_true', help='latency only')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--runs', type=int, default=100, help='timed rounds at batch 1')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--batch-runs', type=int, default=20, help='timed rounds at --batch')
    args = parser.parse_args(argv)
    warnings.filterwarnings('ignore')
    logging.getLogger('gluon_distill').setLevel(logging.WARNING)
    from gluon_distill.runtime import read_deploy
    size = read_deploy(args.folder)['data_shape']
    rows = {'float': {'path': os.path.join(args.folder, 'model.onnx')}}
    if not args.no_map:
        rows['float']['map'] = evaluate(args.folder, 'onnx')
    failed = {}
    for name in args.variants:
        try:
            d = quantise(args.folder, args.out, name, args)
        except Exception as e:          # e.g. a calibrator that cannot handle the graph
            failed[name] = '{}: {}'.format(type(e).__name__, str(e).splitlines()[-1][:120])
            print('{}: failed: {}'.format(name, failed[name]), flush=True)
            continue
        rows[name] = {'path': os.path.join(d, 'model-int8.onnx')}
        if not args.no_map:
            rows[name]['map'] = evaluate(d, 'int8')
    for row in rows.values():
        row['run'] = session(row['path'], args.threads)
    rng = np.random.RandomState(0)
    for key, batch, runs in (('b1', 1, args.runs), ('bn', args.batch, args.batch_runs)):
        x = rng.randn(batch, 3, size, size).astype(np.float32)
        times = {name: [] for name in rows}
        for i in range(runs + 2):                       # interleaved rounds, 2 warm-up
            for name, row in rows.items():
                t = time.perf_counter()
                row['run'](x)
                if i >= 2:
                    times[name].append((time.perf_counter() - t) / batch)
        for name in rows:
            rows[name][key] = float(np.median(times[name]))
    base = rows['float']
    print('\n{} at {} px, {} thread(s), batch 1: median of {} rounds, batch {}: of {}; load '
          'average {:.2f} on {} cores'.format(args.folder, size, args.threads, args.runs,
                                              args.batch, args.batch_runs, os.getloadavg()[0],
                                              os.cpu_count()))
    print('| variant | mAP | drop (points) | b1 ms | b1 / float | b{0} ms/img | b{0} / float |'
          .format(args.batch))
    print('|---|---:|---:|---:|---:|---:|---:|')
    for name, row in rows.items():
        m = row.get('map')
        print('| {} | {} | {} | {:.3g} | {:.2f} | {:.3g} | {:.2f} |'.format(
            name, '' if m is None else '{:.4f}'.format(m),
            '' if m is None or name == 'float' else '{:+.2f}'.format(100 * (base['map'] - m)),
            row['b1'] * 1e3, row['b1'] / base['b1'], row['bn'] * 1e3, row['bn'] / base['bn']))
    for name, why in failed.items():
        print('| {} | failed: {} | | | | | |'.format(name, why))


if __name__ == '__main__':
    main()
