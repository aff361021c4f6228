"""Where the files that ship with the package are: the experiment configs.

The configs live in the checkout's ``experiments/`` folder; ``pip install .`` copies that folder
into the package as ``gluon_distill/experiments`` (``setup.py``). A config path is found as
given (from the current folder), else in the checkout's ``experiments/``, else in the installed
copy, with or without a leading ``experiments/``: ``--config
voc/ssd512_resnet50_v1_to_mobilenet1.0.yaml`` and ``--config
experiments/voc/ssd512_resnet50_v1_to_mobilenet1.0.yaml`` both work from any folder.
"""
import difflib
import glob
import os

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_PARENT = os.path.dirname(PACKAGE_DIR)


def checkout_root():
    """The source checkout this package is imported from (it has ``setup.py`` and
    ``experiments/``), or None for an installed copy."""
    if os.path.isfile(os.path.join(_PARENT, 'setup.py')) and \
            os.path.isdir(os.path.join(_PARENT, 'experiments')):
        return _PARENT
    return None


def experiments_dirs():
    """The experiments folders that exist, the checkout's first, then the installed copy's."""
    found = []
    root = checkout_root()
    for folder in ([os.path.join(root, 'experiments')] if root else []) + \
            [os.path.join(PACKAGE_DIR, 'experiments')]:
        if os.path.isdir(folder) and folder not in found:
            found.append(folder)
    return found


def _strip(path):
    parts = os.path.normpath(path).split(os.sep)
    return os.path.join(*parts[1:]) if len(parts) > 1 and parts[0] == 'experiments' else path


def find_experiment(path, directory=False):
    """``path`` if it exists as given, else its copy under an experiments folder
    (:func:`experiments_dirs`; a leading ``experiments/`` is optional), else None."""
    if not path:
        return None
    test = os.path.isdir if directory else os.path.isfile
    expanded = os.path.expanduser(path)
    if test(expanded):
        return path
    if os.path.isabs(expanded):
        return None
    for folder in experiments_dirs():
        for rel in (_strip(expanded), expanded):
            candidate = os.path.join(folder, rel)
            if test(candidate):
                return candidate
    return None


def experiment_names():
    """Every shipped config as ``voc/NAME.yaml`` (relative to an experiments folder)."""
    names = set()
    for folder in experiments_dirs():
        for path in glob.glob(os.path.join(folder, '**', '*.yaml'), recursive=True):
            names.add(os.path.relpath(path, folder).replace(os.sep, '/'))
    return sorted(names)


def near_configs(path, n=3):
    """Shipped configs whose names are close to ``path`` (a mistyped ``--config``), as one
    would write them (``experiments/`` kept when ``path`` had it)."""
    rel = _strip(os.path.expanduser(path)).replace(os.sep, '/')
    names = experiment_names()
    close = difflib.get_close_matches(rel, names, n=n, cutoff=0.6)
    if not close:  # a right file name in the wrong folder, or a name missing its folder
        base = os.path.basename(rel)
        close = [name for name in names if os.path.basename(name) in
                 difflib.get_close_matches(base, [os.path.basename(x) for x in names], n=n,
                                           cutoff=0.75)][:n]
    prefix = 'experiments/' if rel != path.replace(os.sep, '/') else ''
    # a near file beside the given path (a config of the user's own)
    folder = os.path.dirname(os.path.expanduser(path)) or '.'
    if os.path.isdir(folder):
        beside = [os.path.join(os.path.dirname(path), f) for f in difflib.get_close_matches(
            os.path.basename(path), sorted(os.listdir(folder)), n=n, cutoff=0.6)]
    else:
        beside = []
    return beside + [prefix + name for name in close if prefix + name not in beside]
