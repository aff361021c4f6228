"""The package's layers: every module of ``gluon_distill`` stands on one layer of :data:`LAYERS`
and imports only from its own layer or the ones below, with no circle between files.

The imports are read with ``ast`` (imports inside functions too; relative imports resolved; a
name taken from a package's ``__init__`` that only hands it on counts as taken from the module
that defines it; a module loaded by ``importlib`` by name, as ``gluon-distill`` loads its
commands, is not seen). ``python tests/test_layers.py`` prints the picture of docs/design.md
(checked here) and, with ``--check``, every import that runs upward and every circle.
"""
import ast
import os
import shutil
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = 'gluon_distill'

# The layers, from the ground up: (name, what it holds, its paths inside gluon_distill/: a
# folder ends with '/'; the longest path that matches a file places it). A module may import
# from its own layer and the layers below it, never from a layer above.
LAYERS = [
    ('base', 'configuration, files, progress bars, plots',
     ['__init__.py', '_compat.py', 'config.py', 'resources.py', 'io_utils.py', 'progress.py',
      'authors_log.py', 'viz.py']),
    ('runtime', 'exported detectors run with no GluonCV and no training code',
     ['runtime/']),
    ('data', 'datasets, images, augmentation, training targets, loaders, samplers',
     ['data/']),
    ('models', 'networks, saved detectors, a teacher and the student planned from it',
     ['models/']),
    ('evaluation', 'predictions, VOC07 mAP, COCO AP, results files',
     ['evaluation/']),
    ('engine', 'the loop, plain step, hooks, checkpoints, devices, workers',
     ['engine/']),
    ('families', 'one object per detector family: SSD, Faster R-CNN, YOLOv3',
     ['families/']),
    ('distill', 'distillation methods and their step',
     ['distill/']),
    ('runs', 'a training, distillation or evaluation run from a config',
     ['training.py', 'distill/run.py', 'evaluate.py']),
    ('apps', 'demo, mini-reproduction, paper tables, detect, export, parser, launcher',
     ['demo.py', 'mini.py', 'reproduce.py', 'results_page.py', 'detect.py', 'export/',
      'cli.py', 'launch.py', 'horovod_exec.py']),
    ('commands', 'gluon-distill COMMAND: each tool\'s wiring; the generated docs',
     ['commands/', '__main__.py', 'docgen.py']),
]
# outside the package, above everything (they import gluon_distill, nothing imports them)
SCRIPTS = ('scripts', 'beside the package: aliases of the commands, benchmarks',
           ['tools/', 'bench/'])


# ------------------------------------------------------------------------------ reading

def modules(root):
    """``{dotted module name: path relative to root}`` of every module of the package."""
    found = {}
    for folder, dirs, files in os.walk(os.path.join(root, PACKAGE)):
        dirs[:] = sorted(d for d in dirs if d != '__pycache__')
        for name in sorted(files):
            if name.endswith('.py'):
                rel = os.path.relpath(os.path.join(folder, name), root).replace(os.sep, '/')
                dotted = rel[:-3].replace('/', '.')
                if dotted.endswith('.__init__'):
                    dotted = dotted[:-len('.__init__')]
                found[dotted] = rel
    return found


def _absolute(module, path, node):
    """The dotted module an ``ImportFrom`` of ``module`` names."""
    if not node.level:
        return node.module or ''
    parts = module.split('.')
    if not path.endswith('__init__.py'):
        parts = parts[:-1]
    parts = parts[:len(parts) - (node.level - 1)]
    return '.'.join(parts + ([node.module] if node.module else []))


def raw_imports(root, mods):
    """``{module: [(imported module, name or None, line)]}``: every import of the package's
    own modules, at any depth of the file (functions, classes, ``try``)."""
    out = {}
    for module, path in mods.items():
        tree = ast.parse(Path(root, path).read_text(encoding='utf-8'), path)
        found = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split('.')[0] == PACKAGE:
                        name = alias.name
                        while name not in mods:     # import a.b.c of a missing c: a.b
                            name = name.rpartition('.')[0]
                        found.append((name, None, node.lineno))
            elif isinstance(node, ast.ImportFrom):
                target = _absolute(module, path, node)
                if target.split('.')[0] != PACKAGE:
                    continue
                for alias in node.names:
                    sub = target + '.' + alias.name
                    if sub in mods:                 # from package import submodule
                        found.append((sub, None, node.lineno))
                    else:
                        found.append((target, alias.name, node.lineno))
        out[module] = found
    return out


def _handed_on(raw, mods):
    """``{(package, name): module}``: names a package's ``__init__`` takes from one of its own
    modules (``from .sub import name``) and so only hands on."""
    handed = {}
    for module, path in mods.items():
        if not path.endswith('__init__.py'):
            continue
        for target, name, _ in raw[module]:
            if name and target.startswith(module + '.'):
                handed[(module, name)] = target
    return handed


def edges(root):
    """``{(importer path, imported path): {names}}`` between the files of the package."""
    mods = modules(root)
    raw = raw_imports(root, mods)
    handed = _handed_on(raw, mods)
    out = defaultdict(set)
    for module, found in raw.items():
        for target, name, line in found:
            if target not in mods:
                continue
            seen = set()
            while name and (target, name) in handed and target not in seen:
                seen.add(target)
                target = handed[(target, name)]
            if target != module:
                out[(mods[module], mods[target])].add(name or '(module)')
    return dict(out)


# ------------------------------------------------------------------------------ checking

def layer_of(path):
    """The index in :data:`LAYERS` of a file (path from the repository root), or None."""
    inside = path[len(PACKAGE) + 1:] if path.startswith(PACKAGE + '/') else None
    if inside is None:
        return None
    best, index = -1, None
    for i, (_, _, paths) in enumerate(LAYERS):
        for p in paths:
            if (inside == p or (p.endswith('/') and inside.startswith(p))) and len(p) > best:
                best, index = len(p), i
    return index


def unplaced(root):
    return sorted(p for p in modules(root).values() if layer_of(p) is None)


def upward(root):
    """Every import from a lower layer to a higher one: ``(importer, imported, names)``."""
    rows = []
    for (a, b), names in sorted(edges(root).items()):
        la, lb = layer_of(a), layer_of(b)
        if la is not None and lb is not None and lb > la:
            rows.append((a, b, sorted(names)))
    return rows


def circles(root):
    """Every group of files that import each other in a loop (strongly connected, 2 files or
    more): a sorted list of files, and the imports ``(a, b, names)`` inside the group."""
    graph = defaultdict(set)
    tied = edges(root)
    for a, b in tied:
        graph[a].add(b)
    index, low, stack, on, groups = {}, {}, [], set(), []

    def visit(v):                   # Tarjan's (recursive: a package's imports are shallow)
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [(g, [(a, b, sorted(n)) for (a, b), n in sorted(tied.items())
                 if a in g and b in g]) for g in sorted(groups)]


def problems(root):
    """Lines naming each unplaced file, upward import and circle (empty: the layers hold)."""
    lines = ['{}: on no layer (add its path to LAYERS in tests/test_layers.py)'.format(p)
             for p in unplaced(root)]
    for a, b, names in upward(root):
        lines.append('{} ({}) imports {} ({}) above it: {}'.format(
            a, LAYERS[layer_of(a)][0], b, LAYERS[layer_of(b)][0], ', '.join(names)))
    for group, ties in circles(root):
        lines.append('circle: {}'.format(' '.join(group)) + ''.join(
            '\n  {} -> {}: {}'.format(a, b, ', '.join(n)) for a, b, n in ties))
    return lines


# ------------------------------------------------------------------------------ picture

def picture():
    """The layers as docs/design.md shows them, the top first: each imports only from its own
    layer and the layers drawn under it."""
    rows = [SCRIPTS] + list(reversed(LAYERS))
    width = max(len(name) for name, _, _ in rows) + 2
    lines = []
    for i, (name, what, paths) in enumerate(rows):
        if i:
            lines.append('    ' + ' ' * 3 + '|')
        lines.append('    ' + name.ljust(width) + what)
        row = []
        for path in paths:                  # the paths under it, lines of at most 80 characters
            if row and len('  '.join(row + [path])) > 80 - 6 - width:
                lines.append('      ' + ' ' * width + '  '.join(row))
                row = []
            row.append(path)
        lines.append('      ' + ' ' * width + '  '.join(row))
    return '\n'.join(lines)


# ------------------------------------------------------------------------------ tests

def test_every_module_is_on_a_layer():
    assert unplaced(REPO) == []


def test_no_import_runs_upward_and_no_circle():
    found = problems(REPO)
    assert not found, '\n'.join(found)


def test_design_doc_shows_the_layers():
    text = (REPO / 'docs' / 'design.md').read_text(encoding='utf-8')
    assert picture() in text, ('docs/design.md: the layers picture is out of date; '
                               'python tests/test_layers.py prints it')


def test_check_names_an_upward_import_and_a_circle(tmp_path):
    """The check fails on a crafted bad copy: an import inside a function from a low layer to
    a high one, and two modules of one layer that import each other."""
    copy = tmp_path / 'copy'
    shutil.copytree(str(REPO / PACKAGE), str(copy / PACKAGE),
                    ignore=shutil.ignore_patterns('__pycache__'))
    assert problems(copy) == []
    base = copy / PACKAGE / 'io_utils.py'
    base.write_text(base.read_text() + '\n\ndef _bad():\n    from .engine.loop import TrainLoop\n'
                    '    return TrainLoop\n')
    (copy / PACKAGE / 'data' / 'ring_a.py').write_text('from .ring_b import B\nA = 1\n')
    (copy / PACKAGE / 'data' / 'ring_b.py').write_text('from . import ring_a\nB = 2\n')
    found = problems(copy)
    assert any(line.startswith('gluon_distill/io_utils.py (base) imports '
                               'gluon_distill/engine/loop.py (engine) above it: TrainLoop')
               for line in found), found
    ring = [line for line in found if line.startswith('circle:')]
    assert ring and 'gluon_distill/data/ring_a.py -> gluon_distill/data/ring_b.py: B' in ring[0]
    assert 'gluon_distill/data/ring_b.py -> gluon_distill/data/ring_a.py: (module)' in ring[0]
    # a name handed on by a package's __init__ counts as taken from its module
    (copy / PACKAGE / 'data' / 'ring_a.py').write_text('A = 1\n')
    (copy / PACKAGE / 'data' / 'ring_b.py').write_text(
        'def f():\n    from ..runtime import Detector\n    from ..families import FAMILIES\n')
    assert ('gluon_distill/data/ring_b.py', 'gluon_distill/runtime/detector.py') in edges(copy)
    assert any(line.startswith('gluon_distill/data/ring_b.py (data) imports '
                               'gluon_distill/families/__init__.py (families) above it: FAMILIES')
               for line in problems(copy))


if __name__ == '__main__':
    if '--check' in sys.argv[1:]:
        found = problems(REPO)
        print('\n'.join(found) or 'the layers hold')
        sys.exit(1 if found else 0)
    print(picture())
