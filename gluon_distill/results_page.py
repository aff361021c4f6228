"""``docs/results.md``: the paper's Tables 1-3 beside our numbers, and the CPU evidence.

Written by ``python tools/reproduce.py --report`` (:func:`write_results_page`) from whatever
files exist when it runs, so that the page never quotes a number no file holds:

* per table (:data:`gluon_distill.reproduce.TABLES`), every config of its experiments folder
  whose ``experiment.paper_table`` names the table: the paper's cells (a published number, or
  a cell of the table such as the ResNet101 teacher whose number is "79+") in one
  model-zoo table, the ablations and comparisons (``ablation of ...``, ``comparison for
  ...``: head-only, mimic, FGFI, plain GAN beside a cosine row) in a second; each row with
  the paper's number (``experiment.published_mAP``, in %), ours, the config and the commands
  that train and evaluate it. Ours is read from the run's ``train.out``: a finished run
  (``summary.json``) shows the value of ``reproduce_eval.json`` (``tools/reproduce.py``'s
  evaluation of ``best.params``), else of ``best.json`` (the best validation epoch, marked
  so); anything else is ``not run`` or ``not finished``.
* the CPU evidence: per mini-reproduction folder (``bench/mini_repro.py``), the arms' final
  and best mAP and the paired differences with their 95% interval as its ``results.json``
  holds them (formatted as its ``results.md``), its ``paired.png`` copied beside the page;
  and the demo's table from its ``demo.json`` with ``demo.png``.
"""
import json
import os
import re
import shutil

from .io_utils import atomic_write_text

DEFAULT_OUT = 'docs/results.md'
TITLES = {
    1: 'SSD512, VOC07+12 trainval -> VOC07 test',
    2: 'SSD512, COCO 2017 train2017 -> val2017',
    3: 'Faster R-CNN, VOC07 trainval -> VOC07 test',
}
# the repository's docs/ (the page links its neighbours from wherever it is written)
DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'docs')
NOT_RUN = 'not run'
NOT_FINISHED = 'not finished'


def _cell(text):
    """Text safe inside a markdown table cell."""
    return str(text).replace('|', '\\|').replace('\n', ' ')


def _percent(value, digits):
    return '{:.{}f}'.format(100.0 * value, digits)


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def run_result(run):
    """What the page says of ``run``'s own number: ``{'text', 'value', 'source'}``.

    Finished (``OUT/summary.json``): the value of ``OUT/reproduce_eval.json`` (what
    ``tools/reproduce.py`` evaluates and puts in ``table<N>.md``), else of ``OUT/best.json``
    (training's best validation epoch; marked ``(best.json)``), else ``trained, not
    evaluated``; a run the divergence stop ended says ``diverged``. Not finished: ``not
    finished`` with a checkpoint (``last.ckpt``), else ``not run``."""
    if not run.finished:
        return {'text': NOT_FINISHED if run.started else NOT_RUN, 'value': None, 'source': None}
    summary = _read_json(os.path.join(run.out, 'summary.json')) or {}
    note = ', diverged' if summary.get('diverged') else ''
    for name in ('reproduce_eval.json', 'best.json'):
        record = _read_json(os.path.join(run.out, name))
        value = record.get('mAP') if isinstance(record, dict) else None
        if _number(value):
            mark = '' if name == 'reproduce_eval.json' else ' (best.json)'
            return {'text': _percent(value, 2) + mark + note, 'value': value, 'source': name}
    return {'text': 'trained, not evaluated' + note, 'value': None, 'source': None}


def cell_label(paper_table):
    """``Table 1, MobileNetV1 student, ResNet50 teacher`` -> ``MobileNetV1 student, ResNet50
    teacher``; ``teacher of Table 1 (ResNet50 teacher column)`` -> ``teacher (ResNet50
    teacher column)``: the cell as the config names it, in the authors' words."""
    text = re.sub(r'^Table \d+,\s*', '', paper_table.strip())
    return re.sub(r'^teacher of Table \d+\s*', 'teacher ', text)


def is_cell(run, table):
    """A cell of the paper's table (not an ablation or comparison): it has a published
    number, or its ``paper_table`` starts with ``Table N`` or ``teacher of Table N``."""
    text = (run.cfg.experiment.paper_table or '').strip()
    return run.cfg.experiment.published_mAP is not None or re.match(
        r'^(teacher of )?Table {}\b'.format(table), text) is not None


def train_command(run):
    """The command that trains ``run`` from scratch (``Run.command`` without ``--resume``)."""
    command = run.command()
    return command[:-len(' --resume')] if command.endswith(' --resume') else command


def eval_command(run):
    return 'python tools/eval.py --params {}/best.params'.format(
        run.cfg.train.out.rstrip('/'))


def _doc(name, page_dir):
    """The relative link from the page to ``docs/name``."""
    return os.path.relpath(os.path.join(DOCS, name), page_dir).replace(os.sep, '/')


def _link(path, page_dir):
    return '[`{}`]({})'.format(path, os.path.relpath(os.path.abspath(path), page_dir))


def table_section(table, folder, page_dir):
    """The markdown of one table and its number of runs, finished runs."""
    from .reproduce import collect_runs, table_spec
    spec = table_spec(table)
    runs = collect_runs(folder, table)
    metric = spec.label
    cells = [r for r in runs if is_cell(r, table)]
    others = [r for r in runs if not is_cell(r, table)]
    results = {r.path: run_result(r) for r in runs}
    finished = sum(1 for r in runs if r.finished)
    lines = ['## Table {}: {}'.format(table, TITLES.get(table, folder)), '',
             'Metric: {}, in %, on each config\'s `data.val_split`. Configs in [`{}`]({}): '
             '{} runs, {} finished. '
             'The whole table, in dependency order: `python tools/reproduce.py --table {}`.'
             .format(spec.text, folder, os.path.relpath(os.path.abspath(folder), page_dir),
                     len(runs), finished, table), '',
             '### The paper\'s cells', '',
             '| cell (the authors\' label) | method | paper {0} | our {0} | config | train | '
             'evaluate |'.format(metric),
             '|---|---|---:|---:|---|---|---|']
    for r in cells:
        published = r.cfg.experiment.published_mAP
        lines.append('| {} | `{}` | {} | {} | {} | `{}` | `{}` |'.format(
            _cell(cell_label(r.cfg.experiment.paper_table)), r.method,
            '—' if published is None else _percent(published, 1), results[r.path]['text'],
            _link(r.path, page_dir), train_command(r), eval_command(r)))
    if any(r.cfg.experiment.published_mAP is None for r in cells):
        lines += ['', '—: a cell of the table without a published number in its config '
                  '(`experiment.published_mAP: null`); the config\'s `experiment.notes` say '
                  'why.']
    if others:
        lines += ['', '### Ablations and comparisons (not in the paper)', '',
                  'The same recipe with another method (head-only: the teacher-initialised '
                  'head without critics; mimic; FGFI; GAN-KD without cosine attention where '
                  'the authors\' cell has it). No published number.', '',
                  '| run | what it is | method | our {} | config | train | evaluate |'.format(
                      metric),
                  '|---|---|---|---:|---|---|---|']
        for r in others:
            lines.append('| `{}` | {} | `{}` | {} | {} | `{}` | `{}` |'.format(
                r.name, _cell(r.cfg.experiment.paper_table), r.method,
                results[r.path]['text'], _link(r.path, page_dir), train_command(r),
                eval_command(r)))
    if any('cosine' in r.method.split('+') for r in runs):
        lines += ['', '`gan+cosine`: GAN-KD plus `distill.cosine`, **our reading** of the '
                  'authors\' unpublished "cosine attention" ([distillation]({}#cosine-our-'
                  'reading-of-cosine-attention)).'.format(_doc('distillation.md', page_dir))]
    lines.append('')
    return lines, len(runs), finished


# ------------------------------------------------------------------------- the CPU evidence

def _mean_std(mean, std):
    return '{:.4f} ± {:.4f}'.format(mean, std)


def read_mini_results(folder):
    """``results.json`` of a mini-reproduction folder (:func:`gluon_distill.mini.
    write_results`)."""
    path = os.path.join(folder, 'results.json')
    if not os.path.exists(path):
        raise FileNotFoundError('{}: no results.json (a bench/mini_repro.py output folder '
                                'holds results.json, results.md and paired.png)'.format(folder))
    with open(path) as f:
        results = json.load(f)
    if not isinstance(results, dict) or 'arms' not in results:
        raise ValueError('{} is not a mini-reproduction results.json (no "arms")'.format(path))
    return results


def _teacher_settings(folder, rcnn_only):
    """(data root, teacher epochs) from the folder's teacher ``config.yaml``, if there."""
    import yaml
    for name in (('rcnn_teacher',) if rcnn_only else ('teacher', 'rcnn_teacher')):
        path = os.path.join(folder, name, 'config.yaml')
        if os.path.exists(path):
            with open(path) as f:
                cfg = yaml.safe_load(f) or {}
            return (cfg.get('data', {}).get('root'), cfg.get('train', {}).get('epochs'))
    return None, None


def mini_section(folder, page_dir, image_name):
    """The markdown of one mini-reproduction folder; copies its ``paired.png`` to
    ``page_dir/images/image_name``."""
    results = read_mini_results(folder)
    arms = results['arms']
    rcnn_only = bool(arms) and all(a.startswith('rcnn_') for a in arms)
    root, teacher_epochs = _teacher_settings(folder, rcnn_only)
    name = os.path.basename(os.path.normpath(folder))
    lines = ['### Mini-reproduction: `{}`'.format(name), '',
             'From `{}` (written by `bench/mini_repro.py`; its `results.md` prints the same '
             'numbers).'.format(os.path.join(folder, 'results.json'))]
    facts = []
    if root is not None:
        facts.append('data: {}'.format('the generated shapes' if root == 'synthetic'
                                       else '`{}`'.format(root)))
    teacher = results.get('teacher_best_mAP')
    if _number(teacher):
        facts.append('{}teacher best mAP {:.4f}{}'.format(
            'Faster R-CNN ' if rcnn_only else '', teacher,
            ' ({} epochs)'.format(teacher_epochs) if teacher_epochs else ''))
    if _number(results.get('rcnn_teacher_best_mAP')) and not rcnn_only:
        facts.append('Faster R-CNN teacher best mAP {:.4f}'.format(
            results['rcnn_teacher_best_mAP']))
    if results.get('epochs') is not None:
        facts.append('students trained {} epochs'.format(results['epochs']))
    if facts:
        lines.append(' '.join(['Settings:', '; '.join(facts) + '.']))
    lines += ['', 'Validation mAP (VOC07, IoU 0.5) of each arm over its seeds, mean ± standard '
              'deviation:', '',
              '| arm | seeds | final mAP (mean ± std) | best mAP (mean ± std) | final, per seed |',
              '|---|---:|---:|---:|---|']
    pairs = []
    for arm, record in arms.items():
        runs = record.get('runs', [])
        per_seed = ', '.join('s{}={}{}'.format(
            r['seed'], '{:.3f}'.format(r['final_mAP']) if _number(r.get('final_mAP')) else 'nan',
            ' (diverged)' if r.get('diverged') else '') for r in runs)
        lines.append('| `{}` | {} | {} | {} | {} |'.format(
            arm, len(runs), _mean_std(record['final_mean'], record['final_std']),
            _mean_std(record['best_mean'], record['best_std']), per_seed))
        for key, diff in record.items():
            if key.startswith('minus_') and isinstance(diff, dict):
                pairs.append(('{} - {}'.format(arm, key[len('minus_'):]), diff))
    if pairs:
        lines += ['', 'Paired by seed (final mAP of the arm minus the other arm\'s, seeds both '
                  'finished): mean and 95% interval (Student\'s t):', '',
                  '| pair | seeds | per seed | mean | 95% interval |',
                  '|---|---:|---|---:|---|']
        for pair, diff in pairs:
            interval = diff.get('interval95')
            lines.append('| `{}` | {} | {} | {:+.4f} | {} |'.format(
                pair, len(diff['per_seed']),
                ', '.join('s{}={:+.3f}'.format(k, v) for k, v in diff['per_seed'].items()),
                diff['mean'],
                '[{:+.4f}, {:+.4f}]'.format(*interval) if interval else '- (one seed)'))
    lines.append('')
    if not _copy_plot(os.path.join(folder, 'paired.png'), page_dir, image_name,
                      '{}: paired differences'.format(name), lines):
        lines += ['(no `paired.png` in `{}`: no pair of arms to plot)'.format(folder), '']
    return lines


def demo_section(folder, page_dir, image_name):
    """The markdown of a demo output folder (``demo.json``, ``demo.png``)."""
    path = os.path.join(folder, 'demo.json')
    if not os.path.exists(path):
        raise FileNotFoundError('{}: no demo.json (the folder `python -m gluon_distill.demo '
                                '--out DIR` writes)'.format(folder))
    with open(path) as f:
        demo = json.load(f)
    from .demo import format_table
    name = os.path.basename(os.path.normpath(folder))
    how = ('`make demo QUICK=1`, `python -m gluon_distill.demo --quick`: **the one-minute '
           'version**' if demo.get('quick') else '`make demo`, `python -m gluon_distill.demo`')
    lines = ['### Demo: `{}`'.format(name), '',
             'From `{}` ({}): validation mAP on the generated shapes, one seed, one run; the '
             'teacher\'s `best.params`, the students at their last epoch; parameters as '
             'deployed.'.format(path, how), '']
    lines += ['    ' + line for line in format_table(demo['rows']).splitlines()]
    lines.append('')
    _copy_plot(os.path.join(folder, 'demo.png'), page_dir, image_name,
               '{}: training curves'.format(name), lines)
    return lines


def _copy_plot(plot, page_dir, image_name, alt, lines):
    """Copy ``plot`` to the page's ``images/`` and append its link to ``lines``; False if
    there is no such file."""
    if not os.path.exists(plot):
        return False
    target = os.path.join(page_dir, 'images', image_name)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copyfile(plot, target)
    lines += ['![{}](images/{})'.format(alt, image_name), '']
    return True


def _image_names(folders, suffix):
    """``<folder name>_<suffix>``, numbered when two folders share a name."""
    names, seen = [], {}
    for folder in folders:
        base = os.path.basename(os.path.normpath(folder)) or 'evidence'
        seen[base] = seen.get(base, 0) + 1
        names.append('{}{}_{}'.format(base, '' if seen[base] == 1 else seen[base], suffix))
    return names


def generation_command(out=DEFAULT_OUT, evidence=(), demo=None):
    command = 'python tools/reproduce.py --report'
    if os.path.normpath(out) != os.path.normpath(DEFAULT_OUT):
        command += ' --out {}'.format(out)
    if evidence:
        command += ' --evidence {}'.format(' '.join(evidence))
    if demo:
        command += ' --demo {}'.format(demo)
    return command


def results_page(out=DEFAULT_OUT, evidence=(), demo=None, folders=None):
    """The page's markdown (copies the evidence plots beside ``out``)."""
    from .reproduce import TABLES
    folders = dict(folders or {})
    page_dir = os.path.dirname(os.path.abspath(out))
    command = generation_command(out, evidence, demo)
    lines = ['# Results', '',
             '<!-- generated by {}: do not edit by hand, run it again -->'.format(command), '',
             'Generated by', '', '    ' + command, '',
             'from the files that existed then: the paper\'s numbers from each experiment '
             'config (`experiment.published_mAP`, shown in %), ours from each run\'s '
             '`train.out` (relative to the folder the command ran in), the CPU evidence from '
             'its output folders. A run without such files says "not run"; no number here '
             'comes from anywhere else. How the runs are made: [reproduce]({}).'.format(
                 _doc('reproduce.md', page_dir)), '',
             '"ours" is the metric of the run\'s `best.params` on its config\'s validation split '
             'as `tools/reproduce.py` evaluates it (`OUT/reproduce_eval.json`, in %); a run '
             'trained by its own command and not yet evaluated that way shows its best '
             'validation epoch from training, marked "(best.json)". "not finished": the run has '
             'a checkpoint but no `summary.json`.', '']
    totals = []
    for table in sorted(TABLES):
        folder = folders.get(table, TABLES[table].experiments)
        section, count, finished = table_section(table, folder, page_dir)
        lines += section
        totals.append((table, count, finished))
    lines += ['## CPU evidence', '',
              'What the methods do on networks a 2-core CPU trains in minutes: not the paper\'s '
              'set-up (tiny from-scratch networks at 128 px); what it says and every command: '
              '[CPU evidence]({}).'.format(_doc('cpu-evidence.md', page_dir)), '']
    if evidence:
        for folder, image in zip(evidence, _image_names(evidence, 'paired.png')):
            lines += mini_section(folder, page_dir, image)
    else:
        lines += ['No mini-reproduction folder was given to this generation. '
                  '`bench/mini_repro.py` writes one (`results.json`, `results.md`, `paired.png`), '
                  'e.g.', '',
                  '    python bench/mini_repro.py --out runs/mini --arms baseline head_only gan '
                  '--seeds 0 1 2 --epochs 40 --teacher-epochs 50', '',
                  'and `python tools/reproduce.py --report --evidence runs/mini` puts it here '
                  '(several folders: `--evidence DIR [DIR ...]`).', '']
    if demo:
        lines += demo_section(demo, page_dir, _image_names([demo], 'demo.png')[0])
    else:
        lines += ['No demo folder was given: `make demo` (`python -m gluon_distill.demo`) writes '
                  '`runs/demo`, and `--demo runs/demo` puts its table and plot here.', '']
    return '\n'.join(lines).rstrip('\n') + '\n', totals


def write_results_page(out=DEFAULT_OUT, evidence=(), demo=None, folders=None, echo=print):
    """Write the results page ``out`` (and its images under ``dirname(out)/images``);
    returns its path. ``folders``: {table: experiments folder}, default the tables' own."""
    evidence = list(evidence or ())
    for folder in evidence:
        read_mini_results(folder)  # fail before writing anything
    text, totals = results_page(out, evidence, demo, folders)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    atomic_write_text(out, text)
    echo('wrote {} ({})'.format(out, '; '.join(
        'Table {}: {} of {} runs finished'.format(t, f, n) for t, n, f in totals)))
    return out
