# Two commands set up everything on a fresh machine with Python 3.11: `make app` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DATA := data/synthetic
# The embedded default: 6,000 synthetic montages at 128 px (about a minute on 2 cores). The
# marker names the count and the generator's version (bump SYNTH_VERSION when the generator's
# output changes), so either change makes the set again.
DATA_N := 6000
DATA_SIZE := 128
SYNTH_VERSION := 2
DATA_MARK := $(DATA)/.complete-$(DATA_N)-v$(SYNTH_VERSION)

.PHONY: app test lint bench default-model data clean-cache

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements-dev.txt $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

# Written to a temporary folder and moved into place, so an interrupted run never leaves half a
# data set that looks complete.
$(DATA_MARK): | $(VENV)/.installed
	rm -rf $(DATA).partial
	$(BIN)/python -m portrait_core synth --out $(DATA).partial --n $(DATA_N) --seed 0 --size $(DATA_SIZE)
	rm -rf $(DATA) && mv $(DATA).partial $(DATA) && touch $@

data: $(DATA_MARK)

app: $(VENV)/.installed $(DATA_MARK)
	$(BIN)/streamlit run app.py

# The browser tests drive Debian's Chromium (Playwright cannot download its own browser here);
# installed once, by apt, as root or through sudo. PORTRAIT_LAB_CHROMIUM names another browser.
CHROMIUM ?= $(or $(PORTRAIT_LAB_CHROMIUM),/usr/bin/chromium)
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
$(CHROMIUM):
	@echo "installing Debian's chromium for the browser tests"
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium fonts-noto-cjk >/dev/null

# Two test processes side by side (pytest-xdist), each test file's tests in one of them; the
# 20 slowest tests are listed at the end.
test: $(VENV)/.dev-installed $(CHROMIUM)
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=20

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean-cache:
	rm -rf artifacts/cache

# The committed default model: one multi-output small_resnet on the synthetic set, trained with
# the recipe for real portraits (its default preset: photo augmentation, AdamW and a cosine
# schedule; see README: Real faces), at 96 px instead of 64, for 160 epochs instead of 40 and
# with half the pictures blurred, half at a lower resolution and half JPEG-compressed (README:
# The shipped default model). About 100 minutes on 2 cores.
DEFAULT_RUNS := artifacts/cache/default-model-runs
default-model: $(VENV)/.installed $(DATA_MARK)
	rm -rf $(DEFAULT_RUNS)
	$(BIN)/python -m portrait_core train --data $(DATA) --model small_resnet --seed 0 --image-size 96 \
		--epochs 160 --degrade-share 0.5 --out $(DEFAULT_RUNS)
	$(BIN)/python -m portrait_core publish "$$(ls $(DEFAULT_RUNS) | tail -1)" --out $(DEFAULT_RUNS) --dest artifacts/default

# Speed and memory targets live here, not in unit tests (see bench/README.md for the figures).
bench: $(VENV)/.dev-installed
	$(BIN)/python bench/run.py
