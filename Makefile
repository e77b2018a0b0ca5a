# Both Sides Daily. `make run` and `make test` are all a newcomer needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install lock run test lint bench clean

install: $(VENV)/.installed

# Exact versions come from the lock file; pyproject.toml keeps the ranges. After changing
# a dependency in pyproject.toml, `make lock` re-resolves and rewrites requirements-dev.txt.
$(VENV)/.installed: pyproject.toml requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

lock: install
	$(BIN)/pip-compile --quiet --extra dev --strip-extras --allow-unsafe \
		--no-emit-index-url --no-emit-find-links --no-emit-trusted-host \
		-o requirements-dev.txt pyproject.toml

# `make run` serves on PORT (default 5000) with links made for it (BASE_URL). Without
# STRIPE_SECRET_KEY in the environment, billing runs in TEST MODE against localstripe and
# the local Checkout/portal stand-in (newsletter/dev/stripe_standin.py): no account needed.
PORT ?= 5000
run: export PORT := $(PORT)
run: export BASE_URL ?= http://localhost:$(PORT)
ifeq ($(origin STRIPE_SECRET_KEY),undefined)
RUN_PROCESSES := web worker localstripe stripe
run: export STRIPE_SECRET_KEY := sk_test_local
run: export STRIPE_API_BASE := http://localhost:8420
run: export STRIPE_PRICE_ID := price_local_monthly
run: export STRIPE_WEBHOOK_SECRET := whsec_local_standin
run: export STRIPE_DEV_STANDIN := 1
else
RUN_PROCESSES := web worker
endif
run: install
	$(BIN)/newsletter db upgrade
	$(BIN)/newsletter demo
	$(BIN)/honcho start --no-prefix -f Procfile $(RUN_PROCESSES)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Benchmarks (bench/README.md): scripts with a baseline in the same run, not tests.
# send.py, clicks.py and webhooks.py need PostgreSQL (each wipes the schema of its own
# database); send.py needs Postfix's smtp-sink (apt-get install -y postfix), clicks.py
# needs wrk (apt-get install -y wrk). Each prints its ratio last; `-` keeps going when
# one misses its target.
BENCH_DATABASE_URL ?= postgresql+psycopg://root@127.0.0.1:5432/test_h3
CLICKS_DATABASE_URL ?= postgresql+psycopg://root@127.0.0.1:5432/test_h4
WEBHOOKS_DATABASE_URL ?= postgresql+psycopg://root@127.0.0.1:5432/test_h5
bench: install
	-$(BIN)/python bench/render.py
	-$(BIN)/python bench/send.py --readers 20000 --database-url $(BENCH_DATABASE_URL)
	-$(BIN)/python bench/clicks.py --database-url $(CLICKS_DATABASE_URL)
	-$(BIN)/python bench/webhooks.py --database-url $(WEBHOOKS_DATABASE_URL)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy -p newsletter -p jobs -p webhooks

clean:
	rm -rf $(VENV) instance .pytest_cache
