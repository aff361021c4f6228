"""Train a plain GluonCV YOLOv3 (a teacher, or a student with no teacher).

Defaults are GluonCV's YOLOv3 recipe (scripts/detection/yolo/train_yolo3.py): darknet53,
validation at 416 px, training sizes 320..608 (one drawn every 10 batches), 200 epochs, batch
64, SGD lr 0.001 x0.1 at epochs 160 and 180, momentum 0.9, wd 5e-4, no warm-up, seed 233; NMS
0.45. Its options are config keys: --set train.mixup=true (and train.no_mixup_epochs),
train.label_smooth, train.no_wd, model.random_shapes=[] (GluonCV's --no-random-shape). A
--config file, then --set, then the flags override them.

    gluon-distill train-yolo3 --config voc_yolo3/teacher_yolo3_darknet53.yaml
    gluon-distill train-yolo3 --network mobilenet1.0 --ctx gpu:0,1,2,3
    gluon-distill train-yolo3 --network tiny --data-shape 128 --data-root synthetic \\
        --no-pretrained-base --set model.random_shapes=[96,128,160] \\
        --set train.optimizer=adam --out runs/tiny_yolo3

OUT (--out) receives what train writes (last.params and best.params with model.json,
checkpoints for --resume, metrics.jsonl, train.log, curves.png); eval evaluates the .params
files. The last line printed says which epoch each file holds. Every flag is a config key
(docs/config.md). tools/train_yolo3.py is the same command; the shared train command with
--set model.family=yolo3 trains the same network on the config's own schedule.
"""

from ._training import family_recipe, report_outputs, training_main, training_parser

# GluonCV's YOLOv3 VOC recipe as a config; the recipe, then --config, --set and the flags
recipe, recipe_config = family_recipe(
    'yolo3', 'model.family is {!r}: train-yolo3 trains YOLOv3 (use train for SSD, train-rcnn '
             'for Faster R-CNN)')


def build_parser(prog=None, argv=None):
    return training_parser(__doc__, prog, argv, recipe)


def main(argv=None, prog=None):
    from ..training import train_detector
    return training_main(argv, prog, build_parser, train_detector, report_outputs,
                         configure=recipe_config)
