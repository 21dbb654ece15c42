# streamvis: `make test` and `make demo` do all set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test test-all demo lint clean

# torch is installed first and pinned through constraints.txt, so the local CPU wheel is used and
# no CUDA packages are pulled in by `pip install -e .[dev]`.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# the fast suite (tests marked `slow` left out: DDP processes, repeated training runs, golden losses)
test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# everything, slow tests included (what CI runs: .ci/run)
test-all: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/streamvis demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) outputs .pytest_cache
