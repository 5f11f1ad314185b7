# Every target bootstraps the virtual environment on a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test bench bench-quick bench-recipe bench-sizes bench-sizes-quick bench-ui bench-domains bench-scale fonts browser glyphs cards clean

# Progress shows on first use (about a minute and a half): one line per step, pip's own bars for the downloads.
$(STAMP): pyproject.toml clients/python/pyproject.toml
	@echo "[1/4] virtual environment in $(VENV) (first run only: about 90 s in all)"
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/pip install -q --upgrade pip 2>/dev/null || $(BIN)/pip install --upgrade pip
	@echo "[2/4] torch (CPU)"
	@# The CPU wheel this machine keeps on disk; elsewhere any release in the project range.
	@$(BIN)/pip install "torch==2.13.0" 2>&1 | grep -v -e "^WARNING: Location" -e "^Requirement already" -e "^Looking in" || true
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install "torch>=2.4,<2.15"
	@echo "[3/4] the client and the learngene command (clients/python)"
	@$(BIN)/pip install -q -e ./clients/python 2>/dev/null || $(BIN)/pip install -e ./clients/python
	@echo "[4/4] the service and its test tools"
	@$(BIN)/pip install -e ".[test]" 2>&1 | grep -E "^(Collecting|Installing collected|Successfully installed)" | cut -c1-160 || true
	@$(BIN)/python -c "import service.app, learngene_client" || { echo "install failed: run $(BIN)/pip install -e '.[test]' to see why"; exit 1; }
	@touch $(STAMP)

install: $(STAMP)

# The embedded service: migrations, one Celery worker and the API; prints its URL and how to make a key.
# LEARNGENE_PORT (default 8000) and LEARNGENE_DATA_DIR (default ./var) override. Ctrl+C stops it (status 0).
run: $(STAMP)
	@$(BIN)/learngene serve

# The browser test needs Debian's Chromium: installed first when apt can (best effort; the test says if not).
test: $(STAMP)
	-bash scripts/install-browser.sh
	$(BIN)/python -m pytest -q --durations=15

fonts:
	bash scripts/install-fonts.sh

# Debian's chromium (+ chromium-driver) for tests/e2e/test_browser.py.
browser:
	bash scripts/install-browser.sh

bench: $(STAMP) fonts
	$(BIN)/python -m bench.fewshot

bench-quick: $(STAMP) fonts
	$(BIN)/python -m bench.fewshot --quick

# Individual recipe variants on base classes never trained on, never on target episodes (how defaults are chosen).
bench-recipe: $(STAMP) fonts
	$(BIN)/python -m bench.recipe

# One learngene at five sizes (¼× to 2× today's individual) against scratch and Weight Selection (<= 30 min; quick <= 4).
bench-sizes: $(STAMP) fonts
	$(BIN)/python -m bench.sizes

bench-sizes-quick: $(STAMP) fonts
	$(BIN)/python -m bench.sizes --quick

# Job-end notice (event stream vs polling), plot images, dashboard pages against JSON (~4 min; --quick ~1).
bench-ui: $(STAMP)
	$(BIN)/python -m bench.ui

# Playing cards from KDE's decks (learngene/datasets/cards.py), cached under var/data/.
cards: $(STAMP)
	bash scripts/install-cards.sh
	$(BIN)/python -c "from learngene.datasets import load_cards; print(load_cards(32, progress=print).summary())"

# Jobs per minute with 1, 2 and 4 worker processes (S3 via moto), and the S3 store's added time per job against
# the local folder; needs the local PostgreSQL and Redis (~6 min; `python -m bench.scale` without --quick ~15).
bench-scale: $(STAMP)
	$(BIN)/python -m bench.scale --quick

# Non-glyph families (cards, RGB 32 px and grey 28 px) through the API against in-process anchors (~20 min).
bench-domains: $(STAMP)
	bash scripts/install-cards.sh
	$(BIN)/python -m bench.domains

clean:
	rm -rf $(VENV) var

glyphs: $(STAMP) fonts
	$(BIN)/python -c "from learngene.datasets import load_glyphs; print(load_glyphs(progress=print).summary())"
