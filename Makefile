# Set-up and the two everyday jobs. `make demo` and `make test` each install what they need first.
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin

$(BIN)/paperspec: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU wheel first: an unpinned torch requirement would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test,onnx-torch]'
	touch $@

install: $(BIN)/paperspec

demo: install
	$(BIN)/paperspec check specs/*.pspec
	$(BIN)/paperspec compile specs/transformer.pspec --model GPT -o out/gpt.py
	$(BIN)/paperspec summary specs/transformer.pspec --model GPT
	$(BIN)/paperspec forward specs/transformer.pspec --model GPT --size T=32
	$(BIN)/paperspec reproduce specs/transformer.pspec --out out/runs
	$(BIN)/paperspec export specs/transformer.pspec --model GPT --weights $$(ls -d out/runs/gpt/lm/*/ | tail -1) --verify -o out/gpt.onnx

# Every spec's full reproduction; regenerates the claims table in docs/REPRODUCTIONS.md.
reproduce: install
	$(BIN)/paperspec reproduce specs/*.pspec --quiet --report docs/REPRODUCTIONS.md

# Every spec end to end at its quick settings (what CI runs, inside `make test`).
reproduce-quick: install
	$(BIN)/paperspec reproduce specs/*.pspec --quick --quiet --out runs

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python bench/compile_time.py
	$(BIN)/python bench/forward_overhead.py
	$(BIN)/python bench/train_overhead.py
	$(BIN)/python bench/onnx_export.py
	$(BIN)/python bench/onnx_inference.py
	$(BIN)/python bench/message_passing.py
	$(BIN)/python bench/linear_scan.py

.PHONY: install demo test lint bench reproduce reproduce-quick
