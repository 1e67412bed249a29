# Barge developer commands. `make test` is the one test command.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

CARGO ?= cargo

.PHONY: test control-plane lint fmt

## control-plane: build etcd, kube-apiserver, kubectl and helm from Go modules (cached by version)
control-plane:
	@bash hack/control-plane/build.sh

## test: build the control plane if needed, then run every test against it
test:
	@bin=$$(bash hack/control-plane/build.sh | tail -n 1); \
	BARGE_K8S_BIN=$$bin $(CARGO) test --workspace

## lint: formatting and clippy, as CI runs them
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
