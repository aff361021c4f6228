"""Issue 8, items 2, 5, 9, 10 on the inference side: detect.py on folders, bad and same-named
inputs; boxes clipped to the image in detect.py output and devkit files; unwritable output
folders of eval, export and detect fail at once with one line; eval names classes without
ground truth; export verification on real (EXIF-rotated) photos.

The detector is built, not trained: every predictor weight zero, the background logit 10
everywhere and class 'b' 30 on one anchor, so exactly one detection of known box comes out;
``grow`` sets the box predictors' width/height offsets so that box extends past the image.
"""
import os
import re

import numpy as np
import pytest
from PIL import Image

import gluon_distill  # noqa: F401
import mxnet as mx

from conftest import tool
from gluon_distill.models.io import model_spec, write_model_json
from gluon_distill.models.ssd import anchors_of, build_ssd, initialize, resolve_arch

SIZE = 64
CLASSES = ['a', 'b']


def known_detector(folder, grow=0.0):
    """``params path``: the one-detection SSD described in the module docstring."""
    arch = resolve_arch('tiny', SIZE, width=8)
    net = build_ssd(arch, CLASSES)
    initialize(net, [mx.cpu()])
    anchors_of(net, SIZE)                              # completes the deferred shapes
    for cp, bp in zip(net.class_predictors, net.box_predictors):
        for p in (cp.predictor.weight, cp.predictor.bias, bp.predictor.weight,
                  bp.predictor.bias):
            p.set_data(mx.nd.zeros(p.shape))
        bias = np.zeros(cp.predictor.bias.shape, np.float32)
        bias[0::3] = 10.0
        cp.predictor.bias.set_data(mx.nd.array(bias))
        box = np.zeros(bp.predictor.bias.shape, np.float32)
        box[2::4] = box[3::4] = grow                   # log-size offsets: every box grows
        bp.predictor.bias.set_data(mx.nd.array(box))
    bias = net.class_predictors[3].predictor.bias.data().asnumpy()
    bias[2] = 30.0                                     # class 'b' on the 4th map's anchor 0
    net.class_predictors[3].predictor.bias.set_data(mx.nd.array(bias))
    folder.mkdir(parents=True, exist_ok=True)
    net.save_parameters(str(folder / 'm.params'))
    write_model_json(str(folder), model_spec(arch, CLASSES, [0.5] * 3, [0.25] * 3, {}))
    return folder / 'm.params'


def photo(path, width=128, height=96, seed=0):
    rng = np.random.RandomState(seed)
    small = rng.randint(0, 256, (height // 8, width // 8, 3)).astype(np.uint8)
    Image.fromarray(small).resize((width, height), Image.BILINEAR).save(str(path), quality=90)
    return path


@pytest.fixture(scope='module')
def grown(tmp_path_factory):
    return known_detector(tmp_path_factory.mktemp('grown'), grow=8.0)


def printed_boxes(stdout):
    rows = [line.split() for line in stdout.splitlines() if line.startswith('  ')]
    return np.array([[float(v) for v in row[2:]] for row in rows]).reshape(-1, 4)


# ----------------------------------------------------------------------------- detect.py

def test_detect_folder_bad_inputs_same_stem_and_clipped_boxes(grown, tmp_path, capsys):
    photos = tmp_path / 'photos'
    photos.mkdir()
    photo(photos / 'a.jpg')
    photo(photos / 'a.png', seed=1)
    (photos / 'notes.txt').write_text('not an image')
    (tmp_path / 'other').mkdir()
    photo(tmp_path / 'other' / 'a.jpg', seed=2)
    (tmp_path / 'bad.jpg').write_bytes(b'not a jpeg at all')
    out = tmp_path / 'det'
    status = tool('detect')(['--params', str(grown), str(photos), str(tmp_path / 'missing.jpg'),
                             str(tmp_path / 'bad.jpg'), str(tmp_path / 'other' / 'a.jpg'),
                             '--out', str(out)])
    captured = capsys.readouterr()
    assert status == 1, captured.err
    lines = captured.out.splitlines()
    assert '{}: 2 image files, 1 other files ignored'.format(photos) in lines
    assert '{}: skipped: no such file'.format(tmp_path / 'missing.jpg') in lines
    assert any(l.startswith('{}: skipped: OpenCV cannot decode'.format(tmp_path / 'bad.jpg'))
               for l in lines)
    processed = [l for l in lines if re.search(r': 1 detection -> ', l)]
    assert len(processed) == 3
    assert sorted(os.listdir(str(out))) == ['a_jpg-2.png', 'a_jpg.png', 'a_png.png']
    assert 'missing.jpg' in captured.err and 'bad.jpg' in captured.err
    boxes = printed_boxes(captured.out)
    assert boxes.shape == (3, 4)
    # the grown box extends past every side: clipped to the 128 x 96 image's 0-based pixels
    np.testing.assert_allclose(boxes, [[0, 0, 127, 95]] * 3)


def test_detect_clips_boxes_in_python_api(grown, tmp_path):
    from gluon_distill.detect import detect_images
    results = detect_images(str(grown), [str(photo(tmp_path / 'x.jpg', 80, 60))],
                            str(tmp_path / 'det'))
    (_, _, dets), = results
    assert [box for _, _, box in dets] == [(0.0, 0.0, 79.0, 59.0)]


def test_detect_folder_with_subfolders_names_them_or_searches_them(grown, tmp_path, capsys):
    """Subfolders: without --recursive a line names them (nothing silently ignored); with it
    every image at any depth is detected and drawn into the same subfolders of --out, so
    photos/sub/x.jpg and photos/other/x.jpg do not collide; a link back up is not followed
    again."""
    photos = tmp_path / 'photos'
    (photos / 'sub' / 'deeper').mkdir(parents=True)
    (photos / 'other').mkdir()
    photo(photos / 'x.jpg')
    photo(photos / 'sub' / 'x.jpg', seed=1)
    photo(photos / 'sub' / 'deeper' / 'y.png', seed=2)
    photo(photos / 'other' / 'x.jpg', seed=3)
    (photos / 'sub' / 'notes.txt').write_text('not an image')
    os.symlink(str(photos), str(photos / 'sub' / 'loop'))      # a symlink loop

    out = tmp_path / 'flat'
    assert tool('detect')(['--params', str(grown), str(photos), '--out', str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert '{}: 2 subfolder(s) not searched: other/, sub/ (use --recursive)'.format(
        photos) in lines
    assert [l for l in lines if ' -> ' in l] == [
        '{}: 1 detection -> {}'.format(photos / 'x.jpg', out / 'x.png')]
    assert os.listdir(str(out)) == ['x.png']

    out = tmp_path / 'deep'
    assert tool('detect')(['--params', str(grown), str(photos), '--recursive',
                           '--out', str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert not any('not searched:' in l and 'use --recursive' in l for l in lines)
    assert '{}: 4 image files, 1 other files ignored'.format(photos) in lines
    assert '{}: not searched again: it leads to {}, already searched'.format(
        photos / 'sub' / 'loop', photos) in lines
    # sorted by the path relative to the folder
    assert [l.split(': ')[0] for l in lines if ' -> ' in l] == [
        str(photos / 'other' / 'x.jpg'), str(photos / 'sub' / 'deeper' / 'y.png'),
        str(photos / 'sub' / 'x.jpg'), str(photos / 'x.jpg')]
    written = sorted(os.path.relpath(os.path.join(d, n), str(out))
                     for d, _, names in os.walk(str(out)) for n in names)
    assert written == ['other/x.png', 'sub/deeper/y.png', 'sub/x.png', 'x.png']
    assert '{}: 1 detection -> {}'.format(photos / 'sub' / 'x.jpg',
                                          out / 'sub' / 'x.png') in lines


def test_output_names_mirror_subfolders_and_stay_distinct():
    from gluon_distill.detect import output_names
    assert output_names(['p/a/x.jpg', 'p/b/x.jpg', 'p/x.jpg', 'q/a/x.jpg', 'p/a/x.png'],
                        ['a', 'b', '', 'a', 'a']) == [
        'a/x_jpg.png', 'b/x.png', 'x.png', 'a/x_jpg-2.png', 'a/x_png.png']
    assert output_names(['a/x.jpg', 'b/x.jpg']) == ['x_jpg.png', 'x_jpg-2.png']


# ----------------------------------------------------------------------------- eval.py

def voc_root(root, sizes, boxes_of_a):
    """A VOC root whose objects are all class 'a' (class 'b' has no ground truth)."""
    (root / 'Annotations').mkdir(parents=True)
    (root / 'JPEGImages').mkdir()
    for i, (w, h) in enumerate(sizes):
        image_id = 'img{}'.format(i)
        photo(root / 'JPEGImages' / (image_id + '.jpg'), w, h, seed=i)
        (root / 'Annotations' / (image_id + '.xml')).write_text(
            '<annotation><filename>{0}.jpg</filename><size><width>{1}</width><height>{2}'
            '</height></size><object><name>a</name><difficult>0</difficult><bndbox><xmin>{3}'
            '</xmin><ymin>{4}</ymin><xmax>{5}</xmax><ymax>{6}</ymax></bndbox></object>'
            '</annotation>'.format(image_id, w, h, *boxes_of_a))
    return root


def test_eval_no_ground_truth_class_and_clipped_devkit_boxes(grown, tmp_path, capsys):
    sizes = [(128, 96), (100, 80), (90, 120)]
    root = voc_root(tmp_path / 'voc', sizes, (5, 5, 40, 40))
    save = tmp_path / 'eval'
    status = tool('eval')(['--params', str(grown), '--data-root', str(root), '--split', 'all',
                           '--save-dir', str(save)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    lines = captured.out.strip().splitlines()
    assert re.match(r'^mAP=\d\.\d{4}$', lines[-1])
    row_b = [l for l in lines if l.split()[0] == 'b'][0]
    assert row_b.split()[1] == '0' and row_b.endswith('no ground truth: excluded from mAP')
    assert 'nan' not in captured.out
    devkit = (save / 'results' / 'comp4_det_all_b.txt').read_text().split('\n')[:-1]
    assert len(devkit) == 3
    for line in devkit:
        image_id, _, x1, y1, x2, y2 = line.split()
        w, h = sizes[int(image_id[3:])]
        # 1-based devkit pixels of the clipped box: the whole image
        assert [float(v) for v in (x1, y1, x2, y2)] == [1.0, 1.0, float(w), float(h)]


# ----------------------------------------------------------------------------- unwritable output

def blocked_dir(tmp_path):
    """A folder that cannot be created, even by root: its parent is a regular file."""
    (tmp_path / 'file').write_text('a file, not a folder')
    return tmp_path / 'file' / 'sub'


@pytest.mark.parametrize('name, option', [('eval', '--out'), ('export', '--out'),
                                          ('detect', '--out')])
def test_unwritable_output_fails_at_once_with_one_line(grown, tmp_path, capsys, name, option):
    blocked = blocked_dir(tmp_path)
    args = ['--params', str(grown), option, str(blocked)]
    if name == 'eval':
        args += ['--data-root', str(tmp_path / 'nowhere')]   # never reached: checked first
    if name == 'detect':
        args.append(str(photo(tmp_path / 'x.jpg')))
    status = tool(name)(args)
    captured = capsys.readouterr()
    assert status == 2
    errors = captured.err.strip().splitlines()
    assert errors == ['error: cannot write to {} {}: Not a directory'.format(
        {'eval': '--out folder', 'export': 'export folder', 'detect': 'output folder'}[name],
        blocked)], captured.err
    assert 'Traceback' not in captured.err and captured.out == ''


def test_read_only_folder_is_refused(grown, tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip('running as root: mode 0500 does not stop root from writing')
    ro = tmp_path / 'ro'
    ro.mkdir()
    ro.chmod(0o500)
    try:
        status = tool('export')(['--params', str(grown), '--out', str(ro), '--format', 'mxnet'])
        err = capsys.readouterr().err
    finally:
        ro.chmod(0o700)
    assert status == 2 and 'cannot write to export folder {}'.format(ro) in err
    assert os.listdir(str(ro)) == []


def test_writability_probe_leaves_nothing(tmp_path):
    from gluon_distill.io_utils import OutputDirError, ensure_writable_dir
    assert ensure_writable_dir(tmp_path / 'new' / 'deep') == str(tmp_path / 'new' / 'deep')
    assert os.listdir(str(tmp_path / 'new' / 'deep')) == []
    (tmp_path / 'f').write_text('x')
    with pytest.raises(OutputDirError, match='it is a file, not a folder'):
        ensure_writable_dir(tmp_path / 'f')


# ----------------------------------------------------------------------------- export

def test_export_verifies_on_an_exif_rotated_photo(grown, tmp_path):
    from gluon_distill.export import export_detector, image_input
    path = tmp_path / 'rotated.jpg'
    exif = Image.Exif()
    exif[0x0112] = 6
    rng = np.random.RandomState(0)
    Image.fromarray(rng.randint(0, 256, (48, 96, 3)).astype(np.uint8)).save(
        str(path), quality=95, exif=exif)
    x = image_input([str(path)], SIZE, [0.5] * 3, [0.25] * 3)
    stored = np.asarray(Image.open(str(path)).convert('RGB'))   # PIL does not rotate
    from gluoncv.data.transforms.image import imresize
    expected = mx.nd.image.to_tensor(imresize(mx.nd.array(stored, dtype=np.uint8), SIZE, SIZE,
                                              interp=9)).asnumpy()
    np.testing.assert_allclose(x[0], (expected - 0.5) / 0.25, atol=1e-5)
    info = export_detector(str(grown), str(tmp_path / 'out'), ['mxnet'],
                           verify_images=[str(path)])
    assert info['verification'][0]['ok'] and info['verification'][0]['detections'] == 1
