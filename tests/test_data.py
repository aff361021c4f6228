"""Tests of VOC loading/validation, the synthetic generator and tools/check_dataset.py.

Every malformed case is a real file written into ``tmp_path``.
"""
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the package is used from the checkout, not installed
    sys.path.insert(0, str(REPO))

from gluon_distill.data.records import Record  # noqa: E402
from gluon_distill.data.synthetic import SYNTHETIC_CLASSES, make_synthetic_voc  # noqa: E402
from gluon_distill.data.voc import (  # noqa: E402
    VOC_CLASSES, DatasetError, DetectionDataset, ValidationReport, discover_classes,
    load_voc_records, parse_voc_annotation, seeded_split)

RACCOON = Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'raccoon'


# ----------------------------------------------------------------------------- helpers

def write_image(path, width=50, height=40, mode='RGB'):
    """A JPEG (or PNG by extension) of the given size and PIL mode with some structure."""
    rng = np.random.RandomState(0)
    rgb = Image.fromarray(rng.randint(0, 256, (height, width, 3)).astype(np.uint8))
    rgb.convert(mode).save(str(path), quality=95)
    return path


def voc_xml(filename, objects, size=(50, 40), with_size=True, with_difficult=True):
    """VOC annotation text; ``objects`` is ``[(name, (xmin, ymin, xmax, ymax) 1-based)]``."""
    parts = ['<annotation>', '<filename>{}</filename>'.format(filename)]
    if with_size:
        parts.append('<size><width>{}</width><height>{}</height><depth>3</depth></size>'.format(*size))
    for name, box in objects:
        parts.append('<object><name>{}</name>'.format(name))
        if with_difficult:
            parts.append('<difficult>0</difficult>')
        parts.append('<bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox>'
                     '</object>'.format(*box))
    parts.append('</annotation>')
    return '\n'.join(parts)


def make_root(root, items, split_files=None):
    """A plain VOC root. ``items`` maps id -> (xml text or None, image kwargs or None)."""
    (root / 'Annotations').mkdir(parents=True, exist_ok=True)
    (root / 'JPEGImages').mkdir(exist_ok=True)
    for image_id, (xml, image) in items.items():
        if xml is not None:
            (root / 'Annotations' / (image_id + '.xml')).write_text(xml)
        if image is not None:
            write_image(root / 'JPEGImages' / (image_id + '.jpg'), **image)
    if split_files is not None:
        main = root / 'ImageSets' / 'Main'
        main.mkdir(parents=True, exist_ok=True)
        for name, ids in split_files.items():
            (main / (name + '.txt')).write_text(''.join(i + '\n' for i in ids))
    return root


def parse_one(tmp_path, xml, image=None, classes=('dog', 'cat'), image_name='a.jpg'):
    """Write one XML (+ image) and parse it; returns ``(record, report)``."""
    (tmp_path / 'a.xml').write_text(xml)
    if image is not None:
        write_image(tmp_path / image_name, **image)
    report = ValidationReport()
    record = parse_voc_annotation(str(tmp_path / 'a.xml'), list(classes), str(tmp_path), report)
    return record, report


def kinds(report, severity=None):
    return {p.kind for p in report.problems if severity is None or p.severity == severity}


# ----------------------------------------------------------------------------- single files

def test_valid_annotation_gives_0_based_boxes(tmp_path):
    record, report = parse_one(tmp_path, voc_xml('a.jpg', [('cat', (11, 6, 30, 25))]), {})
    assert report.problems == []
    assert record.image_id == 'a' and (record.width, record.height) == (50, 40)
    np.testing.assert_array_equal(record.boxes, [[10, 5, 29, 24]])
    assert record.labels.tolist() == [1] and record.difficult.tolist() == [False]
    assert record.boxes.dtype == np.float32 and record.labels.dtype == np.int32


def test_malformed_xml_is_fatal(tmp_path):
    record, report = parse_one(tmp_path, '<annotation><filename>a.jpg</filename><object>', {})
    assert record is None
    assert report.counts['malformed_xml'] == 1
    assert report.fatal()[0].path.endswith('a.xml')


def test_missing_image_is_fatal_and_named(tmp_path):
    record, report = parse_one(tmp_path, voc_xml('nowhere.jpg', [('cat', (1, 1, 10, 10))]))
    assert record is None
    assert kinds(report, 'fatal') == {'missing_image'}
    assert 'nowhere.jpg' in report.fatal()[0].message


def test_half_missing_jpeg_is_fatal(tmp_path):
    image = write_image(tmp_path / 'full.jpg', 200, 150)
    data = image.read_bytes()
    (tmp_path / 'a.jpg').write_bytes(data[:len(data) // 2])
    Image.open(tmp_path / 'a.jpg').verify()  # the header alone looks fine
    record, report = parse_one(tmp_path, voc_xml('a.jpg', [('cat', (1, 1, 10, 10))], (200, 150)))
    assert record is None
    assert report.counts['truncated_image'] == 1
    message = report.fatal()[0].message
    assert 'mostly missing' in message and report.fatal()[0].path.endswith('a.jpg')


def test_garbage_image_is_fatal(tmp_path):
    (tmp_path / 'a.jpg').write_bytes(b'this is not an image at all')
    record, report = parse_one(tmp_path, voc_xml('a.jpg', [('cat', (1, 1, 10, 10))]))
    assert record is None and kinds(report, 'fatal') == {'corrupt_image'}


def test_size_mismatch_uses_real_size(tmp_path):
    xml = voc_xml('a.jpg', [('cat', (1, 1, 10, 10))], size=(500, 400))
    record, report = parse_one(tmp_path, xml, {'width': 50, 'height': 40})
    assert (record.width, record.height) == (50, 40)
    assert report.counts['size_mismatch'] == 1 and not report.fatal()
    assert '500x400' in report.problems[0].message and '50x40' in report.problems[0].message


def test_box_outside_image_is_clipped(tmp_path):
    xml = voc_xml('a.jpg', [('cat', (-3, 5, 60, 45)), ('dog', (2, 2, 20, 20))])
    record, report = parse_one(tmp_path, xml, {'width': 50, 'height': 40})
    assert report.counts['boxes_clipped'] == 1 and not report.fatal()
    np.testing.assert_array_equal(record.boxes, [[0, 4, 49, 39], [1, 1, 19, 19]])
    assert '(-3, 5, 60, 45)' in report.problems[0].message


def test_xmax_equal_to_width_is_valid(tmp_path):
    record, report = parse_one(tmp_path, voc_xml('a.jpg', [('cat', (1, 1, 50, 40))]), {})
    assert 'boxes_clipped' not in report.counts
    np.testing.assert_array_equal(record.boxes, [[0, 0, 49, 39]])


def test_zero_area_inverted_and_outside_boxes_are_dropped(tmp_path):
    xml = voc_xml('a.jpg', [('cat', (10, 10, 10, 20)), ('cat', (30, 10, 20, 20)),
                            ('dog', (60, 1, 70, 10)), ('dog', (5, 5, 15, 15))])
    record, report = parse_one(tmp_path, xml, {})
    assert report.counts['boxes_dropped_zero_area'] == 3 and not report.fatal()
    np.testing.assert_array_equal(record.boxes, [[4, 4, 14, 14]])
    assert record.labels.tolist() == [0]


def test_non_numeric_coordinate_is_fatal(tmp_path):
    record, report = parse_one(tmp_path, voc_xml('a.jpg', [('cat', (1, 'abc', 10, 10))]), {})
    assert record is None and report.counts['bad_coordinate'] == 1
    assert "'abc'" in report.fatal()[0].message and '<ymin>' in report.fatal()[0].message


def test_unknown_class_is_fatal_and_named(tmp_path):
    record, report = parse_one(tmp_path, voc_xml('a.jpg', [('Horse', (1, 1, 10, 10))]), {})
    assert record is None and report.counts['unknown_class'] == 1
    problem = report.fatal()[0]
    assert "'horse'" in problem.message and problem.path.endswith('a.xml')
    assert 'a.xml' in report.summary()


def test_class_names_are_normalised(tmp_path):
    record, report = parse_one(tmp_path, voc_xml('a.jpg', [('  CAT ', (1, 1, 10, 10))]), {})
    assert record.labels.tolist() == [1] and report.problems == []


def test_missing_size_and_difficult_get_defaults(tmp_path):
    xml = voc_xml('a.jpg', [('cat', (1, 1, 10, 10)), ('dog', (2, 2, 9, 9))],
                  with_size=False, with_difficult=False)
    record, report = parse_one(tmp_path, xml, {'width': 50, 'height': 40})
    assert (record.width, record.height) == (50, 40)
    assert record.difficult.tolist() == [False, False]
    assert report.counts['missing_size'] == 1 and report.counts['missing_difficult'] == 2
    assert not report.fatal()


def test_image_found_by_id_when_filename_is_wrong(tmp_path):
    record, report = parse_one(tmp_path, voc_xml('other.jpg', [('cat', (1, 1, 10, 10))]), {},
                               image_name='a.png')
    assert record.image_path.endswith('a.png') and not report.fatal()


def test_image_without_objects_is_kept_and_counted(tmp_path):
    record, report = parse_one(tmp_path, voc_xml('a.jpg', []), {})
    assert record.boxes.shape == (0, 4) and record.label_array().shape == (0, 6)
    assert report.counts['images_without_objects'] == 1 and not report.fatal()


@pytest.mark.parametrize('mode, kind', [('L', 'converted_grayscale'), ('CMYK', 'converted_cmyk')])
def test_grayscale_and_cmyk_decode_to_rgb(tmp_path, mode, kind):
    record, report = parse_one(tmp_path, voc_xml('a.jpg', [('cat', (1, 1, 10, 10))]), {'mode': mode})
    assert Image.open(record.image_path).mode == mode
    assert report.counts[kind] == 1 and not report.fatal()
    img, label = DetectionDataset([record], ['dog', 'cat'])[0]
    assert img.shape == (40, 50, 3) and img.dtype == np.uint8
    assert label.shape == (1, 6)


def test_cmyk_colours_survive_decoding(tmp_path):
    rgb = np.zeros((40, 50, 3), np.uint8)
    rgb[:, :25] = (220, 30, 30)
    rgb[:, 25:] = (30, 30, 220)
    Image.fromarray(rgb).convert('CMYK').save(str(tmp_path / 'a.jpg'), quality=95)
    record, _ = parse_one(tmp_path, voc_xml('a.jpg', [('cat', (1, 1, 10, 10))]))
    img = DetectionDataset([record], ['dog', 'cat'])[0][0].asnumpy().astype(int)
    assert np.abs(img[20, 5] - (220, 30, 30)).max() < 30
    assert np.abs(img[20, 45] - (30, 30, 220)).max() < 30


# ----------------------------------------------------------------------------- whole roots

def test_all_problems_collected_and_raise_if_fatal(tmp_path):
    good = voc_xml('good.jpg', [('cat', (1, 1, 10, 10))])
    root = make_root(tmp_path / 'voc', {
        'good': (good, {}),
        'broken': ('<annotation>', {}),
        'noimg': (voc_xml('noimg.jpg', [('cat', (1, 1, 10, 10))]), None),
        'clip': (voc_xml('clip.jpg', [('dog', (1, 1, 99, 10))]), {}),
    })
    records, classes, report = load_voc_records(root, 'all')
    assert classes == ['cat', 'dog']
    assert sorted(r.image_id for r in records) == ['clip', 'good']
    assert report.counts['malformed_xml'] == 1 and report.counts['missing_image'] == 1
    assert report.counts['boxes_clipped'] == 1
    assert len(report.fatal()) == 2
    with pytest.raises(DatasetError) as err:
        report.raise_if_fatal()
    text = str(err.value)
    assert 'broken.xml' in text and 'noimg' in text and 'malformed_xml' in text
    assert 'classes discovered' in text and 'cat' in text
    short = report.summary(max_lines=1)
    assert '... and 2 more' in short


def test_discover_classes_sorted_unique(tmp_path):
    paths = []
    for i, names in enumerate([['Dog', 'cat'], [' cat ', 'bird'], []]):
        path = tmp_path / '{}.xml'.format(i)
        path.write_text(voc_xml('x.jpg', [(n, (1, 1, 5, 5)) for n in names]))
        paths.append(str(path))
    (tmp_path / 'bad.xml').write_text('<oops')
    assert discover_classes(paths + [str(tmp_path / 'bad.xml')]) == ['bird', 'cat', 'dog']


def test_seeded_split_deterministic_disjoint_covering(tmp_path):
    ids = ['img{:03d}'.format(i) for i in range(50)]
    items = {i: (voc_xml(i + '.jpg', [('cat', (1, 1, 5, 5))]), {}) for i in ids}
    root = make_root(tmp_path / 'voc', items)
    loaded = {}
    for split in ('train', 'val', 'test', 'trainval'):
        records, _, report = load_voc_records(root, split, ['cat'], seed=3, check_images=False)
        loaded[split] = [r.image_id for r in records]
        assert not report.problems
    train, val = set(loaded['train']), set(loaded['val'])
    assert len(val) == 10 and len(train) == 40
    assert not train & val and train | val == set(ids)
    assert loaded['test'] == loaded['val'] and sorted(loaded['trainval']) == ids
    assert seeded_split(ids, 'val', 0.2, seed=3) == sorted(val)
    assert seeded_split(ids, 'val', 0.2, seed=4) != sorted(val)
    assert seeded_split(ids[::-1], 'train', 0.2, seed=3) == sorted(train)


def test_split_file_is_used_and_missing_id_is_fatal(tmp_path):
    xml = voc_xml('a.jpg', [('cat', (1, 1, 5, 5))])
    root = make_root(tmp_path / 'voc', {'a': (xml, {}), 'b': (voc_xml('b.jpg', []), {})},
                     split_files={'train': ['a', 'ghost'], 'val': ['b']})
    records, _, report = load_voc_records(root, 'train')
    assert [r.image_id for r in records] == ['a']
    assert report.counts['missing_annotation'] == 1
    problem = report.fatal()[0]
    assert "'ghost'" in problem.message and problem.path.endswith('train.txt')
    _, _, report = load_voc_records(root, 'test')
    assert report.counts['missing_split'] == 1 and 'train, val' in report.fatal()[0].message


def test_gluoncv_layout_with_two_years(tmp_path):
    for year, ids in (('2007', ['000005', '000007']), ('2012', ['2008_000002'])):
        items = {i: (voc_xml(i + '.jpg', [('dog', (1, 1, 20, 20))]), {}) for i in ids}
        make_root(tmp_path / ('VOC' + year), items, split_files={'trainval': ids, 'test': ids[:1]})
    records, classes, report = load_voc_records(tmp_path, '2007_trainval+2012_trainval', VOC_CLASSES)
    assert kinds(report) == {'class_without_objects'} and classes == VOC_CLASSES
    assert report.counts['class_without_objects'] == 19  # only 'dog' has objects
    assert [r.image_id for r in records] == ['000005', '000007', '2008_000002']
    assert records[2].image_path.endswith(os.path.join('VOC2012', 'JPEGImages', '2008_000002.jpg'))
    assert records[0].labels.tolist() == [VOC_CLASSES.index('dog')]
    records, _, report = load_voc_records(tmp_path, '2007_test', VOC_CLASSES)
    assert [r.image_id for r in records] == ['000005'] and not report.fatal()
    records, _, report = load_voc_records(tmp_path, 'trainval', VOC_CLASSES)  # every year
    assert len(records) == 3 and not report.fatal()
    _, _, report = load_voc_records(tmp_path, '2007_trainval+2010_val', VOC_CLASSES)
    assert report.counts['missing_split'] == 1 and '2010_val' in report.fatal()[0].message


def test_dataset_returns_known_label(tmp_path):
    root = make_root(tmp_path / 'voc', {
        'a': (voc_xml('a.jpg', [('dog', (11, 6, 30, 25)), ('cat', (1, 1, 50, 40))]), {})})
    records, classes, report = load_voc_records(root, 'all', ['cat', 'dog'])
    dataset = DetectionDataset(records, classes)
    img, label = dataset[0]
    assert len(dataset) == 1 and dataset.record(0) is records[0] and dataset.classes == ['cat', 'dog']
    assert img.shape == (40, 50, 3) and img.dtype == np.uint8
    assert label.dtype == np.float32
    np.testing.assert_array_equal(label, [[10, 5, 29, 24, 1, 0], [0, 0, 49, 39, 0, 0]])
    flipped = DetectionDataset(records, classes, transform=lambda im, lb: (im[:, ::-1], lb[:, :4]))
    assert flipped[0][1].shape == (2, 4)


def test_dataset_image_is_rgb(tmp_path):
    rgb = np.zeros((40, 50, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(str(tmp_path / 'a.png'))
    record = Record('a', str(tmp_path / 'a.png'), 50, 40)
    img, label = DetectionDataset([record], ['cat'])[0]
    assert img.asnumpy()[0, 0].tolist() == [200, 0, 0] and label.shape == (0, 6)


# ----------------------------------------------------------------------------- check_dataset.py

def run_check(*args):
    return subprocess.run([sys.executable, str(REPO / 'tools' / 'check_dataset.py'), *map(str, args)],
                          capture_output=True, text=True, cwd=str(REPO), timeout=120)


def test_check_dataset_exit_codes(tmp_path):
    xml = voc_xml('a.jpg', [('cat', (1, 1, 60, 10))])
    root = make_root(tmp_path / 'voc', {'a': (xml, {}), 'b': (voc_xml('b.jpg', [('cat', (1, 1, 60, 10))]), {})})
    ok = run_check(root, '--split', 'train', '--val-fraction', '0.5', '--seed', '1')
    assert ok.returncode == 0, ok.stderr
    assert 'boxes_clipped' in ok.stdout and '1 images' in ok.stdout
    bad = run_check(root, '--classes', 'dog')
    assert bad.returncode == 1, bad.stderr
    assert 'unknown_class' in bad.stdout and "'cat'" in bad.stdout and 'a.xml' in bad.stdout


# ----------------------------------------------------------------------------- synthetic data

def read_objects(root, image_id):
    tree = ET.parse(os.path.join(root, 'Annotations', image_id + '.xml')).getroot()
    size = int(tree.findtext('size/width')), int(tree.findtext('size/height'))
    objects = [(o.findtext('name'), [int(o.findtext('bndbox/' + k)) for k in ('xmin', 'ymin', 'xmax', 'ymax')],
                o.findtext('difficult')) for o in tree.iter('object')]
    return size, objects


@pytest.fixture(scope='module')
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('syn') / 'voc'
    return make_synthetic_voc(root, num_train=40, num_val=10, seed=7, difficult_fraction=0.2)


def test_synthetic_is_a_valid_voc_root(synthetic_root):
    main = Path(synthetic_root) / 'ImageSets' / 'Main'
    train, val = (main / 'train.txt').read_text().split(), (main / 'val.txt').read_text().split()
    assert len(train) == 40 and len(val) == 10 and (main / 'test.txt').read_text().split() == val
    assert (main / 'trainval.txt').read_text().split() == train + val
    records, classes, report = load_voc_records(synthetic_root, 'trainval', SYNTHETIC_CLASSES)
    assert not report.problems, report.summary()
    assert len(records) == 50
    assert len(set(np.concatenate([r.labels for r in records]).tolist())) >= 4
    assert 0 < sum(int(r.difficult.sum()) for r in records) < sum(len(r.boxes) for r in records)
    sizes = {(r.width, r.height) for r in records}
    assert len(sizes) > 10 and all(96 <= w <= 160 and 96 <= h <= 160 for w, h in sizes)


def test_synthetic_boxes_inside_images(synthetic_root):
    for image_id in ['{:06d}'.format(i) for i in range(50)]:
        (width, height), objects = read_objects(synthetic_root, image_id)
        assert 1 <= len(objects) <= 4
        with Image.open(os.path.join(synthetic_root, 'JPEGImages', image_id + '.jpg')) as img:
            assert img.size == (width, height) and img.mode == 'RGB'
        for name, (xmin, ymin, xmax, ymax), difficult in objects:
            assert name in SYNTHETIC_CLASSES and difficult in ('0', '1')
            assert 1 <= xmin < xmax <= width and 1 <= ymin < ymax <= height


def test_synthetic_deterministic_and_manifest_skip(tmp_path, synthetic_root):
    again = make_synthetic_voc(tmp_path / 'again', num_train=40, num_val=10, seed=7,
                               difficult_fraction=0.2)
    for image_id in ('000000', '000033', '000049'):
        name = os.path.join('Annotations', image_id + '.xml')
        assert Path(again, name).read_text() == Path(synthetic_root, name).read_text()
    xml = Path(again, 'Annotations', '000000.xml')
    stamp = xml.stat().st_mtime_ns
    make_synthetic_voc(tmp_path / 'again', num_train=40, num_val=10, seed=7, difficult_fraction=0.2)
    assert xml.stat().st_mtime_ns == stamp
    make_synthetic_voc(tmp_path / 'again', num_train=4, num_val=2, seed=8)
    assert len(os.listdir(Path(again, 'Annotations'))) == 6
    assert read_objects(again, '000000') != read_objects(synthetic_root, '000000')
    os.remove(Path(again, 'JPEGImages', '000005.jpg'))  # incomplete root is regenerated
    make_synthetic_voc(tmp_path / 'again', num_train=4, num_val=2, seed=8)
    assert Path(again, 'JPEGImages', '000005.jpg').is_file()


def test_synthetic_refuses_foreign_folder(tmp_path):
    (tmp_path / 'mine.txt').write_text('precious')
    with pytest.raises(FileExistsError):
        make_synthetic_voc(tmp_path, num_train=2, num_val=1)
    assert (tmp_path / 'mine.txt').read_text() == 'precious'


# ----------------------------------------------------------------------------- real photographs

def test_raccoon_real_photographs():
    if not RACCOON.is_dir():
        pytest.skip('raccoon data not found at {}'.format(RACCOON))
    records, classes, report = load_voc_records(RACCOON, 'all')
    assert classes == ['raccoon']
    assert len(records) == 200
    assert report.fatal() == [], report.summary()
    assert report.counts['converted_grayscale'] == 3
    assert sum(len(r.boxes) for r in records) == 217
    train, _, _ = load_voc_records(RACCOON, 'train', classes, check_images=False)
    val, _, _ = load_voc_records(RACCOON, 'val', classes, check_images=False)
    assert len(train) == 160 and len(val) == 40
    assert not {r.image_id for r in train} & {r.image_id for r in val}
    gray = [r for r in records if Image.open(r.image_path).mode == 'L'][0]
    img, label = DetectionDataset([gray], classes)[0]
    assert img.shape == (gray.height, gray.width, 3) and label.shape[1] == 6
