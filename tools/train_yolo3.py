#!/usr/bin/env python
"""``gluon-distill train-yolo3`` (gluon_distill/commands/train_yolo3.py): ``--help``, docs/cli.md."""
import os
import sys

try:
    from gluon_distill.commands.train_yolo3 import main
except ImportError:  # a checkout that was not pip-installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from gluon_distill.commands.train_yolo3 import main

if __name__ == '__main__':
    sys.exit(main())
