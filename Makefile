# Two commands on a fresh clone:  make demo  |  make test
# Both create .venv (if missing) and install the package with every extra the tests need.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
QUICK  ?= 0
PYTEST_ARGS ?=

.PHONY: demo test install clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): setup.py | $(PY)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e ".[cpu,test,deploy]"
	$(PY) -c "import gluon_distill, mxnet, gluoncv; print('installed: mxnet', mxnet.__version__)"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m gluon_distill.demo $(if $(filter 1,$(QUICK)),--quick,)

test: $(STAMP)
	$(PY) -m pytest tests $(PYTEST_ARGS)

clean:
	rm -rf runs/demo runs/demo_quick .pytest_cache
