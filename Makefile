# The two commands: `make demo` (whole pipeline on the embedded sample) and `make test`.
# Both create .venv on first use; torch is pinned so a CPU machine gets no CUDA packages.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing tokenmill and its dependencies into $(VENV) (a few minutes the first time; log: $(VENV)/install.log)"
	@$(BIN)/pip install --disable-pip-version-check torch==2.13.0 -e '.[dev]' --config-settings editable_mode=compat > $(VENV)/install.log 2>&1 \
		|| { tail -n 30 $(VENV)/install.log; echo "install failed: see $(VENV)/install.log"; exit 1; }
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tokenmill run configs/demo.toml

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf runs/demo
