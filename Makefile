# One word per job. Each target creates the virtual environment (pinned by constraints.txt) first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test bench sample clean

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# The main job on the built-in sample: writes out/hazy_traffic_dehazed.mp4.
demo: install
	$(VENV)/bin/cidstream run samples/hazy_traffic.mp4 -o out/hazy_traffic_dehazed.mp4

test: install
	$(PY) -m pytest -q

# Stage speeds on the sample for every model (see docs/benchmarking.md for the full set).
bench: install
	$(PY) benchmarks/run_benchmarks.py --out benchmarks/results

sample: install
	$(PY) samples/make_sample.py

clean:
	rm -rf $(VENV) out .pytest_cache
