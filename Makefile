# ctctl: `make demo` runs the demo, `make test` runs every test (both do all set-up).
SHELL := /bin/bash
PREFIX ?= /usr/local
CONFIG ?= debug
CLANG ?= clang
MULTIARCH := $(shell gcc -dumpmachine)
BPF_OUT := .build/bpf
BPF_OBJ := $(BPF_OUT)/ctctl.bpf.o
BPF_SRC := bpf/ctctl.bpf.c $(wildcard bpf/lib/*.h) $(wildcard bpf/include/*.h)
# ctctl's compare-and-delete for Calico's maps (loaded per command, never pinned)
BPF_CALICO_OBJ := $(BPF_OUT)/ctctl-calico.bpf.o
BPF_OBJS := $(BPF_OBJ) $(BPF_CALICO_OBJ)
BPF_CFLAGS := -g -O2 -target bpf -mcpu=v3 -Wall -Werror -I bpf/include -I bpf -I /usr/include/$(MULTIARCH)

.PHONY: all deps bpf build test demo bench soak install uninstall lint test-install clean

all: build

deps:
	@scripts/install-deps.sh

$(BPF_OBJ): $(BPF_SRC)
	@mkdir -p $(BPF_OUT)
	$(CLANG) $(BPF_CFLAGS) -c bpf/ctctl.bpf.c -o $@

$(BPF_CALICO_OBJ): bpf/ctctl_calico.bpf.c $(wildcard bpf/lib/*.h) $(wildcard bpf/include/*.h)
	@mkdir -p $(BPF_OUT)
	$(CLANG) $(BPF_CFLAGS) -c bpf/ctctl_calico.bpf.c -o $@

# Tests only, never installed: the same datapath with test hooks compiled in
# (CTCTL_TEST_HOOKS, see bpf/lib/datapath.h), to stage races deterministically.
BPF_TEST_OBJ := $(BPF_OUT)/ctctl-test.bpf.o
$(BPF_TEST_OBJ): $(BPF_SRC)
	@mkdir -p $(BPF_OUT)
	$(CLANG) $(BPF_CFLAGS) -DCTCTL_TEST_HOOKS -c bpf/ctctl.bpf.c -o $@

bpf: deps $(BPF_OBJS)

# The binary finds its BPF object beside itself (or in ../lib/ctctl when installed).
build: bpf
	swift build -c $(CONFIG)
	cp $(BPF_OBJS) "$$(swift build -c $(CONFIG) --show-bin-path)/"

test: bpf $(BPF_TEST_OBJ) lint
	swift build --build-tests
	cp $(BPF_OBJS) $(BPF_TEST_OBJ) "$$(swift build --show-bin-path)/"
	swift test --skip-build
	@echo "--- again, every scan with one thread (CTCTL_THREADS=1)"
	CTCTL_THREADS=1 swift test --skip-build
	$(MAKE) --no-print-directory test-install

# An install into a temporary prefix, checked, then uninstalled (scripts/test-install.sh).
test-install:
	scripts/test-install.sh

# The habits of the field: swift format, clang-format (kernel-ish style) and shellcheck.
LINT_C := $(wildcard bpf/*.c bpf/lib/*.h bpf/include/*.h Sources/CLibBPF/*.c Sources/CLibBPF/include/CLibBPF.h scripts/*.c)
lint: deps
	swift format lint --strict --recursive --configuration .swift-format Sources Tests Package.swift
	clang-format --dry-run --Werror $(LINT_C)
	shellcheck scripts/*.sh .ci/run

# FAST=1: short phases (CI); KEEP=1: leave the setup in place for exploring.
demo: build
	"$$(swift build -c $(CONFIG) --show-bin-path)/ctctl-demo" $(if $(FAST),--fast) $(if $(KEEP),--keep)

# N=: map sizes (comma-separated), RUNS=: runs a command; writes docs/PERFORMANCE.md.
N ?= 1000000,4000000
RUNS ?= 5
# The datapath without its reverse-half check, to measure what the check costs.
BPF_NOREPAIR_OBJ := $(BPF_OUT)/ctctl-norepair.bpf.o
$(BPF_NOREPAIR_OBJ): $(BPF_SRC)
	@mkdir -p $(BPF_OUT)
	$(CLANG) $(BPF_CFLAGS) -DCTCTL_BENCH_NO_REVERSE_REPAIR -c bpf/ctctl.bpf.c -o $@

# The same commands on a 1M-entry Calico map, where ../shared/calico is beside the clone.
CALICO_LAB ?= ../shared/calico/calico-lab
CALICO_BENCH = $(if $(wildcard $(CALICO_LAB)),--calico-lab $(abspath $(CALICO_LAB)))
bench: bpf $(BPF_NOREPAIR_OBJ)
	swift build -c release --product ctctl
	swift build -c release --product ctctl-bench
	cp $(BPF_OBJS) "$$(swift build -c release --show-bin-path)/"
	@mkdir -p .build/bench
	cc -O2 -Wall -o .build/bench/floor scripts/bench-floor.c -lbpf -lpthread
	cc -O2 -Wall -o .build/bench/run scripts/bench-run.c
	"$$(swift build -c release --show-bin-path)/ctctl-bench" --ctctl "$$(swift build -c release --show-bin-path)/ctctl" \
		--floor .build/bench/floor --runner .build/bench/run --entries $(N) --runs $(RUNS) \
		--no-repair-object $(BPF_NOREPAIR_OBJ) $(CALICO_BENCH) --write-doc docs/PERFORMANCE.md

# The reliability drills in full (docs/RELIABILITY.md; about 15 minutes, not in CI). `make test`
# runs short forms of each. SEED= replays a run.
SEED ?= 20261129
soak: bpf
	swift build -c release --product ctctl
	swift build -c release --product ctctl-soak
	cp $(BPF_OBJS) "$$(swift build -c release --show-bin-path)/"
	"$$(swift build -c release --show-bin-path)/ctctl-soak" --ctctl "$$(swift build -c release --show-bin-path)/ctctl" \
		--seed $(SEED) --write-doc docs/RELIABILITY.md

# PREFIX=/usr/local (DESTDIR= for staging): ctctl, its BPF object, a man page generated
# from the argument parser, and bash, zsh and fish completions. uninstall removes exactly those.
BINDIR = $(DESTDIR)$(PREFIX)/bin
LIBDIR = $(DESTDIR)$(PREFIX)/lib/ctctl
MANDIR = $(DESTDIR)$(PREFIX)/share/man/man1
BASHDIR = $(DESTDIR)$(PREFIX)/share/bash-completion/completions
ZSHDIR = $(DESTDIR)$(PREFIX)/share/zsh/site-functions
FISHDIR = $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
INSTALLED = $(BINDIR)/ctctl $(LIBDIR)/ctctl.bpf.o $(LIBDIR)/ctctl-calico.bpf.o $(MANDIR)/ctctl.1 $(BASHDIR)/ctctl $(ZSHDIR)/_ctctl $(FISHDIR)/ctctl.fish

install: bpf
	swift build -c release --product ctctl
	swift build --product generate-manual
	@mkdir -p .build/man
	"$$(swift build --show-bin-path)/generate-manual" "$$(swift build -c release --show-bin-path)/ctctl" \
		--date 2026-11-28 --section 1 --output-directory .build/man
	install -d $(BINDIR) $(LIBDIR) $(MANDIR) $(BASHDIR) $(ZSHDIR) $(FISHDIR)
	install -m 0755 "$$(swift build -c release --show-bin-path)/ctctl" $(BINDIR)/ctctl
	install -m 0644 $(BPF_OBJ) $(LIBDIR)/ctctl.bpf.o
	install -m 0644 $(BPF_CALICO_OBJ) $(LIBDIR)/ctctl-calico.bpf.o
	awk -f scripts/man-fixup.awk .build/man/ctctl.1 > .build/man/ctctl.fixed.1
	install -m 0644 .build/man/ctctl.fixed.1 $(MANDIR)/ctctl.1
	$(BINDIR)/ctctl --generate-completion-script bash > $(BASHDIR)/ctctl
	$(BINDIR)/ctctl --generate-completion-script zsh > $(ZSHDIR)/_ctctl
	$(BINDIR)/ctctl --generate-completion-script fish > $(FISHDIR)/ctctl.fish

uninstall:
	rm -f $(INSTALLED)
	-rmdir $(LIBDIR) 2>/dev/null

clean:
	rm -rf .build
