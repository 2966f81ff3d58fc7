.PHONY: run test lint format bench messages
run:        ## the app on SQLite with the demo cohort
	scripts/run.sh
test:       ## the whole suite on PostgreSQL with a real browser (what CI runs)
	scripts/test.sh
lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
format:
	.venv/bin/ruff format . && .venv/bin/ruff check --fix .
messages:   ## update every translation catalogue from the code and compile them
	scripts/messages.sh
