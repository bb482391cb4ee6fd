# lens-embed developer targets. `make install` sets up .venv; every other target uses it.
PY ?= .venv/bin/python
PIP ?= .venv/bin/pip
DATA ?= ../shared/data
OUTPUT ?= results

.PHONY: install test lint bench quickstart

# torch first, pinned: 2.13.0 is the CPU build on disk here; an unpinned torch pulls CUDA wheels.
# constraints.txt is the exact tested set; pyproject.toml holds the ranges.
# air-benchmark declares pytrec-eval (a source build that downloads trec_eval); mteb's
# pytrec-eval-terrier provides the same `pytrec_eval` module, so it is installed without deps.
install:
	test -d .venv || python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	$(PIP) install -q -c constraints.txt --no-deps air-benchmark==0.1.0

test:
	$(PY) -m pytest -q tests

# The embedded default (LENS from the offline all-MiniLM-L6-v2, built once into ~/.cache/lens-embed),
# then a comparison and an explanation of a few sentences with it.
quickstart: install
	M=$$(.venv/bin/lens-embed default) && \
	.venv/bin/lens-embed info $$M && \
	.venv/bin/lens-embed explain $$M "A man is playing a guitar." --document "Someone plays a musical instrument." --top 5 && \
	.venv/bin/lens-embed explain $$M "A man is playing a guitar." --document "Stock markets fell sharply today." --top 5

# ruff's checks and its formatter's check (CI runs this before the tests: it fails in seconds).
lint:
	$(PY) -m ruff check lens_embed eval examples tests benchmarks
	$(PY) -m ruff format --check lens_embed eval examples tests benchmarks

# ---- evaluation targets ----
# OUTPUT is mteb's results folder: OUTPUT/results/<org__model>/<revision>/<Task>.json (+ model_meta.json,
# lens_embed_protocol.json). DTYPE=float32|bfloat16|float16 (default: float16 on CUDA, else float32),
# ATTN=sdpa|flash_attention_2|eager, INSTRUCTIONS=authors|mteb|FILE.json (LENS models; default authors),
# BASELINES=none|minilm|bm25|all (default: none for eval-mteb, all for eval-offline).
EVAL ?= $(PY) eval/evaluate.py
# DATA= on the command line wins; else $$LENS_EMBED_DATA if set; else the DATA default above.
DATA_FLAG = $(if $(and $(LENS_EMBED_DATA),$(filter file,$(origin DATA))),,--data "$(DATA)")
MODEL ?=
TASKS ?=
DTYPE ?=
ATTN ?=
INSTRUCTIONS ?=
BASELINES ?=
RESULTS ?=
REFERENCE ?= yibinlei/LENS-d8000
LOAD_FLAGS = $(if $(DTYPE),--dtype $(DTYPE)) $(if $(ATTN),--attn-implementation $(ATTN))
PROTOCOL_FLAGS = $(LOAD_FLAGS) $(if $(INSTRUCTIONS),--instructions "$(INSTRUCTIONS)") $(if $(BASELINES),--baselines $(BASELINES))

.PHONY: eval-mteb eval-offline eval-airbench check-harness eval-compare

# A released LENS model (yibinlei/LENS-d8000) ends with the comparison against its published scores.
eval-mteb:
	@test -n "$(MODEL)" || { echo "usage: make eval-mteb MODEL=path/or/yibinlei/LENS-d8000 [TASKS=\"SciFact NFCorpus\"] [OUTPUT=results] [DTYPE=] [ATTN=] [INSTRUCTIONS=] [BASELINES=]"; exit 2; }
	$(EVAL) mteb --model "$(MODEL)" --output "$(OUTPUT)" $(if $(TASKS),--tasks "$(TASKS)") $(PROTOCOL_FLAGS)

eval-offline:
	$(EVAL) offline $(if $(MODEL),--model "$(MODEL)") $(DATA_FLAG) --output "$(OUTPUT)" $(if $(TASKS),--tasks "$(TASKS)") $(PROTOCOL_FLAGS)

eval-airbench:
	@test -n "$(MODEL)" || { echo "usage: make eval-airbench MODEL=path [OUTPUT=results] [AIRBENCH_DATA=local/folder] [DTYPE=] [ATTN=]"; exit 2; }
	$(EVAL) airbench --model "$(MODEL)" --output "$(OUTPUT)" $(if $(AIRBENCH_DATA),--airbench-data "$(AIRBENCH_DATA)") $(LOAD_FLAGS)

check-harness:
	$(EVAL) check-harness $(DATA_FLAG) --output "$(OUTPUT)" $(LOAD_FLAGS)

# Our results (one model's folder) vs the published scores of a released LENS model.
eval-compare:
	@test -n "$(RESULTS)" || { echo "usage: make eval-compare RESULTS=results/results/<org__model>/<revision> [REFERENCE=yibinlei/LENS-d8000] [TOLERANCE=0.5]"; exit 2; }
	$(EVAL) compare "$(RESULTS)" --reference "$(REFERENCE)" $(if $(TOLERANCE),--tolerance $(TOLERANCE))

# ---- training targets (issue 4) ----
# Fine-tune the embedded LENS-MiniLM, dense MiniLM and the hybrid with one recipe on $(DATA)/training
# (BM25 negatives where rows have none), then score all six on part of the offline suite.
TRAIN_DEMO_STEPS ?= 30
TRAIN_DEMO_TASKS ?= STSBenchmark STS16 STS13 BIOSSES

.PHONY: train-demo test-training

train-demo:
	$(PY) examples/train_demo.py --data $(DATA) --output $(OUTPUT)/train-demo \
		--steps $(TRAIN_DEMO_STEPS) --batch-size 16 --group-size 4 --lr 3e-4 --max-seq-length 128 \
		--tasks $(TRAIN_DEMO_TASKS)

test-training:
	$(PY) -m pytest -q tests/training

# ---- the embedded default (issue 20) ----
# Train the embedded default LENS-MiniLM (seeded): the teacher-scored data, LoRA training, the parameter file
# and its provenance in OUTPUT/train-default (see README, "The embedded default"). TRAIN_DEFAULT_ARGS="--base
# dense" trains the dense MiniLM with the identical recipe and data (the comparison).
TRAIN_DEFAULT_ARGS ?=
.PHONY: train-default
train-default:
	$(PY) -m lens_embed.commands --verbose train-default --data $(DATA) --output $(OUTPUT)/train-default $(TRAIN_DEFAULT_ARGS)

# ---- benchmarks ----
MODEL ?=
.PHONY: bench bench-cpu bench-gpu train-check bench-index bench-engine bench-sparse bench-scale
# Pooling memory, encoding throughput and the lexicon head's overhead over dense MiniLM (a few minutes on 2 cores).
bench:
	$(PY) benchmarks/bench_encode.py --data $(DATA) $(if $(MODEL),--model $(MODEL),)

# CPU backends (issue 27): texts/s of the embedded default and the dense MiniLM on torch fp32, ONNX Runtime and
# OpenVINO (fp32, int8), 2000 STSBenchmark sentences and 1000 SciFact documents; models exported in
# OUTPUT/bench-cpu. BENCH_CPU_ARGS="--sts-texts 200 --scifact-docs 100 --rounds 1" for a quick run.
BENCH_CPU_ARGS ?=
bench-cpu:
	$(PY) benchmarks/bench_cpu.py --data $(DATA) --workdir $(OUTPUT)/bench-cpu --json $(OUTPUT)/bench-cpu.json \
		$(if $(MODEL),--model $(MODEL),) $(BENCH_CPU_ARGS)

# On a GPU: a random Mistral-7B-shaped LENS model (K=8000), three pipelines; ~15 GB written to BENCH_WORKDIR.
# BENCH_GPU_ARGS="--scale tiny --dtype float32" runs the same script on a CPU in seconds.
BENCH_WORKDIR ?= /tmp
BENCH_GPU_ARGS ?=
bench-gpu:
	$(PY) benchmarks/bench_gpu.py --workdir $(BENCH_WORKDIR) --json $(OUTPUT)/bench-gpu.json $(BENCH_GPU_ARGS)

# On a GPU: 30 bf16 LoRA steps of a small random Mistral-shaped LENS model (hidden 1024, 8 layers, K=512)
# on synthetic retrieval rows: tokens/s, peak memory, loss going down; ~1.5 GB written to BENCH_WORKDIR.
# TRAIN_CHECK_ARGS="--scale tiny --precision fp32" runs the same script on a CPU in seconds.
TRAIN_CHECK_ARGS ?=
train-check:
	$(PY) benchmarks/train_check.py --workdir $(BENCH_WORKDIR) --json $(OUTPUT)/train-check.json $(TRAIN_CHECK_ARGS)

# Index memory per million documents and recall@10 against exact search, SciFact with the embedded default.
bench-index:
	$(PY) benchmarks/bench_index.py --data $(DATA) --output $(OUTPUT)/bench-index

# The Qdrant engine (in-process, qdrant-edge-py) on SciFact with the embedded default: dense float32/float16
# exact and HNSW, sparse at each pruning level, hybrid with BM25: memory per million documents, recall@10
# against exact search, nDCG@10, ms per query. BENCH_ENGINE_ARGS="--max-docs 1000" for a quicker run.
BENCH_ENGINE_ARGS ?=
bench-engine:
	$(PY) benchmarks/bench_engine.py --data $(DATA) --output $(OUTPUT)/bench-engine $(BENCH_ENGINE_ARGS)

# The in-process engine at N = SCALE_SIZES documents (synthetic mixtures of the embedded default's real SciFact
# document vectors, real queries): build time, RAM and disk per document, p50/p99 ms per query on one core,
# recall@10 against exact search, growth exponents, and the capacity of a cluster of SCALE_NODE_RAM_GIB nodes
# for 10M/100M documents. A quick check: make bench-scale SCALE_SIZES="2000 5000" SCALE_ARGS="--max-queries 100"
SCALE_SIZES ?= 10000 100000 1000000
SCALE_CONFIGS ?= dense-exact f16-hnsw int8 binary sparse sparse-pruned
SCALE_PRUNING ?= 256
SCALE_NODE_RAM_GIB ?= 64
SCALE_ARGS ?=
bench-scale:
	$(PY) benchmarks/bench_scale.py --data $(DATA) --output $(OUTPUT)/bench-scale --sizes $(SCALE_SIZES) \
		--configs $(SCALE_CONFIGS) --pruning $(SCALE_PRUNING) --node-ram-gib $(SCALE_NODE_RAM_GIB) $(SCALE_ARGS)

# Sparse LENS (issue 25's table): each model of SPARSE_MODELS (LABEL=PATH ...; default: the untrained construction
# and the trained embedded default) as it is, cut to its top 512/256/128/64 dimensions (documents and queries),
# and, for the labels in SPARSE_TOPK_MODELS, pooled per position with each k of SPARSE_TOPK (set on the loaded
# model): active dimensions per document and query (mean, p90), SciFact nDCG@10 on the embedded engine, the STS
# average, Banking77, index bytes, ms per query. BENCH_SPARSE_ARGS="--max-docs 1000" for the 1000-document table.
SPARSE_MODELS ?=
SPARSE_TOPK ?= 1 2 3 4 6 8 12
SPARSE_TOPK_MODELS ?= default
BENCH_SPARSE_ARGS ?=
bench-sparse:
	$(PY) benchmarks/bench_sparse.py --data $(DATA) --output $(OUTPUT)/bench-sparse \
		$(foreach model,$(SPARSE_MODELS),--model $(model)) --position-top-k $(SPARSE_TOPK) \
		--position-top-k-models $(SPARSE_TOPK_MODELS) $(BENCH_SPARSE_ARGS)

# On a GPU machine: attention kernels (incl. flash_attention_2), bf16, torch KMeans, throughput.
device-check:
	$(PY) benchmarks/device_check.py
