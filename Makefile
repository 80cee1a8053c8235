# Toride: the two commands of the README are `make run` and `make test`.
SHELL := /bin/bash
GO ?= go
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
BINARIES := torided toride
ARCHES := amd64 arm64
ARCH ?= amd64

.PHONY: run test build image vm native deps-run deps-test deps-image modules fmt-check vet unit vmtest imagetest bench clean

## run: build and start the appliance on its embedded default config in its own network namespace, with the shell
run: deps-run native
	images/netns-run.sh

## test: everything CI runs: formatting, vet, race tests (root-only lab tests included), every benchmark once
test: deps-test modules fmt-check vet unit vmtest imagetest bench

## build: static binaries for linux/amd64 and linux/arm64 in bin/linux-ARCH/
build: modules
	@for arch in $(ARCHES); do for b in $(BINARIES); do \
		echo "build bin/linux-$$arch/$$b"; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/linux-$$arch/$$b ./cmd/$$b || exit 1; \
	done; done

## image: the appliance's disk image for ARCH (amd64 or arm64): images/out/toride-ARCH.img (raw GPT) and .qcow2 (as root)
image: deps-image build
	images/build.sh $(ARCH)

## vm: boot the amd64 image in qemu, its serial console on this terminal (Ctrl-a x quits)
vm:
	@[ -f images/out/toride-amd64.qcow2 ] || $(MAKE) image ARCH=amd64
	images/vm.sh

# native: the binaries for this machine, in bin/
native: modules
	@for b in $(BINARIES); do CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/$$b ./cmd/$$b || exit 1; done

deps-run:
	@tests/deps.sh run

deps-test:
	@tests/deps.sh test

deps-image:
	@tests/deps.sh image

modules:
	@$(GO) mod download

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# unit: every package but the VM tier and the image's boot test, which run on their own so that their emulated
# CPUs never share the two cores with the timing-sensitive end-to-end tests
unit:
	$(GO) test -race -timeout 40m $$($(GO) list ./... | grep -v -e '/tests/vm$$' -e '/images$$')

## vmtest: the VM tier: Debian's kernel in qemu runs the end-to-end tests that need kernel ESP
vmtest:
	$(GO) test -timeout 20m ./tests/vm

## imagetest: build the amd64 image once, boot it in qemu with OVMF to the toride shell, update it (kept), then with a broken root (back on the previous slot); build the arm64 one and boot it with AAVMF to the shell
imagetest: deps-image
	$(GO) test -timeout 45m ./images

## bench: every benchmark once, one package at a time, so the side-by-side harness (tests/bench_test.go) never shares the cores with another; its table goes to bench-results.md (BENCHMARKS.md keeps the latest committed one)
bench:
	@rm -f bench-results.md
	$(GO) test -p 1 -run '^$$' -bench . -benchtime 1x -timeout 20m ./...
	@if [ -f bench-results.md ]; then cat bench-results.md; fi

clean:
	rm -rf bin .run
