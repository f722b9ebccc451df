.PHONY: setup demo check test lint unit
setup:
	bash scripts/setup.sh
demo:
	bash scripts/demo.sh
check test:
	bash scripts/test.sh
lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy truckcount ingest detector aggregator storage tests benchmarks
unit:
	.venv/bin/pytest -q -m "not slow"
