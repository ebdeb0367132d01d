# The two commands: `make demo` (whole pipeline on the embedded sample) and `make test`.
# Both create .venv on first use; torch is pinned so a CPU machine gets no CUDA packages.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean chromium

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing tokenmill and its dependencies into $(VENV) (a few minutes the first time; log: $(VENV)/install.log)"
	@$(BIN)/pip install --disable-pip-version-check torch==2.13.0 -e '.[dev]' --config-settings editable_mode=compat > $(VENV)/install.log 2>&1 \
		|| { tail -n 30 $(VENV)/install.log; echo "install failed: see $(VENV)/install.log"; exit 1; }
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tokenmill run configs/demo.toml

test: $(STAMP) chromium
	$(BIN)/python -m pytest

# The report's browser test (tests/report/test_report_html.py) opens report.html in Debian's Chromium; it is
# installed here when missing and apt-get can (as root, or with sudo that needs no password). A failed
# install is reported, and the test then says why it skipped.
CHROMIUM ?= /usr/bin/chromium
chromium:
	@test -x $(CHROMIUM) || ! command -v apt-get > /dev/null || { \
		mkdir -p $(VENV); \
		SUDO=$$(test "$$(id -u)" = 0 || echo "sudo -n"); \
		echo "installing Debian's chromium for the report's browser test (log: $(VENV)/chromium-install.log)"; \
		for try in 1 2 3; do \
			$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
				chromium fonts-dejavu-core && break; \
			$$SUDO apt-get update -q || sleep 5; \
		done > $(VENV)/chromium-install.log 2>&1; \
		test -x $(CHROMIUM) || { tail -n 20 $(VENV)/chromium-install.log; \
			echo "chromium was not installed: the report's browser test will be skipped"; }; \
	}

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf runs/demo
