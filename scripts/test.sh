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

scripts/packages.sh "${PACKAGES[@]}"

echo "== vagrant validate"
for inventory in vagrant prod-3az; do
  (cd vagrant && KUBEHA_INVENTORY="../inventories/$inventory.yaml" KUBEHA_SSH_PUBLIC_KEY=/dev/null vagrant validate)
done

echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --locked 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line with the totals of every test binary.
passed=$(grep -Eo "test result: [A-Za-z]+\. [0-9]+ passed" "$log" | awk '{sum += $4} END {print sum + 0}')
failed=$(grep -Eo "[0-9]+ failed;" "$log" | awk '{sum += $1} END {print sum + 0}')
echo "$passed passed, $failed failed"
exit "$status"
