# The README's two commands: `make demo` (skood's main job) and `make test` (the test suite).
# Both create the virtual environment and install everything on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
# Override for another build, e.g. `make test TORCH_SPEC="torch==2.5.1"`.
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= test,bench,clip
PY := $(VENV)/bin/python

.PHONY: install demo test lint bench clean

$(VENV)/.installed-$(subst :,_,$(subst =,_,$(TORCH_SPEC))): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: skood's own `torch>=2.1` is then satisfied and pulls nothing else.
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed-$(subst :,_,$(subst =,_,$(TORCH_SPEC)))

demo: install
	$(VENV)/bin/skood demo

test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

# The full side-by-side run recorded in docs/benchmarks.md (see that file for the exact command).
bench: install
	$(VENV)/bin/skood bench --data ../shared/data/adbench --bundled --n-jobs 2 --out docs/bench

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
