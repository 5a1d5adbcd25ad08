#!/usr/bin/env bash
# Installs the system packages ctctl's build, tests and demo need, if missing.
# Debian 12; runs `apt-get update` at most once. Idempotent and quiet when done.
set -euo pipefail

packages=(libbpf-dev libelf-dev zlib1g-dev bpftool ethtool iproute2 util-linux jq clang-format shellcheck man-db bsdextrautils)
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing packages: ${missing[*]}; run as root (or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! python3 -c 'import jsonschema' 2>/dev/null; then
  echo "install-deps: installing the Python jsonschema package (validates -o json in the tests)" >&2
  python3 -m pip install -q jsonschema
fi
if ! command -v kubernetes-validate >/dev/null; then
  echo "install-deps: installing kubernetes-validate (validates docs/deploy in the tests)" >&2
  python3 -m pip install -q kubernetes-validate
fi
if ! command -v swift >/dev/null; then
  echo "install-deps: no Swift toolchain on PATH (expected /opt/swift/usr/bin)" >&2
  exit 1
fi
