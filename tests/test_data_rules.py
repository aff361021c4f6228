"""The rules the data checks apply, with real files written into ``tmp_path``: duplicate
objects (VOC and COCO), GluonCV's lower-cased class names said once and the files' spelling
kept, images and ids in subfolders, truncated files named by their format (PNG, progressive
JPEG), libjpeg's "Premature end of JPEG file" kept out of every tool's output, a COCO split
counting its own ``missing_iscrowd``, and the default splits on a ``trainval``/``test`` root.
"""
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from test_coco import coco_dataset, gt_predictions, our_ap, write_coco
from test_trust_data import check, picture, problems, save_jpeg, voc_root, xml
from gluon_distill.config import DataConfig
from gluon_distill.data.coco import load_coco_records
from gluon_distill.data.convert import coco_to_voc, voc_to_coco
from gluon_distill.data.datasets import build_datasets, effective_split
from gluon_distill.data.images import grey_tail_rows, read_image
from gluon_distill.data.voc import DatasetError, load_voc_records
from gluon_distill.evaluation.voc07 import VOC07Evaluator


def split_files(root, **splits):
    main = root / 'ImageSets' / 'Main'
    main.mkdir(parents=True, exist_ok=True)
    for name, ids in splits.items():
        (main / (name + '.txt')).write_text(''.join(i + '\n' for i in ids))
    return root


# ----------------------------------------------------------------------------- duplicates

OBJECTS = {'d{}'.format(i): [('cat', (2 + i, 2, 30, 20)), ('dog', (30, 10 + i, 60, 45))]
           for i in range(4)}


def voc07_map(records, classes, predictions):
    """VOC07 mAP of ``predictions`` (id -> [(class, 1-based box)]) against ``records``."""
    ev = VOC07Evaluator(classes)
    for record in records:
        objects = predictions[record.image_id]
        ev.process([record.image_id], [np.array([b for _, b in objects], float) - 1.0],
                   [np.array([classes.index(c) for c, _ in objects])],
                   [np.ones(len(objects))], [record.boxes], [record.labels],
                   [record.difficult])
    return ev.evaluate()['mAP']


def test_duplicate_voc_objects_are_reported_dropped_and_do_not_halve_map(tmp_path):
    doubled = {i: xml(i + '.jpg', objects + objects) for i, objects in OBJECTS.items()}
    root = voc_root(tmp_path / 'voc', doubled, images=[i + '.jpg' for i in OBJECTS])
    records, classes, report = load_voc_records(root, 'all')
    assert not report.fatal()
    found = problems(report, 'duplicate_object')
    assert len(found) == 8 and {p.severity for p in found} == {'fixed'}
    first = [p for p in found if p.path.endswith('d0.xml')]
    assert [p.message for p in first] == [
        'object 3 (cat): same class and box (2, 2, 30, 20) as object 1; dropped',
        'object 4 (dog): same class and box (30, 10, 60, 45) as object 2; dropped']
    assert [len(r.boxes) for r in records] == [2, 2, 2, 2]
    # the perfect detector scores 1, not the ~0.5 of a split whose every object counts twice
    assert voc07_map(records, classes, OBJECTS) == 1.0
    res = check(root, '--split', 'all')
    assert res.returncode == 0 and re.search(r'duplicate_object +8 +\(fixed\)', res.stdout)


def test_duplicate_with_another_difficult_flag_keeps_the_first_and_says_so(tmp_path):
    text = xml('a.jpg', [('cat', (2, 2, 30, 20))] * 2).replace(
        '<difficult>0</difficult>', '<difficult>1</difficult>', 1)
    root = voc_root(tmp_path / 'voc', {'a': text}, images=['a.jpg'])
    records, _, report = load_voc_records(root, 'all')
    duplicate, = problems(report, 'duplicate_object')
    assert "its <difficult> is '0', object 1's '1': object 1 kept" in duplicate.message
    assert records[0].difficult.tolist() == [True]


def test_duplicate_coco_annotations_are_dropped_from_records_and_coco_ap(tmp_path):
    data = coco_dataset()
    copies = [dict(ann, id=100 + ann['id']) for ann in data['annotations']]
    data['annotations'] += copies
    path, images = write_coco(tmp_path, data)
    records, _, _, report = load_coco_records(path, images)
    found = problems(report, 'duplicate_object')
    assert len(found) == len(copies) and not report.fatal()
    assert {p.path for p in found} == {path} and {p.severity for p in found} == {'fixed'}
    assert ('annotation id 101 (image id 1): same category, bbox [10, 10, 30, 20] and iscrowd '
            'as annotation id 1 (image id 1); dropped') in [p.message for p in found]
    (tmp_path / 'plain').mkdir()
    plain, _, _, _ = load_coco_records(*write_coco(tmp_path / 'plain'))
    assert len(records) == len(plain)
    for ours, reference in zip(records, plain):
        np.testing.assert_array_equal(ours.boxes, reference.boxes)
        np.testing.assert_array_equal(ours.labels, reference.labels)
    result, _ = our_ap(path, gt_predictions(coco_dataset()))   # one detection per object
    assert result['AP'] == 1.0


def test_coco_missing_iscrowd_is_counted_per_split(tmp_path):
    data = coco_dataset()
    for ann in data['annotations']:
        del ann['iscrowd']
    path, images = write_coco(tmp_path, data)
    counts = {}
    for split in ('train', 'val'):
        records, _, _, report = load_coco_records(path, images, split, val_fraction=0.34)
        ids = {r.image_id for r in records}
        own = [a for a in data['annotations'] if str(a['image_id']) in ids]
        assert 0 < len(own) < len(data['annotations'])
        assert report.counts['missing_iscrowd'] == len(own), split
        counts[split] = len(own)
    assert sum(counts.values()) == len(data['annotations'])


# ----------------------------------------------------------------------------- class names

def test_lower_casing_is_said_once_and_the_files_spelling_kept(tmp_path):
    root = voc_root(tmp_path / 'voc', {
        'a': xml('a.jpg', [('RBC', (2, 2, 20, 20)), ('Red Kangaroo', (20, 20, 60, 40))]),
        'b': xml('b.jpg', [('RBC', (5, 5, 25, 25))])}, images=['a.jpg', 'b.jpg'])
    records, classes, report = load_voc_records(root, 'all')
    assert classes == ['rbc', 'red kangaroo'] and not report.problems   # GluonCV's rule
    summary = report.summary()
    said = [line for line in summary.splitlines() if 'lower-cased' in line]
    assert len(said) == 1
    assert "'RBC' -> 'rbc'" in said[0] and "'Red Kangaroo' -> 'red kangaroo'" in said[0]
    assert 'classes discovered from annotations (2): RBC, Red Kangaroo' in summary
    assert re.search(r'^  RBC +2$', summary, re.M)
    assert re.search(r'^  Red Kangaroo +1$', summary, re.M)
    out = tmp_path / 'instances.json'
    res = subprocess.run([sys.executable, str(REPO / 'tools' / 'convert.py'), 'voc2coco',
                          '--voc-root', str(root), '--split', 'all', '--out', str(out)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    written = json.loads(out.read_text())
    assert [c['name'] for c in written['categories']] == ['RBC', 'Red Kangaroo']
    _, back_images, _, _ = voc_to_coco(root, 'all', str(tmp_path / 'again.json'))
    back, _, _ = coco_to_voc(str(out), back_images, str(tmp_path / 'back'))
    names = {o.text for x in (tmp_path / 'back' / 'Annotations').iterdir()
             for o in ET.parse(str(x)).getroot().iter('name')}
    assert names == {'RBC', 'Red Kangaroo'}
    lower = voc_root(tmp_path / 'lower', {'a': xml('a.jpg')}, images=['a.jpg'])
    assert 'lower-cased' not in load_voc_records(lower, 'all')[2].summary()


# ----------------------------------------------------------------------------- subfolders

def test_filenames_and_ids_with_subfolders_are_honoured_and_quoted_exactly(tmp_path):
    (tmp_path / 'voc' / 'Annotations' / 'sub').mkdir(parents=True)
    root = voc_root(tmp_path / 'voc', {'00001': xml('sub/00001.jpg'),
                                       'sub/00002': xml('00002.jpg'),
                                       'sub/00003': xml('sub/00003.jpg')})
    (root / 'JPEGImages' / 'sub').mkdir()
    for i, name in enumerate(('sub/00001.jpg', 'sub/00002.jpg')):
        save_jpeg(root / 'JPEGImages' / name, seed=i)
    split_files(root, train=['00001', 'sub/00002', 'sub/00003', '../00001'])
    records, _, report = load_voc_records(root, 'train')
    assert {r.image_id: r.image_path for r in records} == {
        '00001': str(root / 'JPEGImages' / 'sub' / '00001.jpg'),
        'sub/00002': str(root / 'JPEGImages' / 'sub' / '00002.jpg')}
    mismatch, = problems(report, 'filename_mismatch')
    assert mismatch.path.endswith('00001.xml') and "<filename> 'sub/00001.jpg'" in mismatch.message
    missing, = problems(report, 'missing_image')
    assert missing.path == str(root / 'Annotations' / 'sub' / '00003.xml')
    assert "no image sub/00003.jpg/.png/.jpeg (nor <filename> 'sub/00003.jpg')" in missing.message
    bad_id, = problems(report, 'missing_annotation')
    assert "'../00001' goes up a folder" in bad_id.message
    # without split files every Annotations/**/*.xml is an annotation
    (root / 'ImageSets' / 'Main' / 'train.txt').unlink()
    (root / 'ImageSets' / 'Main').rmdir()
    records, _, report = load_voc_records(root, 'all', on_bad_image='skip')
    assert sorted(r.image_id for r in records) == ['00001', 'sub/00002']
    assert report.counts['missing_image'] == 1 and not report.fatal()


# ----------------------------------------------------------------------------- truncated files

def test_truncated_png_and_non_image_are_not_called_truncated_jpegs(tmp_path):
    root = voc_root(tmp_path / 'voc', {'p': xml('p.png', size=(200, 150)),
                                       'g': xml('g.jpg')})
    full = tmp_path / 'full.png'
    Image.fromarray(picture(200, 150)).save(str(full))
    data = full.read_bytes()
    (root / 'JPEGImages' / 'p.png').write_bytes(data[:len(data) // 2])
    (root / 'JPEGImages' / 'g.jpg').write_bytes(b'GIF is not what this is')
    _, _, report = load_voc_records(root, 'all')
    corrupt = {p.path.split('/')[-1]: p.message for p in problems(report, 'corrupt_image')}
    assert set(corrupt) == {'p.png', 'g.jpg'}
    assert 'truncated PNG: ends inside its IDAT chunk' in corrupt['p.png']
    assert 'JPEG' not in corrupt['p.png']
    assert 'truncated' not in corrupt['g.jpg']
    assert "first bytes b'GIF is n' are not those of a JPEG, PNG or BMP file" in corrupt['g.jpg']


def test_progressive_jpeg_with_lost_scans_is_a_bad_image_not_0_percent_grey(tmp_path):
    from gluon_distill.data.images import jpeg_stream, lost_progressive_detail
    full = tmp_path / 'full.jpg'
    Image.fromarray(picture(200, 150)).save(str(full), quality=92, progressive=True)
    data = full.read_bytes()
    assert jpeg_stream(data).progressive and lost_progressive_detail(jpeg_stream(data)) is None
    root = voc_root(tmp_path / 'voc', {i: xml(i + '.jpg', size=(200, 150))
                                       for i in ('tenth', 'tail')})
    tenth = root / 'JPEGImages' / 'tenth.jpg'
    tenth.write_bytes(data[:len(data) // 10])
    (root / 'JPEGImages' / 'tail.jpg').write_bytes(data[:-20])
    # what the old check saw: OpenCV decodes the tenth blurred, without a grey row
    assert grey_tail_rows(read_image(tenth)) == 0
    _, _, report = load_voc_records(root, 'all')
    bad, = report.fatal()
    assert bad.kind == 'truncated_image' and bad.path == str(tenth)
    assert bad.message.startswith('truncated progressive JPEG (ends inside scan data')
    assert 'never received Y coefficients' in bad.message and 'blurred' in bad.message
    warning, = problems(report, 'truncated_jpeg')
    assert warning.path.endswith('tail.jpg') and 'only refinement scans are lost' in warning.message
    records, _, report = load_voc_records(root, 'all', on_bad_image='skip')
    assert [r.image_id for r in records] == ['tail'] and report.counts['truncated_image'] == 1


def test_libjpeg_premature_end_is_reported_once_not_printed(tmp_path):
    root = voc_root(tmp_path / 'voc', {'t': xml('t.jpg', size=(200, 150))})
    full = save_jpeg(tmp_path / 'full.jpg', 200, 150)
    cut = root / 'JPEGImages' / 't.jpg'
    cut.write_bytes(full.read_bytes()[:-20])
    np.testing.assert_array_equal(read_image(cut), cv2.imread(str(cut))[:, :, ::-1])
    script = ('import os, sys, cv2\n'
              'from gluon_distill.data.images import _without_libjpeg_warning, read_image\n'
              'for _ in range(3):\n'
              '    read_image(sys.argv[1])\n'
              'with _without_libjpeg_warning():\n'
              '    os.write(2, b"other output\\n")\n'
              '    cv2.imread(sys.argv[1])\n')
    res = subprocess.run([sys.executable, '-c', script, str(cut)], capture_output=True,
                         text=True, cwd=str(REPO), timeout=120)
    assert res.returncode == 0, res.stderr
    assert 'Premature end' not in res.stderr and res.stderr == 'other output\n'
    res = check(root, '--split', 'all')
    assert res.returncode == 0 and 'Premature end' not in res.stderr
    assert res.stdout.count('Premature end of JPEG file') == 1    # in the summary, once
    assert len(re.findall(r'\[warning\] .*t\.jpg: truncated JPEG', res.stdout)) == 1


# ----------------------------------------------------------------------------- default splits

def test_default_splits_on_a_trainval_test_root(tmp_path):
    ids = ['t{:02d}'.format(i) for i in range(6)]
    root = voc_root(tmp_path / 'voc', {i: xml(i + '.jpg') for i in ids},
                    images=[i + '.jpg' for i in ids])
    split_files(root, trainval=ids[:4], test=ids[4:])
    data = build_datasets(DataConfig(root=str(root)), progress=False)
    assert sorted(r.image_id for r in data.train.records) == ids[:4]
    assert sorted(r.image_id for r in data.val.records) == ids[4:]
    assert ("has trainval.txt and no train.txt nor val.txt, so split 'trainval' is used"
            in data.reports['train'].summary())
    assert "has test.txt and no val.txt, so split 'test' is used" in data.reports['val'].summary()
    # trainval holds val: with a val.txt it is not taken for training; the error says how
    split_files(root, val=ids[4:])
    with pytest.raises(DatasetError) as err:
        build_datasets(DataConfig(root=str(root)), progress=False)
    assert "no split file 'train'; available: test, trainval, val" in str(err.value)
    assert '--train-split/--val-split' in str(err.value)
    split_files(root, train=ids[:4])
    (root / 'ImageSets' / 'Main' / 'val.txt').unlink()
    assert effective_split(str(root), '2007_trainval+2012_trainval')[0] == 'train'
    assert effective_split(str(root), '2007_test')[0] == 'test'
    assert effective_split(str(root), 'val') == ('val', None)    # a split asked for by name
