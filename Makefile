# The single entry point. The README's two commands are `make course` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LAB_OVERRIDES := $(VENV)/share/jupyter/lab/settings/overrides.d/shuffle-attention-course.json
JUPYTER_ARGS ?=   # extra options for `make course`, e.g. --no-browser --port=8890

.PHONY: course test env browser sandbox notebooks exercises grade bench constraints

# Create the virtual environment (once; again when the pins change): the course, editable, with
# JupyterLab (the lab extra) and the test tools (the test extra), at the pinned versions.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[lab,test]"
	touch $@

env: $(STAMP) $(LAB_OVERRIDES)

# The course's JupyterLab defaults (no "get notified about Jupyter news" pop-up, no update
# check), where JupyterLab reads packages' defaults: the learner's own settings win. A wheel
# install puts the file there itself; an editable install does not.
$(LAB_OVERRIDES): jupyter/overrides.d/shuffle-attention-course.json $(STAMP)
	mkdir -p $(dir $@) && cp $< $@

## Open the course in JupyterLab, at the first lesson (`sa-course lab`). It serves the whole
## project folder (lessons, exercises, solutions).
course: $(STAMP) $(LAB_OVERRIDES)
	$(BIN)/sa-course lab . $(JUPYTER_ARGS)

## Set up if needed, then run every test: unit tests, notebooks (nbval), grader, browser.
test: $(STAMP) $(LAB_OVERRIDES) browser sandbox
	$(BIN)/python -m pytest

# Headless Chromium for the JupyterLab browser test (Debian's package; root only).
browser:
	@bash scripts/ensure_chromium.sh

# Debian's bubblewrap for the grader's sandbox (root only; the grader works without it, less safely).
sandbox:
	@bash scripts/ensure_bwrap.sh

## Re-execute the lessons in place, so that their stored outputs are current.
notebooks: $(STAMP)
	$(BIN)/python -m sa_course.run_notebooks notebooks/*.ipynb

## Write exercises/ (stubs) and solutions/ (executed) from course/exercises/.
exercises: $(STAMP)
	$(BIN)/python -m sa_course.build_exercises

## Grade the exercise notebooks (NB=exercises/02_channel_gate.ipynb for one; STRICT=1 grades as an
## instructor's --strict run does). It ends with the grader's summary line and succeeds whenever the
## grader could grade; scripts that need the verdict as an exit status call `python -m sa_course.grade`
## (1 while an exercise does not pass).
NB ?= exercises/
STRICT ?=
grade: $(STAMP) sandbox
	@$(BIN)/python -m sa_course.grade $(NB) $(if $(filter-out 0,$(STRICT)),--strict); status=$$?; [ $$status -le 1 ] || exit $$status

## NumPy vs torch timings, written over docs/results/numpy_vs_torch.md (that is what this target is for).
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_sa.py --out docs/results/numpy_vs_torch.md --overwrite

constraints: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | sed '/^-e /d' > /tmp/freeze.txt
	@echo "review /tmp/freeze.txt and merge it into constraints.txt"
