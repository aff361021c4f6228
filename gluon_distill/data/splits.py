"""Splits of a VOC-format dataset: split files, GluonCV's ``VOC<year>`` layout, seeded splits.

:func:`_collect_items` turns a root and a split name into the annotation files to load;
every problem (missing split, id without annotation, duplicate id) goes to the report. An id
may be a relative path (``sub/00002``: ``Annotations/sub/00002.xml``, ``JPEGImages/sub/00002.*``);
without split files every ``Annotations/**/*.xml`` is an annotation, its id the path below
``Annotations/`` without ``.xml``.
"""
import glob
import os
import re

import numpy as np

SEEDED_SPLITS = ('train', 'val', 'test', 'trainval', 'all')
# How a split missing from ImageSets/Main is chosen in the error message.
SPLIT_FLAGS = ('choose one with --split (tools/check_dataset.py), --train-split/--val-split '
               '(training and evaluation tools) or data.train_split/data.val_split')


def read_split_file(path):
    """Ids listed in a VOC ``ImageSets/Main`` file (first token of each non-empty line)."""
    with open(path) as f:
        return [line.split()[0] for line in f if line.strip()]


def seeded_split(ids, split, val_fraction=0.2, seed=0):
    """Deterministic split of ``ids`` when a dataset has no ``ImageSets/Main``.

    The sorted ids are permuted with ``np.random.RandomState(seed)``; the first
    ``round(n * val_fraction)`` form ``val`` (also returned for ``test``), the rest ``train``;
    ``trainval``/``all`` are every id. Returns a sorted list.
    """
    if split not in SEEDED_SPLITS:
        raise ValueError('split {!r} unknown; without ImageSets/Main use one of {}'.format(
            split, SEEDED_SPLITS))
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError('val_fraction must be in [0, 1), got {}'.format(val_fraction))
    ids = sorted(ids)
    if split in ('trainval', 'all'):
        return ids
    order = np.random.RandomState(seed).permutation(len(ids))
    num_val = int(round(len(ids) * val_fraction))
    chosen = order[:num_val] if split in ('val', 'test') else order[num_val:]
    return sorted(ids[i] for i in chosen)


def is_gluoncv_layout(root):
    """Whether ``root`` is GluonCV's VOC root (``VOC<year>/`` folders, no ``Annotations/``)."""
    return (not os.path.isdir(os.path.join(root, 'Annotations'))
            and bool(glob.glob(os.path.join(root, 'VOC[0-9][0-9][0-9][0-9]'))))


def _gluoncv_parts(root, split, report):
    """``[(subroot, ids, split_file)]`` for a split like ``2007_trainval+2012_trainval``.

    A part without a year (``trainval``) means that split of every ``VOC<year>`` folder having it.
    """
    parts = []
    for part in split.split('+'):
        part = part.strip()
        match = re.fullmatch(r'(\d{4})_(\w+)', part)
        if match:
            files = [os.path.join(root, 'VOC' + match.group(1), 'ImageSets', 'Main',
                                  match.group(2) + '.txt')]
        else:
            files = sorted(glob.glob(os.path.join(root, 'VOC[0-9]*', 'ImageSets', 'Main', part + '.txt')))
        if not files or not all(os.path.isfile(f) for f in files):
            report.add('missing_split', 'fatal', files[0] if files else root,
                       'split {!r} not found (GluonCV layout expects YEAR_NAME parts joined by '
                       '"+", e.g. 2007_trainval+2012_trainval)'.format(part))
            continue
        for split_file in files:
            subroot = os.path.dirname(os.path.dirname(os.path.dirname(split_file)))
            parts.append((subroot, read_split_file(split_file), split_file))
    return parts


def _voc_root_ids(root, split, val_fraction, seed, report):
    """``(ids, split_file or None)`` for a plain VOC root (``root/Annotations`` ...)."""
    main = os.path.join(root, 'ImageSets', 'Main')
    split_file = os.path.join(main, split + '.txt')
    if os.path.isfile(split_file):
        return read_split_file(split_file), split_file
    all_ids = annotation_ids(root)
    if split == 'all':
        return sorted(all_ids), None
    if os.path.isdir(main):
        available = split_names(root)
        report.add('missing_split', 'fatal', split_file, 'no split file {!r}; available: {}{}'
                   .format(split, ', '.join(available) or 'none',
                           ' ({})'.format(SPLIT_FLAGS) if available else ''))
        return [], None
    if split not in SEEDED_SPLITS:
        report.add('missing_split', 'fatal', root, 'no ImageSets/Main and split {!r} is not one '
                   'of {}'.format(split, ', '.join(SEEDED_SPLITS)))
        return [], None
    ids = seeded_split(all_ids, split, val_fraction, seed)
    report.notes.append('no ImageSets/Main: seeded split {!r} (seed={}, val_fraction={}) of {} '
                        'annotations -> {} ids'.format(split, seed, val_fraction, len(all_ids), len(ids)))
    return ids, None


def split_names(root):
    """Sorted names of the split files in ``root/ImageSets/Main`` (``[]`` without the folder)."""
    main = os.path.join(root, 'ImageSets', 'Main')
    if not os.path.isdir(main):
        return []
    return sorted(os.path.splitext(f)[0] for f in os.listdir(main) if f.endswith('.txt'))


def annotation_ids(root):
    """Ids of every ``root/Annotations/**/*.xml``: the path below ``Annotations/`` without
    ``.xml``, with ``/`` between folders (``000005``, ``sub/000007``)."""
    folder = os.path.join(root, 'Annotations')
    paths = glob.glob(os.path.join(glob.escape(folder), '**', '*.xml'), recursive=True)
    return [os.path.splitext(os.path.relpath(p, folder))[0].replace(os.sep, '/') for p in paths]


def _bad_id(image_id):
    """Why ``image_id`` cannot name a file below ``Annotations/``, or None."""
    if os.path.isabs(image_id):
        return 'is an absolute path'
    if os.pardir in image_id.replace('\\', '/').split('/'):
        return 'goes up a folder (..)'
    return None


def _collect_items(root, split, val_fraction, seed, report):
    """``[(image_id, xml_path, image_dir)]`` for ``split``; problems go to ``report``.

    Ids listed twice are kept once (warning); ids without XML are fatal.
    """
    if is_gluoncv_layout(root):
        parts = _gluoncv_parts(root, split, report)
    elif os.path.isdir(os.path.join(root, 'Annotations')):
        ids, split_file = _voc_root_ids(root, split, val_fraction, seed, report)
        parts = [(root, ids, split_file)]
    else:
        report.add('missing_annotations', 'fatal', root, 'neither Annotations/ nor VOC<year>/ folders '
                   'found: not a VOC root')
        return []
    items, seen = [], set()
    for subroot, ids, split_file in parts:
        for image_id in ids:
            bad = _bad_id(image_id)
            if bad:
                report.add('missing_annotation', 'fatal', split_file or root,
                           'id {!r} {}: ids are paths below Annotations/'.format(image_id, bad))
                continue
            xml_path = os.path.join(subroot, 'Annotations', image_id + '.xml')
            if image_id in seen:
                report.add('duplicate_id', 'warning', split_file or xml_path,
                           'id {!r} listed more than once; kept once'.format(image_id))
                continue
            seen.add(image_id)
            if not os.path.isfile(xml_path):
                report.add('missing_annotation', 'fatal', split_file or xml_path,
                           'id {!r} has no annotation {}'.format(image_id, xml_path))
                continue
            items.append((image_id, xml_path, os.path.join(subroot, 'JPEGImages')))
    return items
