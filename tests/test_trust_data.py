"""Issue 8, items 2-5 and 12 on the data side, with real files written into ``tmp_path``:
one decoder (stored pixels) everywhere, the image an annotation belongs to, truncated JPEGs
judged by OpenCV, ``data.on_bad_image``, classes without objects, empty splits, and the
default splits on a plain VOC root.
"""
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

import gluon_distill  # noqa: F401
import mxnet as mx

from conftest import REPO, SHARED_RACCOON
from gluon_distill.config import DataConfig
from gluon_distill.data.datasets import build_datasets, load_split
from gluon_distill.data.images import jpeg_truncation, read_image
from gluon_distill.data.loader import NumpyImages
from gluon_distill.data.voc import DatasetError, DetectionDataset, load_voc_records


def picture(width, height, seed=0):
    """A smooth RGB picture (compresses like a photo, every row different)."""
    rng = np.random.RandomState(seed)
    small = rng.randint(0, 256, (max(height // 8, 2), max(width // 8, 2), 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR))


def save_jpeg(path, width=64, height=48, seed=0, orientation=None):
    kwargs = {'quality': 92}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs['exif'] = exif
    Image.fromarray(picture(width, height, seed)).save(str(path), **kwargs)
    return path


def xml(filename, objects=(('cat', (2, 2, 30, 20)),), size=(64, 48)):
    parts = ['<annotation>', '<filename>{}</filename>'.format(filename),
             '<size><width>{}</width><height>{}</height><depth>3</depth></size>'.format(*size)]
    for name, box in objects:
        parts.append('<object><name>{}</name><difficult>0</difficult><bndbox><xmin>{}</xmin>'
                     '<ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>'.format(
                         name, *box))
    return ''.join(parts + ['</annotation>'])


def voc_root(root, annotations, images=()):
    """``annotations``: id -> XML text; ``images``: file names to write as 64x48 JPEGs."""
    (root / 'Annotations').mkdir(parents=True, exist_ok=True)
    (root / 'JPEGImages').mkdir(exist_ok=True)
    for image_id, text in annotations.items():
        (root / 'Annotations' / (image_id + '.xml')).write_text(text)
    for i, name in enumerate(images):
        save_jpeg(root / 'JPEGImages' / name, seed=i + 1)
    return root


def problems(report, kind):
    return [p for p in report.problems if p.kind == kind]


def check(*args):
    return subprocess.run([sys.executable, str(REPO / 'tools' / 'check_dataset.py'),
                           *map(str, args)], capture_output=True, text=True, timeout=120)


# ----------------------------------------------------------------------------- 2: one decoder

def test_exif_rotated_photo_gives_stored_pixels_in_training_eval_and_detect(tmp_path):
    root = voc_root(tmp_path / 'voc', {'r': xml('r.jpg', size=(64, 48))})
    path = save_jpeg(root / 'JPEGImages' / 'r.jpg', 64, 48, orientation=6)
    assert cv2.imread(str(path)).shape == (64, 48, 3)       # what training used to see
    stored = np.asarray(Image.open(str(path)).convert('RGB'))  # Pillow does not rotate
    assert stored.shape == (48, 64, 3)

    records, classes, report = load_voc_records(root, 'all')
    assert (records[0].width, records[0].height) == (64, 48) and not report.fatal()
    exif, = problems(report, 'exif_orientation')
    assert exif.severity == 'warning' and exif.path == str(path) and 'orientation 6' in exif.message

    dataset = DetectionDataset(records, classes)
    training = NumpyImages(dataset)[0][0]                     # the default ('fast') pipeline
    evaluation = dataset[0][0].asnumpy()                      # gluoncv pipeline, validation, eval
    from gluon_distill.detect import load_image
    _, detected = load_image(str(path), 64, [0.5] * 3, [0.25] * 3)
    for pixels in (training, evaluation, detected, read_image(path)):
        assert pixels.dtype == np.uint8
        np.testing.assert_array_equal(pixels, stored)
    res = check(root, '--split', 'all', '--max-lines', '0')   # named even beyond --max-lines
    assert res.returncode == 0
    assert res.stdout.splitlines()[-2:] == [
        'images with an EXIF orientation tag, used as stored (not rotated): 1', '  ' + str(path)]


def test_read_image_equals_previous_decoders_on_a_normal_jpeg(tmp_path):
    path = save_jpeg(tmp_path / 'n.jpg', 75, 50)
    new = read_image(path)
    np.testing.assert_array_equal(new, cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1])
    np.testing.assert_array_equal(new, mx.image.imread(str(path)).asnumpy())   # old eval path
    assert new.flags['C_CONTIGUOUS'] and new.shape == (50, 75, 3)
    gray = tmp_path / 'g.png'
    Image.fromarray(picture(20, 10)[:, :, 0]).save(str(gray))
    np.testing.assert_array_equal(read_image(gray), mx.image.imread(str(gray)).asnumpy())


# ----------------------------------------------------------------------------- 3: which image

def test_image_is_the_annotation_id_and_filename_is_a_fallback(tmp_path):
    root = voc_root(tmp_path / 'voc', {
        'a': xml('b.jpg', [('cat', (2, 2, 30, 20))]),    # names another existing image
        'b': xml('b.jpg', [('cat', (10, 10, 60, 40))]),
        'c': xml('b.jpg', [('cat', (5, 5, 20, 20))]),    # no c.jpg: falls back to b.jpg
    }, images=['a.jpg', 'b.jpg'])
    records, _, report = load_voc_records(root, 'all')
    by_id = {r.image_id: r.image_path for r in records}
    assert by_id['a'] == str(root / 'JPEGImages' / 'a.jpg')
    assert by_id['b'] == by_id['c'] == str(root / 'JPEGImages' / 'b.jpg')
    mismatch = {p.path.split('/')[-1]: p.message for p in problems(report, 'filename_mismatch')}
    assert set(mismatch) == {'a.xml', 'c.xml'}
    assert "'b.jpg'" in mismatch['a.xml'] and 'a.jpg' in mismatch['a.xml']
    assert 'c.jpg' in mismatch['c.xml'] and 'b.jpg' in mismatch['c.xml']
    shared, = problems(report, 'image_shared')
    assert shared.severity == 'warning' and shared.path.endswith('b.jpg')
    assert 'b.xml' in shared.message and 'c.xml' in shared.message
    assert not report.fatal()


# ----------------------------------------------------------------------------- 4: truncated JPEGs

def write_cut(path, cut, width=200, height=150):
    full = save_jpeg(path.with_name('full_' + path.name), width, height)
    data = full.read_bytes()
    path.write_bytes(data[:cut] if cut > 0 else data[:len(data) + cut])
    return path


def test_jpeg_missing_its_last_20_bytes_is_a_warning_and_trains(tmp_path):
    root = voc_root(tmp_path / 'voc', {'t': xml('t.jpg', size=(200, 150))})
    path = write_cut(root / 'JPEGImages' / 't.jpg', -20)
    with pytest.raises(OSError):                               # Pillow's strict mode refuses it
        from PIL import ImageFile
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        Image.open(str(path)).load()
    assert jpeg_truncation(path.read_bytes()) is not None
    records, classes, report = load_voc_records(root, 'all')
    assert len(records) == 1 and not report.fatal()
    warning, = problems(report, 'truncated_jpeg')
    assert warning.severity == 'warning' and warning.path == str(path)
    img = NumpyImages(DetectionDataset(records, classes))[0][0]
    assert img.shape == (150, 200, 3)
    res = check(root, '--split', 'all')
    assert res.returncode == 0 and 't.jpg' in res.stdout and 'truncated_jpeg' in res.stdout


def test_undecodable_and_mostly_missing_jpegs_stay_fatal_or_are_skipped(tmp_path):
    root = voc_root(tmp_path / 'voc', {i: xml(i + '.jpg', size=(200, 150))
                                       for i in ('good', 'half', 'head')}, images=['good.jpg'])
    half = write_cut(root / 'JPEGImages' / 'half.jpg', -1)
    half.write_bytes(half.read_bytes()[:len(half.read_bytes()) // 2])
    write_cut(root / 'JPEGImages' / 'head.jpg', 400)           # header only: OpenCV gives up
    _, _, report = load_voc_records(root, 'all')
    fatal = {p.path.split('/')[-1]: p for p in report.fatal()}
    assert set(fatal) == {'half.jpg', 'head.jpg'}
    assert fatal['half.jpg'].kind == 'truncated_image'
    assert 'mostly missing' in fatal['half.jpg'].message
    assert fatal['head.jpg'].kind == 'corrupt_image'

    records, _, report = load_voc_records(root, 'all', on_bad_image='skip')
    assert [r.image_id for r in records] == ['good'] and not report.fatal()
    assert {p.path.split('/')[-1] for p in report.problems if p.severity == 'skipped'} == {
        'half.jpg', 'head.jpg'}
    summary = report.summary()
    assert '2 skipped' in summary and 'half.jpg' in summary and 'head.jpg' in summary

    res = check(root, '--split', 'all')
    assert res.returncode == 1 and 'half.jpg' in res.stdout
    res = check(root, '--split', 'all', '--on-bad-image', 'skip')
    assert res.returncode == 0 and 'half.jpg' in res.stdout and 'left out' in res.stdout


def test_on_bad_image_skip_through_the_data_config(tmp_path):
    ids = ['g{}'.format(i) for i in range(6)]
    root = voc_root(tmp_path / 'voc', {i: xml(i + '.jpg') for i in ids + ['gone']},
                    images=[i + '.jpg' for i in ids])
    cfg = DataConfig(root=str(root), train_split='all', val_split='all', check_images=True)
    with pytest.raises(DatasetError, match='gone'):
        build_datasets(cfg, progress=False)
    cfg.on_bad_image = 'skip'
    data = build_datasets(cfg, progress=False)
    assert len(data.train) == 6 and data.reports['train'].counts['missing_image'] == 1
    cfg.on_bad_image = 'ignore'
    with pytest.raises(ValueError, match='on_bad_image'):
        build_datasets(cfg, progress=False)


# ----------------------------------------------------------------------------- 5: classes, splits

def test_class_without_objects_is_a_warning(tmp_path):
    root = voc_root(tmp_path / 'voc', {'a': xml('a.jpg')}, images=['a.jpg'])
    _, _, report = load_voc_records(root, 'all', ['cat', 'dog'])
    warning, = problems(report, 'class_without_objects')
    assert warning.severity == 'warning' and "'dog'" in warning.message
    assert 'excludes it from mAP' in warning.message


@pytest.mark.parametrize('case', ['no annotations', 'empty seeded split'])
def test_empty_dataset_exits_1_and_stops_training(tmp_path, case):
    if case == 'no annotations':
        root = voc_root(tmp_path / 'voc', {})
        split = 'train'
    else:   # 2 annotations, val_fraction 0.2: round(0.4) = 0 validation ids
        root = voc_root(tmp_path / 'voc', {'a': xml('a.jpg'), 'b': xml('b.jpg')},
                        images=['a.jpg', 'b.jpg'])
        split = 'val'
    res = check(root, '--split', split)
    assert res.returncode == 1
    assert "split '{}' has no usable annotation (0 ids listed)".format(split) in res.stdout
    cfg = DataConfig(root=str(root), train_split='train', val_split='val')
    with pytest.raises(DatasetError, match='no usable annotation'):
        build_datasets(cfg, progress=False)


# ----------------------------------------------------------------------------- 12: default splits

def test_default_splits_on_a_plain_voc_root_are_seeded_train_and_val(tmp_path):
    ids = ['p{:02d}'.format(i) for i in range(10)]
    root = voc_root(tmp_path / 'voc', {i: xml(i + '.jpg') for i in ids},
                    images=[i + '.jpg' for i in ids])
    cfg = DataConfig(root=str(root))
    assert cfg.train_split == '2007_trainval+2012_trainval' and cfg.val_split == '2007_test'
    data = build_datasets(cfg, progress=False)
    train = {r.image_id for r in data.train.records}
    val = {r.image_id for r in data.val.records}
    assert len(train) == 8 and len(val) == 2 and train | val == set(ids)
    assert "split 'train' is used" in data.reports['train'].summary()
    records, _, report = load_split(str(root), '2007_test', None, cfg, progress=False)
    assert {r.image_id for r in records} == val and "split 'val' is used" in report.summary()


# ----------------------------------------------------------------------------- real photographs

def test_raccoon_default_splits_and_check_dataset():
    if not SHARED_RACCOON.is_dir():
        pytest.skip('raccoon data not found at {}'.format(SHARED_RACCOON))
    data = build_datasets(DataConfig(root=str(SHARED_RACCOON), check_images=False),
                          progress=False)
    assert (len(data.train), len(data.val), data.classes) == (160, 40, ['raccoon'])
    res = check(SHARED_RACCOON, '--split', 'all')
    assert res.returncode == 0, res.stdout
    assert '200 images, 217 objects' in res.stdout and '0 fatal' in res.stdout
