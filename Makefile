# Two commands on a fresh clone:  make demo  |  make test
# Both create a venv (if missing) and install the package with every extra the tests need.
# Another interpreter:  make test PYTHON=python3.12  (its own venv, .venv-python3.12)
PYTHON ?= python3
# one venv per interpreter, so that PYTHON=... never silently reuses a venv of another Python
VENV   ?= $(if $(filter python3,$(PYTHON)),.venv,.venv-$(notdir $(PYTHON)))
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
QUICK  ?= 0
PYTEST_ARGS ?=

.PHONY: demo test install clean check-python

$(PY):
	$(PYTHON) -m venv $(VENV)

# an explicit VENV made by another interpreter than PYTHON is an error, not a surprise
check-python: | $(PY)
	@want=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	 have=$$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	 if [ "$$want" != "$$have" ]; then \
	   echo "error: $(VENV) runs Python $$have but PYTHON=$(PYTHON) is $$want: pass another VENV=" >&2; \
	   exit 1; fi

$(STAMP): setup.py | $(PY)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e ".[cpu,test,deploy]"
	$(PY) -c "import sys, gluon_distill, mxnet, gluoncv; print('installed: Python', sys.version.split()[0], 'mxnet', mxnet.__version__)"
	touch $(STAMP)

install: check-python $(STAMP)

demo: check-python $(STAMP)
	$(PY) -m gluon_distill.demo $(if $(filter 1,$(QUICK)),--quick,)

test: check-python $(STAMP)
	$(PY) -m pytest tests $(PYTEST_ARGS)

clean:
	rm -rf runs/demo runs/demo_quick .pytest_cache
