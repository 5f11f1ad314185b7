# Every target bootstraps the virtual environment on a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test bench bench-quick bench-ui bench-domains fonts browser glyphs cards clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU wheel this machine keeps on disk; elsewhere any release in the project range.
	$(BIN)/pip install -q "torch==2.13.0" || $(BIN)/pip install -q "torch>=2.4,<2.15"
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# The embedded service: migrations, one Celery worker and the API; prints its URL.
# LEARNGENE_PORT (default 8000) and LEARNGENE_DATA_DIR (default ./var) override.
run: $(STAMP)
	$(BIN)/learngene serve

# The browser test needs Debian's Chromium: installed first when apt can (best effort; the test says if not).
test: $(STAMP)
	-bash scripts/install-browser.sh
	$(BIN)/python -m pytest -q

fonts:
	bash scripts/install-fonts.sh

# Debian's chromium (+ chromium-driver) for tests/e2e/test_browser.py.
browser:
	bash scripts/install-browser.sh

bench: $(STAMP) fonts
	$(BIN)/python -m bench.fewshot

bench-quick: $(STAMP) fonts
	$(BIN)/python -m bench.fewshot --quick

# Job-end notice (event stream vs polling), plot images, dashboard pages against JSON (~4 min; --quick ~1).
bench-ui: $(STAMP)
	$(BIN)/python -m bench.ui

# Playing cards from KDE's decks (learngene/datasets/cards.py), cached under var/data/.
cards: $(STAMP)
	bash scripts/install-cards.sh
	$(BIN)/python -c "from learngene.datasets import load_cards; print(load_cards(32, progress=print).summary())"

# Non-glyph families (cards, RGB 32 px and grey 28 px) through the API against in-process anchors (~20 min).
bench-domains: $(STAMP)
	bash scripts/install-cards.sh
	$(BIN)/python -m bench.domains

clean:
	rm -rf $(VENV) var

glyphs: $(STAMP) fonts
	$(BIN)/python -c "from learngene.datasets import load_glyphs; print(load_glyphs(progress=print).summary())"
