# Barge developer commands. `make test` is the one test command.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

CARGO ?= cargo

.PHONY: test test-gitops control-plane argocd gitea registry lint fmt

## control-plane: build etcd, kube-apiserver, kubectl, helm and kustomize from Go modules (cached by version)
control-plane:
	@bash hack/control-plane/build.sh

## argocd: build Argo CD's application-controller and repo-server, and miniredis, from Go modules (cached by version)
argocd:
	@bash hack/argocd/build.sh

## gitea: build Gitea (a Git host with pull requests and webhooks, for the pull-request step tests) from Go modules (cached by version)
gitea:
	@bash hack/gitea/build.sh

## registry: build the CNCF distribution registry (an OCI registry, for the Warehouse tests) from Go modules (cached by version)
registry:
	@bash hack/registry/build.sh

## chromium: install headless Chromium (Debian's chromium package) for the dashboard's browser tests, if missing
.PHONY: chromium
chromium:
	@bash hack/chromium/install.sh >/dev/null

## test: build the control plane, Argo CD and Gitea if needed, install Chromium if missing, then run every test against them
test:
	@bash hack/chromium/install.sh >/dev/null; \
	bin=$$(bash hack/control-plane/build.sh | tail -n 1); \
	argocd=$$(bash hack/argocd/build.sh | tail -n 1); \
	gitea=$$(bash hack/gitea/build.sh | tail -n 1); \
	registry=$$(bash hack/registry/build.sh | tail -n 1); \
	BARGE_K8S_BIN=$$bin BARGE_ARGOCD_DIR=$$argocd BARGE_GITEA_DIR=$$gitea BARGE_REGISTRY_DIR=$$registry CARGO=$(CARGO) bash hack/test.sh

## test-gitops: examples/gitops end to end against real Argo CD and a git repository, with the time per Stage
test-gitops:
	@bin=$$(bash hack/control-plane/build.sh | tail -n 1); \
	argocd=$$(bash hack/argocd/build.sh | tail -n 1); \
	BARGE_K8S_BIN=$$bin BARGE_ARGOCD_DIR=$$argocd $(CARGO) test --test gitops -- --nocapture

## lint: formatting and clippy, as CI runs them
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --features fault-hooks --bench chaos -- -D warnings

fmt:
	$(CARGO) fmt --all

.PHONY: deny
## deny: the dependency policy in deny.toml (licenses, banned and duplicate crates, sources) with cargo-deny, built from crates.io if needed; advisories are not checked: their database is on GitHub, out of this machine's reach
deny:
	@deny=$$(bash hack/cargo-deny/install.sh | tail -n 1); \
	$$deny check licenses bans sources

.PHONY: install-plugin
PREFIX ?= $(HOME)/.local
## install-plugin: install barge into $(PREFIX)/bin (default ~/.local/bin) with kubectl-barge and kubectl_complete-barge links beside it, so `kubectl barge …` runs it and kubectl completes it
install-plugin:
	$(CARGO) install --locked --path . --bin barge --root $(PREFIX)
	ln -sf barge $(PREFIX)/bin/kubectl-barge
	ln -sf barge $(PREFIX)/bin/kubectl_complete-barge

.PHONY: sandbox
## sandbox: Barge end to end: control plane, real Argo CD (SANDBOX_ARGOCD=double: the double), controller, the quickstart promoted live (SANDBOX_EXIT=1 exits when done)
sandbox:
	@bin=$$(bash hack/control-plane/build.sh | tail -n 1); \
	BARGE_K8S_BIN=$$bin $(CARGO) run -q --example sandbox

.PHONY: crds
## crds: regenerate crds/<plural>.barge.dev.yaml from the types in src/api, and deploy/create-actor-policy.yaml (tests/crds.rs and tests/admission.rs check they are current)
crds:
	$(CARGO) run -q --bin barge -- crds --out-dir crds
	$(CARGO) run -q --bin barge -- admission-policy > deploy/create-actor-policy.yaml

.PHONY: bench
## bench: wake-up latency, event-driven (double and real Argo CD) vs backstop only (prints a table, writes target/bench/wakeup.json)
bench:
	@bin=$$(bash hack/control-plane/build.sh | tail -n 1); \
	argocd=$$(bash hack/argocd/build.sh | tail -n 1); \
	BARGE_K8S_BIN=$$bin BARGE_ARGOCD_DIR=$$argocd $(CARGO) bench --bench wakeup

.PHONY: bench-discovery
## bench-discovery: push → Freight → dev Promotion through a real registry's webhook, and with a refresh annotation (prints a table, writes target/bench/discovery.json)
bench-discovery:
	@bin=$$(bash hack/control-plane/build.sh | tail -n 1); \
	registry=$$(bash hack/registry/build.sh | tail -n 1); \
	BARGE_K8S_BIN=$$bin BARGE_REGISTRY_DIR=$$registry $(CARGO) bench --bench discovery

.PHONY: bench-scale
## bench-scale: the controller in its own process with 10k Applications, 10k finished Promotions, 1k Stages and Freight: memory, start-up, 1,000 in flight, requests and CPU per Promotion, idle requests (prints a table, writes target/bench/scale.json)
bench-scale:
	@bin=$$(bash hack/control-plane/build.sh | tail -n 1); \
	BARGE_K8S_BIN=$$bin $(CARGO) bench --bench scale

.PHONY: bench-smoke
## bench-smoke: every benchmark in a tiny debug run (BARGE_BENCH_SMOKE=1), as CI runs them so they keep working; their figures mean nothing
bench-smoke:
	@bin=$$(bash hack/control-plane/build.sh | tail -n 1); \
	argocd=$$(bash hack/argocd/build.sh | tail -n 1); \
	registry=$$(bash hack/registry/build.sh | tail -n 1); \
	BARGE_BENCH_SMOKE=1 BARGE_K8S_BIN=$$bin BARGE_ARGOCD_DIR=$$argocd BARGE_REGISTRY_DIR=$$registry $(CARGO) test --bench wakeup --bench discovery --bench scale

.PHONY: chaos chaos-argocd chaos-short
## chaos: 500 Promotions over 50 Stages (the Argo CD double) through two leader-elected replicas while kube-apiserver and etcd restart, the leader is killed (also between its Argo CD write and status write) or fails over, and the network is cut or stalled; prints lost, double syncs, stuck and time to resume per fault (writes target/bench/chaos.json)
chaos:
	@bin=$$(bash hack/control-plane/build.sh | tail -n 1); \
	BARGE_CHAOS_RUN=full BARGE_K8S_BIN=$$bin $(CARGO) test --features fault-hooks --bench chaos

## chaos-argocd: the same faults, fewer Promotions, against real Argo CD (writes target/bench/chaos-argocd.json)
chaos-argocd:
	@bin=$$(bash hack/control-plane/build.sh | tail -n 1); \
	argocd=$$(bash hack/argocd/build.sh | tail -n 1); \
	BARGE_CHAOS_RUN=argocd BARGE_K8S_BIN=$$bin BARGE_ARGOCD_DIR=$$argocd $(CARGO) test --features fault-hooks --bench chaos

## chaos-short: one fault of each kind over 20 Promotions, as CI runs it
chaos-short:
	@bin=$$(bash hack/control-plane/build.sh | tail -n 1); \
	BARGE_CHAOS_RUN=short BARGE_K8S_BIN=$$bin $(CARGO) test --features fault-hooks --bench chaos

.PHONY: chart-crds chart-lint
## chart-crds: copy crds/ into the Helm chart (charts/barge/files/crds; tests/chart.rs fails when they differ)
chart-crds:
	rm -f charts/barge/files/crds/*.yaml
	cp crds/*.yaml charts/barge/files/crds/
	cp deploy/create-actor-policy.yaml charts/barge/files/create-actor-policy.yaml

## chart-lint: helm lint (strict) and helm template of charts/barge, with the control plane's helm
chart-lint:
	@bin=$$(bash hack/control-plane/build.sh | tail -n 1); \
	"$$bin/helm" lint --strict charts/barge; \
	"$$bin/helm" lint --strict charts/barge -f charts/barge/ci/custom-values.yaml; \
	"$$bin/helm" template barge charts/barge --namespace barge-system >/dev/null; \
	"$$bin/helm" template barge charts/barge --namespace barge-system -f charts/barge/ci/custom-values.yaml >/dev/null; \
	echo "charts/barge: lint and template OK"

.PHONY: image image-push image-verify crane
## image: the controller's container image as an OCI image layout in target/image/, without a container engine: a static musl build of barge (installs Debian's musl-tools if missing), kustomize and helm (the control plane's), a CA bundle, user 65532; reproducible; prints the image digest last
image:
	@bash hack/image/build.sh

## crane: build crane (go-containerregistry's registry client) from Go modules (cached by version)
crane:
	@bash hack/crane/build.sh

# Where `make image-push` pushes: $(REGISTRY)/barge:<version>.
REGISTRY ?= ghcr.io/barge-dev
## image-push: push target/image (run `make image` first) to $(REGISTRY)/barge:<version> with crane (log in with `crane auth login`); prints the pushed reference with its digest
image-push:
	@test -f target/image/index.json || { echo "no image layout in target/image: run make image first" >&2; exit 1; }
	@crane=$$(bash hack/crane/build.sh | tail -n 1); \
	version=$$($(CARGO) pkgid -p barge); version=$${version##*[@#]}; \
	"$$crane/crane" push target/image "$(REGISTRY)/barge:$$version"

## image-verify: make image, then tests/image.rs: push it to a real registry, pull its file system back, run barge, kustomize and helm from it
image-verify: image
	@crane=$$(bash hack/crane/build.sh | tail -n 1); \
	registry=$$(bash hack/registry/build.sh | tail -n 1); \
	BARGE_IMAGE_REQUIRED=1 BARGE_CRANE_DIR=$$crane BARGE_REGISTRY_DIR=$$registry $(CARGO) test --test image -- --nocapture
