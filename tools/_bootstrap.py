"""Lets ``python tools/X.py`` run from a source checkout that was not pip-installed."""
import os
import sys

try:
    import gluon_distill  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
