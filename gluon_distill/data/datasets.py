"""From a ``data`` config section to validated training and validation datasets.

Everything is parsed and checked here, before a network is built: a malformed annotation ends
the run with a summary naming the files, never in the middle of training.
"""
import logging
import os
from dataclasses import dataclass
from typing import List, Optional

from .splits import split_names
from .voc import DatasetError, DetectionDataset, is_gluoncv_layout, load_voc_records
from .synthetic import make_synthetic_voc
from .coco import is_coco_data, is_coco_layout, load_coco_split
from .synthetic_coco import make_synthetic_coco


@dataclass
class DataBundle:
    train: DetectionDataset
    val: DetectionDataset
    classes: List[str]
    root: str
    reports: dict
    category_ids: Optional[List[int]] = None   # COCO data: the JSON id of each class


def synthetic_root(syn):
    """The folder the generated dataset of a ``data.synthetic`` section lives in."""
    name = 'seed{}_n{}-{}_px{}-{}'.format(syn.seed, syn.num_train, syn.num_val, syn.min_size,
                                         syn.max_size)
    return os.path.join(os.path.expanduser(syn.dir), name)


def resolve_root(data_cfg):
    """The VOC root to read: the generated one for ``synthetic``, else ``data.root`` once
    :func:`check_root` has recognised it."""
    if data_cfg.root == 'synthetic':
        syn = data_cfg.synthetic
        # format coco: the same root with annotations/instances_{train,val}.json beside it
        make = make_synthetic_coco if getattr(data_cfg, 'format', 'voc') == 'coco' else \
            make_synthetic_voc
        return make(synthetic_root(syn), num_train=syn.num_train,
                    num_val=syn.num_val, size_range=(syn.min_size, syn.max_size), seed=syn.seed)
    if getattr(data_cfg, 'annotations', ''):
        # a COCO file names its own image folder: data.root is not read
        return os.path.dirname(os.path.abspath(os.path.expanduser(data_cfg.annotations)))
    root = os.path.expanduser(data_cfg.root)
    check_root(root)
    return root


ROOT_KINDS = (
    '  a VOC root: Annotations/*.xml and JPEGImages/ (ImageSets/Main/<split>.txt optional), or '
    'GluonCV\'s VOC root with VOC2007/ and VOC2012/ (GluonCV: scripts/datasets/pascal_voc.py, '
    'into ~/.mxnet/datasets/voc)\n'
    '  a COCO root: annotations/instances_<split>.json and its images (GluonCV\'s '
    '~/.mxnet/datasets/coco); any other COCO file: --set data.annotations=FILE.json '
    '--set data.images=DIR\n'
    '  synthetic: --data-root synthetic generates a small VOC dataset\n'
    '(docs/datasets.md)')


def root_kind(root):
    """``'voc'``, ``'gluoncv_voc'``, ``'coco'`` or None: what kind of data root ``root`` is."""
    if os.path.isdir(os.path.join(root, 'Annotations')):
        return 'voc'
    if is_gluoncv_layout(root):
        return 'gluoncv_voc'
    if is_coco_layout(root):
        return 'coco'
    return None


def check_root(root, flag='--data-root'):
    """Raise one :class:`DatasetError` naming the three kinds of data root (VOC, COCO,
    ``synthetic``) when ``root`` does not exist, is empty or is none of them."""
    path = os.path.expanduser(root)
    if not os.path.isdir(path):
        what = 'is a file, not a folder' if os.path.exists(path) else 'does not exist'
    elif root_kind(path):
        return
    else:
        entries = sorted(os.listdir(path))
        if not entries:
            what = 'is empty'
        else:
            shown = [e + ('/' if os.path.isdir(os.path.join(path, e)) else '')
                     for e in entries[:6]]
            what = 'holds {}{} but is no data root'.format(
                ', '.join(shown), ', ...' if len(entries) > 6 else '')
    raise DatasetError('{} {} {}. A data root is one of:\n{}'.format(flag, root, what,
                                                                    ROOT_KINDS))


# The config's default splits name GluonCV's VOC layout; on any other root they mean the
# seeded (or ImageSets/Main) ``train`` and ``val``, or, when ImageSets/Main has no such file,
# the other common pair, ``trainval`` and ``test``.
GLUONCV_DEFAULT_SPLITS = {'2007_trainval+2012_trainval': 'train', '2007_test': 'val'}
PLAIN_ALTERNATIVES = {'train': 'trainval', 'val': 'test'}


def effective_split(root, split):
    """``(split to read, note or None)``: GluonCV's default split names on a root that is not
    GluonCV's VOC layout become ``train``/``val``; when ``ImageSets/Main`` lacks that file, they
    become ``trainval`` (only if there is no ``val.txt`` either: ``trainval`` holds ``val``) and
    ``test``, when those files exist. Any other split name is read as given."""
    if split not in GLUONCV_DEFAULT_SPLITS or is_gluoncv_layout(root):
        return split, None
    plain = GLUONCV_DEFAULT_SPLITS[split]
    available = split_names(root)
    alternative = PLAIN_ALTERNATIVES[plain]
    if available and plain not in available and alternative in available and \
            (plain == 'val' or 'val' not in available):
        return alternative, (
            'split {!r} is the default for GluonCV\'s VOC layout; this plain VOC root\'s '
            'ImageSets/Main has {}.txt and no {}, so split {!r} is used'.format(
                split, alternative, '{}.txt'.format(plain) if plain == 'val' else
                'train.txt nor val.txt', alternative))
    return plain, ('split {!r} is the default for GluonCV\'s VOC layout; this root is a '
                   'plain VOC root, so split {!r} is used'.format(split, plain))


def load_split(root, split, classes, data_cfg, progress=True, keep_crowd=True):
    """``(records, classes, report)`` of one split, with the ``data`` section's split settings.

    COCO data (:func:`~gluon_distill.data.coco.is_coco_data`) is read by
    :func:`~gluon_distill.data.coco.load_coco_split`, which fills ``data_cfg.category_ids``;
    ``keep_crowd=False`` (training) leaves its crowd regions out.
    """
    if is_coco_data(data_cfg, root):
        try:
            return load_coco_split(data_cfg, root, split, classes, progress, keep_crowd)
        except (FileNotFoundError, ValueError) as e:
            raise DatasetError(str(e)) from None
    split, note = effective_split(root, split)
    records, classes, report = load_voc_records(
        root, split, classes, val_fraction=data_cfg.val_fraction, seed=data_cfg.split_seed,
        check_images=data_cfg.check_images, progress=progress,
        on_bad_image=getattr(data_cfg, 'on_bad_image', 'stop'))
    if note:
        report.notes.insert(0, note)
    return records, classes, report


def build_datasets(data_cfg, logger=None, need_train=True, progress=True):
    """Load, validate and wrap the training and validation splits.

    Classes come from ``data.classes`` or are discovered (sorted) from the training split.
    Images without objects are dropped from training (they give SSD no positive target) and
    kept for validation. On a plain VOC root the default splits (GluonCV's
    ``2007_trainval+2012_trainval``/``2007_test``) mean ``train``/``val``, or
    ``trainval``/``test`` when only those split files exist (:func:`effective_split`). On
    COCO data crowd regions are left out of training and ``data_cfg.category_ids`` is filled
    (``model.json`` records it). Raises
    :class:`DatasetError` with the summary of every fatal problem, an empty split included.
    """
    logger = logger or logging.getLogger('gluon_distill')
    root = resolve_root(data_cfg)
    classes = list(data_cfg.classes) if data_cfg.classes else None
    reports = {}
    train = None
    if need_train:
        records, classes, report = load_split(root, data_cfg.train_split, classes, data_cfg,
                                              progress, keep_crowd=False)
        reports['train'] = report
        kept = [r for r in records if len(r.labels)]
        if len(kept) < len(records):
            logger.info('train: %d images without objects left out of training',
                        len(records) - len(kept))
        train = DetectionDataset(kept, classes)
    records, classes, report = load_split(root, data_cfg.val_split, classes, data_cfg, progress)
    reports['val'] = report
    val = DetectionDataset(records, classes)
    fatal = [(split, r) for split, r in reports.items() if r.fatal()]
    for split, report in reports.items():
        logger.info('%s split %r of %s:\n%s', split,
                    data_cfg.train_split if split == 'train' else data_cfg.val_split, root,
                    report.summary())
    if fatal:
        raise DatasetError('the dataset has fatal problems, nothing was trained:\n' + '\n'.join(
            '[{}] {}'.format(split, r.summary()) for split, r in fatal))
    if need_train and not len(train):
        raise DatasetError('split {!r} of {} has no image with objects'.format(
            data_cfg.train_split, root))
    return DataBundle(train, val, list(classes), root, reports,
                      getattr(data_cfg, 'category_ids', None) if is_coco_data(data_cfg, root)
                      else None)
