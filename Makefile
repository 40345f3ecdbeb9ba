# Two commands do everything on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export DS_BUILD_OPS ?= 0
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: setup demo test test-fast lint format bench clean gpu-wheels gpu-check

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/install-torch.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	bash scripts/install-torch.sh $(PY)
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: setup
	$(VENV)/bin/differad demo --out demo

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

format: setup
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

bench: setup
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf demo runs .pytest_cache .ruff_cache

# ---- the prepared GPU check (bench/bench_gpu.py) ------------------------------------------------------------
# The lent GPU machine has torch 2.11, transformers 5.17, accelerate 1.15, peft, pyarrow, pandas, fsspec,
# huggingface-hub 1.33, einops, msgpack, ninja, py-cpuinfo, psutil ... but no trl, deepspeed or datasets and no
# network: these travel as wheels (cp312 manylinux x86-64 or pure Python, <= 64 MiB together, one version
# each). typing-extensions travels because pydantic-core 2.50 asks for >= 4.16 and the machine's is unknown.
WHL ?= .whl
# WHEEL_PY: a Python with torch (deepspeed's setup imports it); `make setup` makes one.
WHEEL_PY ?= $(PY)
GPU_WHEELS ?= trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 hjson==3.1.0 pydantic==2.14.4 \
	pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0
GPU_PIP_DOWNLOAD = $(WHEEL_PY) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d $(WHL)

gpu-wheels:
	mkdir -p $(WHL)
	for w in $(GPU_WHEELS); do $(GPU_PIP_DOWNLOAD) $$w || exit 1; done
	ls $(WHL)/deepspeed-0.19.8-*.whl >/dev/null 2>&1 || DS_BUILD_OPS=0 $(WHEEL_PY) -m pip wheel -q --no-deps \
		--no-build-isolation deepspeed==0.19.8 -w $(WHL) || DS_BUILD_OPS=0 $(WHEEL_PY) -m pip wheel -q --no-deps \
		deepspeed==0.19.8 -w $(WHL)
	@for w in $(WHL)/*.whl; do echo "== $$w"; unzip -p $$w '*/METADATA' | grep ^Requires-Dist | grep -v extra; done
	@du -cb $(WHL)/*.whl | awk '{printf "%8.2f MiB  %s\n", $$1/1048576, $$2}'
	@test $$(du -cb $(WHL)/*.whl | tail -1 | cut -f1) -le 67108864 || { echo "wheels over 64 MiB"; exit 1; }

# The one command to run on the GPU machine (device tool: carry [".whl"], timeout_s 560). It is printed, not
# run here: this machine has no GPU.
GPU_CHECK_CMD = python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
	.whl/*.whl && export PYTHONPATH=/tmp/site:$$PWD/src PYTHONUNBUFFERED=1 && python3 bench/bench_gpu.py --out $$OUT

gpu-check:
	@echo '$(GPU_CHECK_CMD)'
