"""Train a plain GluonCV Faster R-CNN (a Table 3 teacher, or a student with no teacher).

Defaults are GluonCV's VOC recipe (scripts/detection/faster_rcnn/train_faster_rcnn.py):
resnet50_v1b, short side 600 within 1000, RoIAlign, 20 epochs, SGD lr 0.001 x0.1 at epoch 14,
momentum 0.9, wd 5e-4, 1 image per device, no warm-up; validation NMS 0.3. A --config file,
then --set, then the flags override them.

    gluon-distill train-rcnn --config voc07_rcnn/teacher_faster_rcnn_resnet101_v1d.yaml
    gluon-distill train-rcnn --network resnet50_v1b --roi-mode pool --ctx gpu:0,1 --batch-size 2
    gluon-distill train-rcnn --network tiny --data-shape 128 --max-size 192 \\
        --data-root synthetic --no-pretrained-base --set train.optimizer=adam --out runs/tiny_rcnn

OUT (--out) receives what train writes (last.params and best.params with model.json,
checkpoints for --resume, metrics.jsonl, train.log, curves.png); eval evaluates the .params
files. The last line printed says which epoch each file holds. Every flag is a config key
(docs/config.md). tools/train_rcnn.py is the same command.
"""

from ._training import family_recipe, report_outputs, training_main, training_parser

# GluonCV's Faster R-CNN VOC recipe as a config; the recipe, then --config, --set and the flags
recipe, recipe_config = family_recipe(
    'faster_rcnn', 'model.family is {!r}: train-rcnn trains Faster R-CNN (use train for SSD)')


def build_parser(prog=None, argv=None):
    return training_parser(__doc__, prog, argv, recipe, faster_rcnn=True)


def main(argv=None, prog=None):
    from ..training import train_detector
    return training_main(argv, prog, build_parser, train_detector, report_outputs,
                         configure=recipe_config)
