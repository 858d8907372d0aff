# The README's two commands: `make demo` (skood's main job) and `make test` (the test suite).
# Both create the virtual environment and install everything on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
# Override for another build, e.g. `make test TORCH_SPEC="torch==2.5.1"`.
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= test,bench,clip,dask
PY := $(VENV)/bin/python

.PHONY: install demo test test-numerics docs docs-check lint bench clean

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

# The float32 numerics tests (marked `numerics`) again under other CPU kernels and thread counts,
# so that an assumption of bit-identical float32 results fails here, not on a user's machine.
test-numerics: install
	for cap in default avx2; do for threads in 1 2; do \
		echo "numerics: ATEN_CPU_CAPABILITY=$$cap, $$threads thread(s)"; \
		ATEN_CPU_CAPABILITY=$$cap OMP_NUM_THREADS=$$threads SKOOD_TEST_THREADS=$$threads \
			$(PY) -m pytest -q -p no:cacheprovider -m numerics tests || exit 1; \
	done; done

# The documentation site, offline, warnings as errors: API reference, user guide, and the gallery,
# whose examples all run during the build. Output in docs/_build/html (open index.html). Then the
# built site is read as a visitor meets it (docs/check_site.py): no "issue N" in any page, no
# broken internal link or anchor, every public name in the API reference's sidebar.
$(VENV)/.installed-docs: $(VENV)/.installed-$(subst :,_,$(subst =,_,$(TORCH_SPEC)))
	$(PY) -m pip install --quiet -e ".[docs,bench]"
	touch $@

docs: $(VENV)/.installed-docs
	OMP_NUM_THREADS=1 $(PY) -m sphinx -W --keep-going -b html docs docs/_build/html
	OMP_NUM_THREADS=1 $(PY) docs/check_site.py docs/_build/html

# What CI runs: a clean build, so that every gallery example and every page is built again.
docs-check: $(VENV)/.installed-docs
	rm -rf docs/_build docs/generated docs/auto_examples docs/getting_started
	$(MAKE) docs

# The full side-by-side run recorded in docs/benchmarks.md (see that file for the exact command).
bench: install
	$(VENV)/bin/skood bench --data ../shared/data/adbench --bundled --n-jobs 2 --out docs/bench --force

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info docs/_build docs/generated docs/auto_examples docs/getting_started
