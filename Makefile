# Everything the project needs is installed by these targets into .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA := data
# torch's OpenMP threads spin while waiting; on 2 shared cores that made small d×d solves 100×
# slower. Passive waiting costs nothing measurable here.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install demo test lint bench-data bench bench-summary bench-overhead bench-gpu screenshot clean cli-example

install: $(STAMP)

# torch is pinned to the CPU wheel first (an unpinned torch may pull a multi-GB CUDA build);
# the package itself only asks for a range that 2.13.0 satisfies.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q "torch==2.13.0" -e ".[dev,demo]"
	touch $(STAMP)

# Movie-review snippets ship inside vaderSentiment's source archive (MIT); fetched from PyPI once.
$(DATA)/movieReviewSnippets_GroundTruth.txt: | $(STAMP)
	$(PY) -m benchmarks.shared.sources fetch-vader --dest $(DATA)

demo: install $(DATA)/movieReviewSnippets_GroundTruth.txt
	$(PY) examples/demo.py --data $(DATA) --logdir runs/demo

# The LightningCLI example (examples/cli): write its probe file, then train from the YAML.
cli-example: install
	$(PY) examples/cli/make_probe.py runs/cli/probe.pt
	$(PY) examples/cli/model.py fit --config examples/cli/config.yaml

# --durations prints the slowest tests; pyproject's --timeout fails a hung test after 5 minutes
test: install
	$(PY) -m pytest -q -p no:cacheprovider --durations=15 tests

# ruff (lint and format) over the project's code, mypy over the package
lint: install
	$(PY) -m ruff check lightning_w2s tests benchmarks examples docs
	$(PY) -m ruff format --check lightning_w2s tests benchmarks examples docs
	$(PY) -m mypy

# Benchmark data (DATA.md), all from package registries, cached under data/ (gitignored). The
# Debian packages are fetched with `apt-get download` and unpacked with `dpkg-deb -x` into
# data/debian (no install into the system; `apt-get update` only when the package lists lack them).
DEBS := dataset-fashion-mnist r-cran-modeldata
$(DATA)/debian/.unpacked:
	mkdir -p $(DATA)/debian/archives
	cd $(DATA)/debian/archives && (apt-get download $(DEBS) || (apt-get update -qq && apt-get download $(DEBS)))
	for deb in $(DATA)/debian/archives/*.deb; do dpkg-deb -x "$$deb" $(DATA)/debian; done
	touch $@

$(VENV)/.bench-installed: $(STAMP) pyproject.toml
	$(PY) -m pip install -q "torch==2.13.0" -e ".[bench]"
	touch $@

bench-data: install $(VENV)/.bench-installed $(DATA)/debian/.unpacked
	$(PY) -m benchmarks.shared.tasks prepare --data $(DATA)

bench-summary: bench-data
	$(PY) -m benchmarks.shared.tasks --summary --data $(DATA)

# In one run: cheap-student check vs bare forward, the check beside busy processes, fit
# overhead for the MLP head, the CNN and the fine-tuned MiniLM; the decoder student's check / forward on CPU; then the representation algebra's
# figures (benchmarks.representation.run --quick: d = 4096 compute time and agreement, worst under load).
bench-overhead: bench-data
	$(PY) -m benchmarks.overhead.run --data $(DATA)
	$(PY) -m benchmarks.overhead.encoder --data $(DATA)
	$(PY) -m benchmarks.overhead.decoder --device cpu
	$(PY) -m benchmarks.representation.run --quick

# On a CUDA machine: the decoder LLM student (random Llama, LoRA, bf16-mixed, left padding) — check /
# bare forward and fit with / without the monitor (medians of repeats); the CUDA tests too.
# Without a CUDA device it says so and exits 0.
bench-gpu: install
	$(PY) -m benchmarks.overhead.decoder --device cuda
	$(PY) -m pytest -q -p no:cacheprovider tests/test_cuda.py

# Representation gap (synthetic data): streaming vs dense, compute() at d = 4096 vs the exact path,
# worst-under-load vs alone (measured without OMP_WAIT_POLICY: the script drops it), state memory.
.PHONY: bench-representation
bench-representation: install
	$(PY) -m benchmarks.representation.run

# Every benchmark, one after the other.
bench: bench-summary bench-representation bench-validity bench-regression bench-stopping bench-overhead bench-ranking

# Weak-to-strong regression on real data: movie ratings as gold, 4 x VADER compound as the teacher,
# heads on frozen MiniLM; Charikar's predicted gain vs the measured gain per epoch, 5 seeds (~2 min)
.PHONY: bench-regression
bench-regression: bench-data
	$(PY) -m benchmarks.regression.run --data $(DATA)

# Do the bounds and predictions hold on the real tasks? 0/1 band, Charikar, Xue ranking, Lang (~6 min on 2 cores)
.PHONY: bench-validity
bench-validity: bench-data
	$(PY) -m benchmarks.validity.run --data $(DATA)

clean:
	rm -rf runs lightning_logs .pytest_cache

# README screenshots: the demo's W2S dashboard in a real TensorBoard server, headless Chromium
# (the custom-scalars tab, and the text tab with the constants of the probe and the warnings).
screenshot: demo
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	bash examples/screenshot_dashboard.sh runs/demo docs/dashboard.png custom_scalars
	bash examples/screenshot_dashboard.sh runs/demo docs/dashboard_text.png text

# Stopping regret: 13 (task, teacher) pairs x 8 seeds, each trained once and recorded under
# data/stopbench_runs/ (first run: hours on 2 shared cores, see benchmarks/stopping/run.py; then ~35 s),
# every rule replayed offline; rules chosen on seeds 0-3, reported on seeds 4-7.
.PHONY: bench-stopping
bench-stopping: bench-data
	$(PY) -m benchmarks.stopping.run --data $(DATA)

# Teacher ranking across tasks: rank_teachers' label-free scores vs the gold error of W2S
# students trained on each of 15 teachers, 3 tasks x 3 seeds; default chosen leave-one-task-out.
# First run ~15-20 min on 2 shared cores (measured 927 s); cached under data/ranking_* (then seconds).
.PHONY: bench-ranking
bench-ranking: bench-data
	$(PY) -m benchmarks.ranking.run --data $(DATA)
