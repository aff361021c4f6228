#!/usr/bin/env python
"""Train a plain GluonCV Faster R-CNN (a Table 3 teacher, or a student with no teacher).

Defaults are GluonCV's VOC recipe (scripts/detection/faster_rcnn/train_faster_rcnn.py):
resnet50_v1b, short side 600 within 1000, RoIAlign, 20 epochs, SGD lr 0.001 x0.1 at epoch 14,
momentum 0.9, wd 5e-4, 1 image per device, no warm-up; validation NMS 0.3. A --config file,
then --set, then the flags override them.

    python tools/train_rcnn.py --config experiments/voc07_rcnn/teacher_faster_rcnn_resnet101_v1d.yaml
    python tools/train_rcnn.py --network resnet50_v1b --roi-mode pool --ctx gpu:0,1 --batch-size 2
    python tools/train_rcnn.py --network tiny --data-shape 128 --max-size 192 --data-root synthetic \\
        --no-pretrained-base --set train.optimizer=adam --out runs/tiny_rcnn

OUT (--out) receives what tools/train_ssd.py writes (last.params and best.params with
model.json, checkpoints for --resume, metrics.jsonl, train.log, curves.png); tools/eval.py
evaluates the .params files. The last line printed says which epoch each file holds.
"""
import argparse
import sys

import _bootstrap  # noqa: F401
from gluon_distill.cli import run_tool
from gluon_distill.config import add_common_arguments


def recipe_config(args):
    """GluonCV's Faster R-CNN VOC recipe, then ``--config``, ``--set`` and the flags."""
    from gluon_distill.config import (ConfigError, FLAG_ALIASES, config_from, merge_dict,
                                      set_key, yaml_load)
    from gluon_distill.families.faster_rcnn import RECIPE
    cfg = config_from(RECIPE)
    if args.config:
        try:
            with open(args.config) as f:
                merge_dict(cfg, yaml_load(f) or {})
        except OSError as e:
            raise ConfigError('cannot read config file {}: {}'.format(args.config, e.strerror))
        except ConfigError as e:
            raise ConfigError('{}: {}'.format(args.config, e))
    for item in args.set:
        if '=' not in item:
            raise ConfigError('--set expects section.key=value, got {!r}'.format(item))
        key, raw = item.split('=', 1)
        set_key(cfg, key.strip(), yaml_load(raw) if raw.strip() else '')
    for name, dotted in FLAG_ALIASES.items():
        value = getattr(args, name, None)
        if value is not None:
            set_key(cfg, dotted, value)
    for name, dotted in (('roi_mode', 'model.roi_mode'), ('max_size', 'model.max_size'),
                         ('wd', 'train.wd')):
        if getattr(args, name) is not None:
            set_key(cfg, dotted, getattr(args, name))
    if args.lr_decay_epoch is not None:
        try:
            steps = [int(s) for s in args.lr_decay_epoch.split(',') if s.strip()]
        except ValueError:
            raise ConfigError('--lr-decay-epoch: expected epochs like 14,20, got {!r}'.format(
                args.lr_decay_epoch))
        set_key(cfg, 'train.lr_steps', steps)
    if cfg.model.family != 'faster_rcnn':
        raise ConfigError('model.family is {!r}: tools/train_rcnn.py trains Faster R-CNN '
                          '(use tools/train_ssd.py for SSD)'.format(cfg.model.family))
    return cfg


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument('--roi-mode', dest='roi_mode', choices=('align', 'pool'), default=None,
                        help='RoIAlign or RoIPooling (model.roi_mode)')
    parser.add_argument('--max-size', dest='max_size', type=int, default=None,
                        help='longest side limit; --data-shape is the short side')
    parser.add_argument('--lr-decay-epoch', dest='lr_decay_epoch', default=None,
                        help='epochs at which the lr is multiplied by train.lr_decay, e.g. 14,20')
    parser.add_argument('--wd', type=float, default=None, help='weight decay (train.wd)')
    args = parser.parse_args(argv)

    def run():
        from gluon_distill.training import train_detector, describe_outputs
        cfg = recipe_config(args)
        summary = train_detector(cfg, argv=sys.argv)
        print('outputs in {}'.format(summary['out']))
        print(describe_outputs(summary, ['best.params', 'last.params']))
    return run_tool(run)


if __name__ == '__main__':
    sys.exit(main())
