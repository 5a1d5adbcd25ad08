#!/usr/bin/env bash
# make test: install into a temporary prefix, use what was installed, uninstall, and check
# that nothing is left behind.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=$(mktemp -d /tmp/ctctl-install-XXXXXX)
trap 'rm -rf "$prefix"' EXIT
fail() { echo "test-install: FAIL: $*" >&2; exit 1; }

make --no-print-directory install PREFIX="$prefix" >/dev/null

# the installed binary works from any directory, without the source tree
out=$(cd / && "$prefix/bin/ctctl" --version)
[[ $out == "ctctl "*"(map ABI "*")" ]] || fail "ctctl --version printed: $out"
[[ -r $prefix/lib/ctctl/ctctl.bpf.o ]] || fail "no BPF object installed"
[[ -r $prefix/lib/ctctl/ctctl-calico.bpf.o ]] || fail "no Calico compare-and-delete object installed"
pin=/sys/fs/bpf/ctctl-install-test-$$
(cd / && "$prefix/bin/ctctl" dataplane load --pin-dir "$pin" >/dev/null) || fail "the installed ctctl cannot load its dataplane"
(cd / && "$prefix/bin/ctctl" dataplane unload --pin-dir "$pin" >/dev/null) || fail "the installed ctctl cannot unload"

# the man page renders
page=$(MANWIDTH=100 man -l "$prefix/share/man/man1/ctctl.1" 2>/dev/null | col -b)
grep -q "conntrack" <<<"$page" || fail "man -l did not render the page"
[[ $(grep -c "^EXIT STATUS" <<<"$page") == 1 ]] || fail "the man page has not exactly one EXIT STATUS section"
grep -Eq "^ *77[[:space:]]+not permitted" <<<"$page" || fail "the man page's EXIT STATUS lacks ctctl's codes"
grep -q "exits >0\|exits 0 on success" <<<"$page" && fail "the man page still has the generic exit status text"
grep -q "^ENVIRONMENT" <<<"$page" || fail "the man page has no ENVIRONMENT section"
grep -q "CTCTL_PIN_DIR" <<<"$page" || fail "the man page's ENVIRONMENT lacks CTCTL_PIN_DIR"

# completions for the three shells
[[ -s $prefix/share/bash-completion/completions/ctctl ]] || fail "no bash completion"
[[ -s $prefix/share/zsh/site-functions/_ctctl ]] || fail "no zsh completion"
[[ -s $prefix/share/fish/vendor_completions.d/ctctl.fish ]] || fail "no fish completion"
bash -n "$prefix/share/bash-completion/completions/ctctl" || fail "the bash completion does not parse"

make --no-print-directory uninstall PREFIX="$prefix" >/dev/null
left=$(find "$prefix" -type f)
[[ -z $left ]] || fail "uninstall left files behind: $left"
[[ ! -e $prefix/lib/ctctl ]] || fail "uninstall left $prefix/lib/ctctl"
echo "test-install: ok (installed, used, uninstalled, nothing left)"
