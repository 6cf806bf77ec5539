# cerm — the README's first two commands are `make run` and `make test`.
# Both install the system libraries when missing (Debian/Ubuntu, apt) and build what they need.

SWIFT       ?= swift
CONFIG      ?= cluster.toml
APT_PACKAGES = libzmq3-dev libopenblas-dev libhdf5-dev pkg-config
PKGCONFIG_MODULES = libzmq hdf5 openblas
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
RELEASE_BIN = .build/release/cerm

.PHONY: run test deps build build-debug bench bench-cluster clean help

help:
	@echo "make run    set up and run the default training pipeline ($(CONFIG))"
	@echo "make test   set up and run the whole test suite"
	@echo "make bench  engine, tokenizer and cluster benchmarks (release build)"

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

test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

bench: build
	$(RELEASE_BIN) bench engine
	$(RELEASE_BIN) bench tokenizer --tokenizer Tests/TokenizersTests/Fixtures/llama3.tokenizer.json
	scripts/bench_cluster.sh

# Distributed runtime only (BENCHMARKS.md, issue 6): cerm launch runs on this machine.
bench-cluster: build
	scripts/bench_cluster.sh

clean:
	rm -rf .build
