# A thin layer over cargo, the testbed scripts and kubectl, with the original tool's target names.
# `make` (or `make help`) lists the targets.
IMAGE ?= clbsync:0.1.0
OVERLAY ?= deploy/overlays/production

.DEFAULT_GOAL := help
.PHONY: help all build test run sandbox docker-build docker-build-debug docker-push manifests deploy fmt lint vet validate

help:             ## list the targets
	@awk -F':.*## ' '/^[a-z][a-z -]*:.*## / {printf "  %-28s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

all:              ## build and lint (as the original tool's `make all`)
all: build lint

build:            ## release binary at target/release/clbsync
	cargo build --release --locked --bin clbsync

test:             ## the whole test suite, exactly what CI runs
	testbed/test.sh

run sandbox:      ## the local sandbox: kube-apiserver + CLB emulator + diff/reconcile/diff
	testbed/sandbox.sh

docker-build:     ## the distroless image (IMAGE=clbsync:0.1.0; needs a Docker engine)
	docker build -t $(IMAGE) .

docker-build-debug: ## the CI image with a shell (IMAGE-debug; needs a Docker engine)
	docker build --target debug -t $(IMAGE)-debug .

docker-push:      ## push the image built by docker-build (IMAGE=registry/clbsync:tag; needs a Docker engine)
	docker push $(IMAGE)

manifests:        ## re-render cronjob.yaml from deploy/cronjob (kubectl kustomize) and the PrometheusRules from their rules files
	deploy/render.sh

deploy:           ## applies your overlay (OVERLAY=deploy/overlays/production, docs/src/install.md) to the current context
	@test -f $(OVERLAY)/kustomization.yaml || { echo "make deploy: no $(OVERLAY)/kustomization.yaml: copy deploy/examples/overlay-watch (or overlay, the CronJob) there first (docs/src/install.md)" >&2; exit 1; }
	kubectl apply -k $(OVERLAY)

fmt:              ## cargo fmt
	cargo fmt --all

lint:             ## rustfmt check and clippy with warnings as errors
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

vet:              ## the original tool's `make vet`: clippy with warnings as errors (same as lint)
vet: lint

validate:         ## check rules.yaml offline
	cargo run --quiet --bin clbsync -- validate --rules rules.yaml
