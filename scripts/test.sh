#!/usr/bin/env bash
# Runs every test of kubeha. The lab and SSH tests boot machines and start sshd, which needs root and a few
# Debian packages: missing packages are installed first (as root), so a fresh Debian machine only needs
# the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

# debootstrap, systemd-container, iproute2: the lab's machines; openssh-client: SSH to them in tests;
# openssh-server, sudo: the SSH transport's tests against real sshd (started by the tests on loopback);
# etcd-server, etcd-client, openssl: real etcd with kubeha's certificates; curl, python3-yaml: the Kubernetes
# stand-ins' tests (Debian's /usr/bin/python3); vagrant: validating vagrant/Vagrantfile.
PACKAGES=(debootstrap systemd-container iproute2 openssh-client openssh-server sudo etcd-server etcd-client openssl curl python3-yaml vagrant)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/test.sh: missing packages ${missing[*]}; run as root (sudo env \"PATH=\$PATH\" scripts/test.sh)" >&2
    exit 1
  fi
  echo "== installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" > /dev/null
fi

echo "== vagrant validate"
for inventory in vagrant prod-3az; do
  (cd vagrant && KUBEHA_INVENTORY="../inventories/$inventory.yaml" KUBEHA_SSH_PUBLIC_KEY=/dev/null vagrant validate)
done

echo "== cargo test"
cargo test --locked
