"""Train a plain GluonCV SSD: a teacher, or a student with no teacher.

    gluon-distill train --network resnet50_v1 --data-shape 512 --ctx gpu:0,1,2,3
    gluon-distill train --config voc/teacher_ssd512_resnet50_v1.yaml --ctx gpu:0,1
    gluon-distill train --network tiny --data-shape 128 --no-pretrained-base \\
        --data-root synthetic --set model.width=32 --set model.blocks=2 --out runs/tiny

OUT (--out) receives last.params and best.params (with model.json beside them), last.ckpt and
prev.ckpt (for --resume), metrics.jsonl, train.log, config.yaml, best.json, summary.json and
curves.png. An OUT that holds another run is refused: --resume continues it, --overwrite moves
it aside to OUT.old-<time>. The last line printed says which epoch each .params file holds and
its validation mAP. Every flag is a config key (docs/config.md); a flag's default is the value
it leaves (with --config and --set given, the help shows theirs). tools/train_ssd.py is the same
command.
"""

from ._training import report_outputs, training_main, training_parser


def build_parser(prog=None, argv=None):
    from ..config import Config
    return training_parser(__doc__, prog, argv, Config)


def main(argv=None, prog=None):
    from ..training import train_detector
    return training_main(argv, prog, build_parser, train_detector, report_outputs)
