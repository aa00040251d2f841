# Two entry points for users: `make run` (the main job) and `make test`.
# Both create or reuse .venv and install the project into it; the install step re-runs only when
# pyproject.toml or constraints.txt changed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.cjepa-installed
RUN_ARGS ?=

.PHONY: run run-pusht demo submit cluster-local analyse report ui test test-slow test-browser test-all browser-deps lint format lock clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

## run: the main job on the embedded defaults: the smoke masking ablation on local Ray,
## tracked in ./mlruns.db (override with MLFLOW_TRACKING_URI, join a cluster with RAY_ADDRESS)
run: $(STAMP)
	$(PY) experiments/ablate_masking.py --preset smoke $(RUN_ARGS)

## run-pusht: the Push-T reference ablation (OC-JEPA, object/token/tube at |M| = 1, 3 seeds),
## planned under the cjepa protocol beside the random-action floor and the oracle ceiling
run-pusht: $(STAMP)
	$(PY) experiments/ablate_masking.py --preset pusht --world pusht $(RUN_ARGS)

## demo: single-process C-JEPA training on synthetic interacting slots (no Ray, no MLflow)
demo: $(STAMP)
	$(PY) experiments/train_world_model.py --config experiments/configs/demo.yaml $(RUN_ARGS)

## submit: the smoke ablation as a Ray job on RAY_ADDRESS (default: a head on this machine),
## with runs and data written to this directory, not the job's temporary copy
RAY_JOB_ADDRESS ?= http://127.0.0.1:8265
submit: $(STAMP)
	RAY_AUTH_MODE=$${RAY_AUTH_MODE:-token} $(VENV)/bin/ray job submit --address $(RAY_JOB_ADDRESS) \
	  --working-dir . --runtime-env-json \
	  '{"env_vars": {"MLFLOW_TRACKING_URI": "sqlite:///$(CURDIR)/mlruns.db"}}' \
	  -- $(abspath $(PY)) experiments/ablate_masking.py --root $(CURDIR)/runs/ablate $(RUN_ARGS)

## cluster-local: a two-node Ray cluster on this machine (`ray start --head`, then `ray start
## --address`, each with its own CPUs and resource), the tiny ablation submitted to it with
## `ray job submit` (2 Train workers per trial, one per node), where every stage ran, then both
## nodes stopped by their PIDs (runs in ./mlruns.db; RUN_ARGS e.g. --preset smoke)
cluster-local: $(STAMP)
	$(PY) cluster/local_cluster.py $(RUN_ARGS)

## analyse: the latest sweep's ablation table (Markdown + LaTeX) and plots from MLflow
analyse: $(STAMP)
	$(PY) -m analysis.ablation_table $(RUN_ARGS)

## report: one offline HTML page (tables, plots, protocol) for the latest sweep
report: $(STAMP)
	$(PY) -m analysis.report --out runs/analysis/report.html $(RUN_ARGS)

## ui: the MLflow UI on the embedded store, bound to 127.0.0.1 (http://127.0.0.1:5000)
ui: $(STAMP)
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlruns.db --host 127.0.0.1 --port 5000

## test: the fast suite (CI runs this); slow tests are excluded. A test past its timeout dumps
## every thread's stack and ends the run (thread method): a wait inside Ray ignores SIGALRM.
test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" --timeout=900 --timeout-method=thread

## test-slow: only the long tests
test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow --timeout=3600

## test-browser: a real MLflow server + the tiny sweep + headless Chromium on its UI (slow);
## screenshots land in $$CJEPA_TEST_ARTIFACTS (default runs/test-artifacts/)
test-browser: $(STAMP)
	$(PY) -m pytest -q -m slow --timeout=900 tests/distributed/test_mlflow_server.py

## browser-deps: Debian's Chromium for the slow browser check (needs root; no browser download)
browser-deps:
	command -v chromium >/dev/null || apt-get install -y --no-install-recommends chromium

test-all: $(STAMP)
	$(PY) -m pytest -q --timeout=3600

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## lock: re-resolve the exact pins in constraints.txt from pyproject.toml's ranges
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -e '.[dev]'
	{ echo "# Exact versions of the whole stack, installed with: pip install -c constraints.txt -e '.[dev]'"; \
	  echo "# Regenerate: make lock (after changing pyproject.toml ranges)."; \
	  .lock-venv/bin/pip freeze --exclude-editable | sed 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/'; } > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
