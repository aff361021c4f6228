"""Run the command ``python -m gluon_distill.launch --horovod`` put in the environment.

horovodrun reads abbreviations of its own long options anywhere among its arguments (our
tools' ``--network`` becomes its ``--network-interface``, ``--config`` its ``--config-file``), so
the launcher passes each rank this file, with no option after it, and the command as JSON in
``GLUON_DISTILL_COMMAND`` (with the directory to run it in, ``GLUON_DISTILL_CWD``).
Standard library only: it runs before anything is imported.
"""
import json
import os
import sys


def main():
    command = json.loads(os.environ['GLUON_DISTILL_COMMAND'])
    os.chdir(os.environ.get('GLUON_DISTILL_CWD') or os.getcwd())
    sys.stdout.flush()
    os.execvp(command[0], command)


if __name__ == '__main__':
    main()
