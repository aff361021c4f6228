#!/usr/bin/env python
"""``gluon-distill reproduce`` (gluon_distill/commands/reproduce.py): ``--help``, docs/cli.md."""
import os
import sys

try:
    from gluon_distill.commands.reproduce import main
except ImportError:  # a checkout that was not pip-installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from gluon_distill.commands.reproduce import main

if __name__ == '__main__':
    sys.exit(main())
