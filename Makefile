# cerm — the README's first two commands are `make run` and `make test`.
# Both install the system libraries when missing (Debian/Ubuntu, apt) and build what they need.

SWIFT       ?= swift
CONFIG      ?= cluster.toml
APT_PACKAGES = libzmq3-dev libopenblas-dev libhdf5-dev pkg-config
PKGCONFIG_MODULES = libzmq hdf5 openblas
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
RELEASE_BIN = .build/release/cerm

.PHONY: run test test-report deps deps-report build build-debug bench bench-cluster clean help

help:
	@echo "make run    set up and run the default training pipeline ($(CONFIG))"
	@echo "make test   set up and run the whole test suite"
	@echo "make bench  engine and cluster benchmarks (release build)"
	@echo "make test-report  the training report's tests, in headless Chromium (installs Debian's chromium)"

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
	@# prometheus_client's parser reads metrics.prom in its test: into .venv-ref when no python3 has it.
	@if ! python3 -c 'import prometheus_client' 2>/dev/null && ! .venv-ref/bin/python -c 'import prometheus_client' 2>/dev/null; then \
		echo "==> installing prometheus-client into .venv-ref"; \
		python3 -m venv .venv-ref && .venv-ref/bin/pip install -q prometheus-client; \
	fi

test-report: deps deps-report
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --filter 'RunReportTests|RunReportBrowserTests|PrometheusTextFileTests'

bench: build
	$(RELEASE_BIN) bench engine
	scripts/bench_cluster.sh

# Distributed runtime only (BENCHMARKS.md, issue 6): cerm launch runs on this machine.
bench-cluster: build
	scripts/bench_cluster.sh

clean:
	rm -rf .build
