# ctctl: `make demo` runs the demo, `make test` runs every test (both do all set-up).
SHELL := /bin/bash
PREFIX ?= /usr/local
CONFIG ?= debug
CLANG ?= clang
MULTIARCH := $(shell gcc -dumpmachine)
BPF_OUT := .build/bpf
BPF_OBJ := $(BPF_OUT)/ctctl.bpf.o
BPF_SRC := bpf/ctctl.bpf.c $(wildcard bpf/lib/*.h) $(wildcard bpf/include/*.h)
BPF_CFLAGS := -g -O2 -target bpf -mcpu=v3 -Wall -Werror -I bpf/include -I bpf -I /usr/include/$(MULTIARCH)

.PHONY: all deps bpf build test demo bench clean

all: build

deps:
	@scripts/install-deps.sh

$(BPF_OBJ): $(BPF_SRC)
	@mkdir -p $(BPF_OUT)
	$(CLANG) $(BPF_CFLAGS) -c bpf/ctctl.bpf.c -o $@

bpf: deps $(BPF_OBJ)

# The binary finds its BPF object beside itself (or in ../lib/ctctl when installed).
build: bpf
	swift build -c $(CONFIG)
	cp $(BPF_OBJ) "$$(swift build -c $(CONFIG) --show-bin-path)/"

test: bpf
	swift build --build-tests
	cp $(BPF_OBJ) "$$(swift build --show-bin-path)/"
	swift test --skip-build

# FAST=1: short phases (CI); KEEP=1: leave the setup in place for exploring.
demo: build
	"$$(swift build -c $(CONFIG) --show-bin-path)/ctctl-demo" $(if $(FAST),--fast) $(if $(KEEP),--keep)

# N=: map sizes (comma-separated), RUNS=: runs a command; writes docs/PERFORMANCE.md.
N ?= 100000,1000000
RUNS ?= 5
bench: bpf
	swift build -c release --product ctctl
	swift build -c release --product ctctl-bench
	cp $(BPF_OBJ) "$$(swift build -c release --show-bin-path)/"
	@mkdir -p .build/bench
	cc -O2 -Wall -o .build/bench/floor scripts/bench-floor.c -lbpf
	cc -O2 -Wall -o .build/bench/run scripts/bench-run.c
	"$$(swift build -c release --show-bin-path)/ctctl-bench" --ctctl "$$(swift build -c release --show-bin-path)/ctctl" \
		--floor .build/bench/floor --runner .build/bench/run --entries $(N) --runs $(RUNS) --write-doc docs/PERFORMANCE.md

clean:
	rm -rf .build
