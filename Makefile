# The two commands a new machine needs (see README):
#   make sim    set up, run the main job (a simulated Redis outage), write its report
#   make test   set up, then lint, type-check and run every test (what .ci/run calls)

VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: sim test lint gate example-report notebooks system-deps clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

system-deps:
	scripts/install-system-deps

sim: $(STAMP)
	$(BIN)/timerlab sim --scenario redis-outage --seed 1 --out runs/redis-outage

example-report: $(STAMP)
	rm -rf reports/example
	$(BIN)/timerlab -q sim --scenario redis-outage --seed 1 --out runs/example --no-report
	$(BIN)/timerlab -q report runs/example --out reports/example --render

gate: $(STAMP)
	$(BIN)/timerlab gate --seeds 200 --out runs/gate

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: system-deps $(STAMP) lint
	$(BIN)/pytest $(PYTEST_ARGS)
	rm -rf runs/notebooks && mkdir -p runs/notebooks
	for nb in notebooks/*.py; do \
		$(BIN)/jupytext --quiet --to ipynb --output runs/notebooks/$$(basename $$nb .py).ipynb $$nb; \
	done
	$(BIN)/pytest --nbmake runs/notebooks -o addopts="" -q
	$(BIN)/timerlab -q gate --seeds 200 --out runs/gate --junit runs/gate/junit.xml
	$(BIN)/timerlab -q gate --seeds 200 --first-seed commit --out runs/gate-fresh \
		--junit runs/gate-fresh/junit.xml --json runs/gate-fresh/summary.json
	$(BIN)/timerlab -q gate --seeds 40 --store-config examples/endpoints.yml --out runs/gate-example

notebooks: $(STAMP)  ## the tracked .ipynb, paired with their .py sources again
	$(BIN)/jupytext --quiet --sync notebooks/*.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
