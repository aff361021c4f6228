"""The training logs the paper's authors published, read as numbers to compare runs against.

Their repository (p517332051/GAN-Knowledge-Distillation-SSD) holds the raw text of an SSD and
a Faster R-CNN distillation log; one line per window of 100 iterations::

    [Epoch 1][Batch 99], Speed: 32.788 samples/sec,Loss_D=-13.622. Loss_G=3.784.  ...

:func:`read_authors_log` reads that text, or a CSV of the same figures (one row per window,
columns ``epoch``, ``batch`` and the logged names, as a ``run`` column optional), and returns
the windows of the longest stretch of training in the file: the logs hold restarts (a new
``Namespace(...)`` line, or the epoch counting down again), and one resumed SSD run whose critic
losses are NaN from its first window.
"""
import csv
import math
import re

# the authors' names -> ours (metrics.jsonl); the others keep their names
OUR_NAMES = {'Loss_G': 'Loss_G_adv', 'train_student_ori_net_CrossEntropy': 'CrossEntropy',
             'train_student_ori_net_SmoothL1': 'SmoothL1'}
_WINDOW = re.compile(r'^\[Epoch (\d+)\]\[Batch (\d+)\]')
_VALUE = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)=(-?(?:nan|inf|[0-9.]+(?:e[-+]?\d+)?))',
                    re.IGNORECASE)


class AuthorsLogError(ValueError):
    """A file that holds no window of a training log."""


def _number(text):
    try:
        return float(text.rstrip('.'))
    except ValueError:
        return float('nan')


def _windows_of_text(lines):
    """Per line ``[Epoch E][Batch B] ... name=value. ...``: one dict; None at a restart line."""
    for line in lines:
        if line.startswith('Namespace('):
            yield None
            continue
        match = _WINDOW.match(line)
        if not match:
            continue
        record = {'epoch': int(match.group(1)), 'batch': int(match.group(2))}
        for name, value in _VALUE.findall(line[match.end():]):
            if name != 'Speed':
                record[name] = _number(value)
        yield record


def _windows_of_csv(rows, path):
    last_run = None
    for i, row in enumerate(rows):
        try:
            record = {'epoch': int(row['epoch']), 'batch': int(row['batch'])}
        except (KeyError, TypeError, ValueError):
            raise AuthorsLogError('{}: row {} has no integer epoch and batch columns'.format(
                path, i + 2))
        if row.get('run') != last_run:
            yield None
            last_run = row.get('run')
        for name, value in row.items():
            if name not in ('run', 'epoch', 'batch') and value not in (None, ''):
                record[name] = _number(value)
        yield record


def _finite_critic(record):
    return math.isfinite(record.get('Loss_D', float('nan')))


def read_authors_log(path):
    """The windows of the longest run in an authors' log (raw text or CSV).

    Returns a list of dicts with ``epoch``, ``batch`` and every logged value under our names
    (``Loss_D``, ``Loss_D_real``, ``Loss_D_fake``, ``Loss_G_adv``, ``CrossEntropy``,
    ``SmoothL1``; others as logged). A run is cut at a restart and where the epoch counts down;
    the run with the most windows of finite ``Loss_D`` wins.
    """
    with open(path, newline='') as f:
        text = f.read()
    lines = text.splitlines()
    if lines and lines[0].startswith(('run,', 'epoch,')):
        windows = _windows_of_csv(csv.DictReader(lines), path)
    else:
        windows = _windows_of_text(lines)
    runs, current = [], []
    for record in windows:
        if record is None or (current and (record['epoch'], record['batch']) <=
                              (current[-1]['epoch'], current[-1]['batch'])):
            runs.append(current)
            current = []
        if record is not None:
            current.append({OUR_NAMES.get(k, k): v for k, v in record.items()})
    runs.append(current)
    best = max(runs, key=lambda run: sum(_finite_critic(r) for r in run))
    if not best or not any(_finite_critic(r) for r in best):
        raise AuthorsLogError('{}: no window with a finite Loss_D (expected lines like '
                              '"[Epoch 1][Batch 99], ... Loss_D=-13.622. ..." or a CSV with '
                              'epoch, batch and Loss_D columns)'.format(path))
    return [r for r in best if _finite_critic(r)]
