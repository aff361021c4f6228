"""Checks of one image against its annotation, in any annotation format.

Images are judged by the decoder training uses, :func:`gluon_distill.data.images.read_image`
(OpenCV, stored pixels); Pillow only reads metadata (mode, format, EXIF). Findings go to a
:class:`~gluon_distill.data.report.ValidationReport`: undecodable or mostly missing images
are bad images (fatal, or skipped), colour conversions are fixed, a size differing from the
annotated one, a JPEG missing only its end and an EXIF orientation are warnings. A truncated
progressive JPEG is judged by the coefficients that arrived (it decodes blurred, not grey): one
whose first pass of some coefficients never arrived is a bad image; one missing only
refinement scans is a warning. Messages name the format the file's bytes announce, whatever its
extension.
"""
import os

from .images import (ImageReadError, ORIENTATION_MEANING, exif_orientation, grey_tail_rows,
                     jpeg_stream, lost_progressive_detail, read_image, truncation)

GRAYSCALE_MODES = ('1', 'L', 'LA', 'I', 'I;16', 'F')
# A truncated JPEG that OpenCV decodes is usable (a warning) unless at least this share of its
# rows is libjpeg's grey fill: then a quarter of the picture or more is not the scene its boxes
# describe, and it is fatal (or skipped).
MAX_GREY_SHARE = 0.25


def checked_image_size(annotation_path, image_path, annotated, report, check_images=True):
    """Real ``(width, height)`` of the image in pixels, reporting mismatch/conversion/corruption.

    Parameters
    ----------
    annotation_path : str
        The annotation the image belongs to (named by a size mismatch).
    image_path : str
        The image file.
    annotated : (int, int) or None
        The size the annotation states, if any.
    report : ValidationReport
        Receives every problem found.
    check_images : bool
        If False the image is only decoded for its size (no truncation, size, mode or EXIF
        checks).

    Returns None (after a fatal or skipped problem) if the image cannot be used.
    """
    mode, fmt = _header(image_path)
    try:
        img = read_image(image_path)
    except ImageReadError:
        if fmt is not None and fmt not in ('JPEG', 'PNG', 'BMP'):
            report.bad_image('unsupported_format', image_path,
                             'format {} cannot be decoded by OpenCV (use JPEG, PNG or BMP)'
                             .format(fmt))
        else:
            report.bad_image('corrupt_image', image_path,
                             'cannot decode image: OpenCV (the decoder training uses) fails on '
                             'it{}'.format(_decode_note(image_path)))
        return None
    real = (img.shape[1], img.shape[0])
    if not check_images:
        return real
    if fmt in ('JPEG', None) and not _truncation_ok(image_path, img, report):
        return None
    if annotated is not None and annotated != real:
        report.add('size_mismatch', 'warning', annotation_path,
                   'annotated size {}x{} but image {} is {}x{}; using the real size'.format(
                       annotated[0], annotated[1], os.path.basename(image_path), *real))
    if mode in GRAYSCALE_MODES:
        report.add('converted_grayscale', 'fixed', image_path,
                   'mode {}: decoded to 3-channel RGB'.format(mode))
    elif mode == 'CMYK':
        report.add('converted_cmyk', 'fixed', image_path, 'mode CMYK: decoded to 3-channel RGB')
    elif mode not in (None, 'RGB'):
        report.add('converted_other', 'fixed', image_path,
                   'mode {}: decoded to 3-channel RGB'.format(mode))
    orientation = exif_orientation(image_path)
    if orientation is not None and orientation != 1:
        report.add('exif_orientation', 'warning', image_path,
                   'EXIF orientation {} ({}): viewers show it turned, training and evaluation '
                   'use the stored {}x{} pixels (as GluonCV does); its boxes must be drawn on '
                   'those'.format(orientation, ORIENTATION_MEANING[orientation], *real))
    return real


def _header(image_path):
    """``(mode, format)`` from Pillow's header parsing, ``(None, None)`` if it cannot open it."""
    from PIL import Image
    try:
        with Image.open(image_path) as img:
            return img.mode, img.format
    except Exception:  # PIL raises many types; the decoder's verdict is what counts
        return None, None


def _decode_note(image_path):
    """What a file's bytes say about it, for the message of an undecodable file: ``' (truncated
    PNG: why)'``, ``' (its first bytes ... are not those of a JPEG, PNG or BMP file)'``,
    ``' (a PNG file, named .jpg)'``..."""
    try:
        with open(image_path, 'rb') as f:
            data = f.read()
    except OSError:
        return ''
    fmt, why = truncation(data)
    if fmt is None:
        return ' (its first bytes {!r} are not those of a JPEG, PNG or BMP file)'.format(
            data[:8])
    if why:
        return ' (truncated {}: {})'.format(fmt, why)
    ext = os.path.splitext(image_path)[1].lower().lstrip('.')
    named = {'jpg': 'JPEG', 'jpeg': 'JPEG', 'png': 'PNG', 'bmp': 'BMP'}.get(ext)
    return ' (a {} file{})'.format(fmt, ', named .' + ext if named and named != fmt else '')


def _truncation_ok(image_path, img, report):
    """Report a JPEG whose stream ends early; False if too much of it is lost (bad image):
    a quarter of its rows grey fill, or, progressive, coefficients that never arrived."""
    with open(image_path, 'rb') as f:
        data = f.read()
    if data[:2] != b'\xff\xd8':     # not a JPEG (Pillow could not tell)
        return True
    stream = jpeg_stream(data)
    why = stream.why
    if why is None:
        return True
    height = img.shape[0]
    grey = grey_tail_rows(img)
    lost = '{} of {} rows ({:.0%}) are grey fill'.format(grey, height, grey / height)
    what = 'truncated progressive JPEG' if stream.progressive else 'truncated JPEG'
    if grey >= MAX_GREY_SHARE * height:
        report.bad_image('truncated_image', image_path,
                         '{} ({}): mostly missing, {}'.format(what, why, lost))
        return False
    blurred = lost_progressive_detail(stream)
    if blurred:
        report.bad_image('truncated_image', image_path,
                         '{} ({}): it {}, so OpenCV decodes it blurred; {}'.format(
                             what, why, blurred, lost))
        return False
    later = '; only refinement scans are lost (every coefficient arrived at least coarsely)' \
        if stream.progressive else ''
    report.add('truncated_jpeg', 'warning', image_path,
               '{} ({}): OpenCV decodes it as training does; {}{} (libjpeg\'s "Premature end '
               'of JPEG file" for it is not printed)'.format(what, why, lost, later))
    return True

