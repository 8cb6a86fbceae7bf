# CodeCrafter. The two commands: `make run` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
GO    ?= go
BIN   := bin
# Our own packages for coverage: everything but generated code and commands.
COVERPKG = $(shell $(GO) list ./... | grep -v -e /graph -e /cmd/ -e /internal/testenv | paste -sd, -)

.PHONY: run build test services images generate check-generated vet contract cover clean

## run: build and start the server on the embedded default (FerretDB, in-process bus and queue, Docker sandbox)
run: build services-docker images
	$(BIN)/codecrafter serve

## build: the server/worker binary and the in-sandbox helper
build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/codecrafter ./cmd/codecrafter
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/ccbox ./cmd/ccbox

services-docker:
	scripts/services.sh docker

## services: install (apt) and start dockerd, Redis and RabbitMQ; install promtool and docker-compose
services:
	scripts/services.sh docker redis rabbitmq tools

## images: build the sandbox images locally (debootstrap base + one image per language); skips current ones
images: build services-docker
	$(BIN)/codecrafter images build --ccbox $(BIN)/ccbox

## test: start every service, build images, run all tests with -race, print total coverage
test: services images
	CI=$${CI:-false} $(GO) test -race -count=1 -timeout 40m -coverpkg=$(COVERPKG) -coverprofile=cover.out ./... \
		| sed -E 's/ of statements in .*/ of our statements/'  # -coverpkg names every package on every line
	@$(GO) tool cover -func=cover.out | tail -n 1 | awk '{print "total coverage (own packages, generated code excluded): " $$3}'

## generate: regenerate gqlgen code
generate:
	$(GO) tool gqlgen generate

## check-generated: fail when committed generated code is stale
check-generated: generate
	@git diff --exit-code -- graph resolvers || { echo "generated code is stale: run make generate and commit"; exit 1; }

vet:
	$(GO) vet ./...

## contract: the schema serves every operation of the public API contract
contract:
	scripts/check-contract.sh schema.graphqls

clean:
	rm -rf $(BIN) cover.out
