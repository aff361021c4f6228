"""Distil a trained teacher into a small student (GAN knowledge distillation, or another
method: docs/distillation.md).

    gluon-distill distill --config voc/ssd512_resnet50_v1_to_mobilenet1.0.yaml \\
        --teacher-params runs/voc/teacher_ssd512_resnet50_v1/best.params --ctx gpu:0,1
    gluon-distill distill --network tiny --teacher-params runs/demo/teacher/best.params \\
        --data-root synthetic --set distill.method=head_only

Leaves OUT/model.json with OUT/best.params (the epoch of best validation mAP) and
OUT/last.params = OUT/student.params (the last epoch): standalone detectors that eval
evaluates with no teacher file. The last line printed names each file's epoch and mAP, or says
that the validation mAP collapsed. A run whose losses explode (the detection loss, or the
critics' scores, far above the detection loss's early level) stops with a message naming the
scale and exits 2. Every flag is a config key (docs/config.md); --roi-mode and --max-size apply
to a Faster R-CNN student. tools/train_distill.py is the same command.
"""

from ._training import training_main, training_parser


def build_parser(prog=None, argv=None):
    from ..config import Config
    return training_parser(__doc__, prog, argv, Config, faster_rcnn=True, teacher=True)


def main(argv=None, prog=None):
    from ..distill.run import train_distilled
    return training_main(argv, prog, build_parser, train_distilled,
                         lambda summary: print(summary['final_line']))
