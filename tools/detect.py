#!/usr/bin/env python
"""Detect objects in images with a trained detector; draw, save and list the detections.

    python tools/detect.py --params runs/demo/distilled/student.params img1.jpg img2.jpg \
        --out detections --thresh 0.5

Writes OUT/<image name>.png (boxes drawn with GluonCV's plot_bbox) and prints, per image,
one line per detection: class, score, box (x1 y1 x2 y2, pixels of the original image).
"""
import argparse
import sys

import _bootstrap  # noqa: F401
from gluon_distill.cli import run_tool


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--params', required=True, help='.params file with model.json beside it')
    parser.add_argument('images', nargs='+', metavar='IMAGE')
    parser.add_argument('--out', default='detections', help='output directory')
    parser.add_argument('--thresh', type=float, default=0.5, help='minimum score')
    args = parser.parse_args(argv)

    def run():
        from gluon_distill.detect import detect_images, format_detections
        print(format_detections(detect_images(args.params, args.images, args.out,
                                              args.thresh)))
    return run_tool(run)


if __name__ == '__main__':
    sys.exit(main())
