# Mailplane — the two commands a newcomer needs are `make dev` and `make test`.

SHELL := /bin/bash
NPM ?= npm
NODE ?= node

# Node.js 24 LTS: the system's when it is new enough, else a pinned release fetched once from the
# npm registry into ~/.cache/mailplane/node (scripts/node.sh). Its headers serve native modules.
NODE_DIR := $(shell bash scripts/node.sh)
ifeq ($(NODE_DIR),)
$(error cannot find or fetch Node.js 24; see scripts/node.sh)
endif
export PATH := $(NODE_DIR):$(PATH)
# isolated-vm (the template sandbox) needs Node's startup snapshot off from Node 20 on.
export NODE_OPTIONS := --no-node-snapshot $(NODE_OPTIONS)
ifneq ($(wildcard $(NODE_DIR)/../include/node/node.h),)
export npm_config_nodedir := $(abspath $(NODE_DIR)/..)
endif

.PHONY: dev apply test bench build install deps lint typecheck format clean tools envtest-up envtest-down

node_modules/.installed: package.json package-lock.json
	$(NPM) ci --no-fund --no-audit --loglevel=error
	@touch $@

install: node_modules/.installed

dist/.built: node_modules/.installed $(shell find cmd api sender operator smtp submission dev lib -name '*.ts' 2>/dev/null) tsconfig.json tsconfig.build.json
	$(NPM) run --silent build
	@touch $@

build: dist/.built

## dev: run Mailplane locally (embedded Postgres unless DATABASE_URL is set) with a local inbox
dev: build
	$(NODE) dist/cmd/mailplane.js dev

## apply: apply manifests to the database of a running `make dev`: make apply F="my.yaml more/"
## (ARGS="--dry-run -o json" passes options on; F=- reads standard input)
apply: build
	@test -n "$(F)" || { echo 'usage: make apply F=<file|dir|-> [ARGS="--dry-run -o json"]' >&2; exit 2; }
	@$(NODE) dist/cmd/mailplane.js dev apply $(foreach f,$(F),-f $(f)) $(ARGS)

## deps: what the tests need beyond npm (Debian's python3-dkim as an independent DKIM verifier)
deps:
	@bash test/setup-deps.sh

lint: install
	npx eslint .
	npx prettier --check .

typecheck: install
	npx tsc -p tsconfig.json --noEmit

format: install
	npx prettier --write .

## test: install what the tests need, lint, typecheck and run every test against real parts
test: install deps tools lint typecheck
	$(NODE) --import tsx --test --test-concurrency=1 --test-reporter=spec $$(find test -name '*.test.ts' | sort)

## bench: print API and sender throughput figures
bench: build
	$(NODE) --import tsx bench/run.ts

## tools: build kube-apiserver, etcd, kubectl and helm from source once (cached per version in
## ~/.cache/mailplane/tools), linked into bin/
tools:
	@bash scripts/tools.sh

## envtest-up: start a local etcd + kube-apiserver (RBAC on); use it as: eval "$$(make -s envtest-up)"
envtest-up:
	@bash scripts/envtest.sh up

## envtest-down: stop the local control plane and remove its state
envtest-down:
	@bash scripts/envtest.sh down

clean:
	rm -rf dist node_modules/.installed
