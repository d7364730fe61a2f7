# `make demo`: set everything up in .venv and run item2vec end to end on the
# embedded default (no server). `make test`: the test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EMB := $(VENV)/bin/embstore
HOME_DIR ?= demo-home
MOVIELENS ?=

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the CPU wheel of torch first: a looser requirement would pull CUDA packages
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,spark]"
	touch $@

demo: setup
	rm -rf $(HOME_DIR)
	$(EMB) --home $(HOME_DIR) init
ifeq ($(MOVIELENS),)
	$(PY) -m embstore.demo_data $(HOME_DIR)/input/interactions.csv
	$(EMB) --home $(HOME_DIR) run item2vec --set demo_items \
	  --input interactions=$(HOME_DIR)/input/interactions.csv \
	  --config epochs=10 --config seed=1 --promote prod
	$(EMB) --home $(HOME_DIR) versions demo_items
	$(EMB) --home $(HOME_DIR) recall demo_items@prod --id c0_i0 --id c5_i3 -k 5
else
	$(EMB) --home $(HOME_DIR) run item2vec --set movies_item2vec \
	  --input interactions=$(MOVIELENS)/ratings.csv \
	  --column interactions.user_id=userId --column interactions.item_id=movieId \
	  --config min_rating=3.5 --config min_count=10 --config epochs=10 --config seed=1 --promote prod
	$(EMB) --home $(HOME_DIR) versions movies_item2vec
	$(EMB) --home $(HOME_DIR) recall movies_item2vec@prod --id 1 --id 260 -k 5
endif

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

bench: setup
	$(PY) bench/bench_item2vec.py

clean:
	rm -rf $(VENV) $(HOME_DIR)
