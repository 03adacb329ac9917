# Two commands do everything:  `make reproduce`  and  `make test`.
# Each creates/updates the local virtual environment .venv on its own.
PYTHON     ?= python3
VENV       ?= .venv
BIN        := $(VENV)/bin
# torch is installed first, pinned, so no other package can pull an unpinned (multi-GB CUDA) build.
# On a GPU machine use e.g.  make test TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
STAMP      := $(VENV)/.mhe-installed
PYTEST_ARGS ?=

.PHONY: all venv lint test durations reproduce notebooks strip lab benchmark book clean

all: test

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[test,book]"
	@touch $@

venv: $(STAMP)

## make test: lint and the whole test suite, notebooks (smoke mode) and browser tests included, on two workers,
## the longest tests first (tests/durations.json; see tests/conftest.py). mypy runs beside the tests (its report
## is printed after them); a lint error fails make test as a failed test does.
test: $(STAMP)
	$(BIN)/ruff check .
	mkdir -p build; $(BIN)/mypy > build/mypy.log 2>&1 & mypy=$$!; \
	$(BIN)/python -m pytest -n 2 --dist loadgroup --no-loadscope-reorder $(PYTEST_ARGS); tests=$$?; \
	wait $$mypy; types=$$?; echo "== mypy"; cat build/mypy.log; \
	if [ $$types -ne 0 ]; then echo "make test: mypy failed (above)"; exit 1; fi; exit $$tests

## make durations: run the suite and update tests/durations.json with each test's duration (make test's order).
durations: $(STAMP)
	MHE_RECORD_DURATIONS=tests/durations.json $(BIN)/python -m pytest -n 2 --dist loadgroup --no-loadscope-reorder -q $(PYTEST_ARGS)

## make lint: ruff (pycodestyle, pyflakes, bugbear, import sorting) and mypy, configured in pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

## make reproduce: run the notebook sequence on the embedded defaults and (re)write figures/.
reproduce: $(STAMP)
	$(BIN)/python -m mhe.lab.notebooks reproduce

## make lab: open the tutorials in JupyterLab.
lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

## make strip: strip outputs from the notebooks before committing.
strip: $(STAMP)
	$(BIN)/python -m mhe.lab.notebooks strip notebooks/*.ipynb

## make benchmark: speed and memory figures (printed).
benchmark: $(STAMP)
	@for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

## make book: the tutorials as a website in build/book/ (open build/book/index.html, or
## `python -m http.server -d build/book`): the executed notebooks (run again only where their code changed
## since `make reproduce`), docs/, the results and the API reference. SMOKE=1 make book: a quick one from
## smoke runs, in build/book-smoke/ (CI).
book: $(STAMP)
	$(BIN)/python book/build.py $(if $(filter-out 0,$(SMOKE)),--smoke,)

clean:
	rm -rf build .pytest_cache
