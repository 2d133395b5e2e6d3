# The two front-door commands (README): `make demo` and `make test`. Both create .venv on first use.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO ?= demo

.PHONY: venv demo test lint

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	# The pair that works with timm on this platform first; the project asks only for ranges.
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	# compat: a path entry (not an import hook), so a folder named like a package (e.g. a store called
	# 'store') in the working directory never shadows the project in Ray workers.
	$(BIN)/pip install -q -c constraints.txt -e '.[test]' --config-settings editable_mode=compat
	touch $@

venv: $(BIN)/.installed

demo: venv
	PATH=$(abspath $(BIN)):$$PATH bash bin/demo.sh $(DEMO)

test: venv
	PATH=$(abspath $(BIN)):$$PATH HF_HUB_OFFLINE=1 python -m pytest -q

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
