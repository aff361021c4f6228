"""``python -m gluon_distill COMMAND ...``: the ``gluon-distill`` command."""
import sys

from .commands import main

if __name__ == '__main__':
    sys.exit(main())
