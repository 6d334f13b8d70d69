#!/usr/bin/env bash
# Installs the Debian packages given as arguments that are missing (as root); used by lab-demo.sh and test.sh
# so that a fresh Debian machine needs only the Rust toolchain.
set -euo pipefail
missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages ${missing[*]}; run as root (sudo env \"PATH=\$PATH\" $0 ...)" >&2
    exit 1
  fi
  echo "== installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" > /dev/null
fi
