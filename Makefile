# The two entry points of the README. Both bootstrap .venv from requirements.lock first.
.PHONY: run test lint lock

# The main job on the embedded default: no services to install.
run:
	@scripts/bootstrap
	@.venv/bin/aps-etl run

# The whole test suite against the real dev stack (started here if it is not running).
test:
	@scripts/bootstrap
	@scripts/test-tools
	@infra/stack up
	@.venv/bin/ruff check .
	@.venv/bin/ruff format --check .
	@.venv/bin/pytest

lint:
	@.venv/bin/ruff check --fix .
	@.venv/bin/ruff format .

# After changing dependencies in pyproject.toml: the full lock (tests, benchmarks) and the
# runtime lock the Dockerfile installs, resolved together.
lock:
	@scripts/bootstrap
	@.venv/bin/uv pip compile -q pyproject.toml --extra dev --python-version 3.11 -o requirements.lock
	@.venv/bin/uv pip compile -q pyproject.toml --python-version 3.11 -o requirements-runtime.lock
