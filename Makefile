# The two entry points of the README. Both bootstrap .venv from requirements.lock first.
.PHONY: run test unit lint lock bench soak typecheck images deploy

# The main job on the embedded default: no services to install.
run:
	@scripts/bootstrap
	@.venv/bin/aps-etl run

# The whole test suite against the real dev stack (started here if it is not running): the
# Debian packages, the stack, the lints, then pytest on three workers beside the image build
# (scripts/test-suite).
test:
	@scripts/bootstrap
	@scripts/test-tools
	@infra/stack up
	@.venv/bin/ruff check .
	@.venv/bin/ruff format --check .
	@.venv/bin/lint-imports --no-cache
	@$(MAKE) --no-print-directory typecheck
	@scripts/test-suite

# The fast tier: every test that needs no dev stack, no fault injection and no Debian
# package (pure logic, definitions, the embedded default, the local lake); no services.
unit:
	@scripts/bootstrap
	@.venv/bin/ruff check .
	@.venv/bin/ruff format --check .
	@.venv/bin/lint-imports --no-cache
	@.venv/bin/pytest -m "not stack and not faults and not tools and not docker and not slow" -p no:cacheprovider -n 2 --dist loadgroup

# The fault proxy's soak (issue 29): business days through Toxiproxy on the dev stack, 5% of
# every connection reset and a service down for seconds every 12 s; writes
# .aps-etl/fault-soak.json (a measured copy: benchmarks/results/fault_soak.json).
soak:
	@scripts/bootstrap
	@infra/stack up
	@.venv/bin/pytest -m soak aps_etl_tests/faults/test_network_faults.py -p no:cacheprovider

# The benchmark suite (benchmarks/): our job at 1M and 10M source rows, stage by stage,
# side by side with pandas, dlt and the ADBC floor on the same data. Writes
# benchmarks/results/latest.{md,json} and a timestamped copy; about an hour the first time
# (seeding 10M rows twice), less afterwards. `--bench-scale=smoke` runs it at a few
# thousand rows.
bench:
	@scripts/bootstrap
	@infra/stack up
	@.venv/bin/pytest benchmarks -p no:cacheprovider $(BENCH_ARGS)

# The compose deployment's images, built here from Debian's packages and the locks
# (infra/docker/build; starts a Docker engine if none is running).
images:
	@infra/docker/build

# The compose deployment from those images (infra/docker/deploy up: writes infra/.env with
# random secrets when it does not exist, waits until every service is healthy).
deploy:
	@infra/docker/deploy up

# mypy over aps_etl/ (configuration: [tool.mypy] in pyproject.toml).
typecheck:
	@.venv/bin/mypy

lint:
	@.venv/bin/ruff check --fix .
	@.venv/bin/ruff format .

# After changing dependencies in pyproject.toml: the full lock (tests, benchmarks) and the
# runtime lock the Dockerfile installs, resolved together.
lock:
	@scripts/bootstrap
	@.venv/bin/uv pip compile -q pyproject.toml --extra dev --python-version 3.11 --generate-hashes -o requirements.lock
	@.venv/bin/uv pip compile -q pyproject.toml --python-version 3.11 --generate-hashes -o requirements-runtime.lock
