# A thin layer over cargo, the testbed scripts and kubectl, with the original tool's target names.
IMAGE ?= clbsync:0.1.0

.PHONY: build test run sandbox docker-build deploy fmt lint validate

build:            ## release binary at target/release/clbsync
	cargo build --release --locked --bin clbsync

test:             ## the whole test suite, exactly what CI runs
	testbed/test.sh

run sandbox:      ## the local sandbox: kube-apiserver + CLB emulator + diff/reconcile/diff
	testbed/sandbox.sh

docker-build:     ## needs a Docker engine
	docker build -t $(IMAGE) .

deploy:           ## installs RBAC, rules ConfigMap, Secret template and CronJob into the current context
	kubectl apply -f cronjob.yaml

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

validate:         ## check rules.yaml offline
	cargo run --quiet --bin clbsync -- validate --rules rules.yaml
