#!/usr/bin/env bash
# The main job end to end on local lab machines: boots 3 control planes (3 zones) and 2 workers as
# systemd-nspawn machines, then `kubeha apply` brings up etcd (one member at a time between quorum gates),
# keepalived + HAProxy with the VIP, the real kubeadm init and joins (Kubernetes built from its Go modules by
# lab/upstream/build.sh on the first run), the CNI, workers and labels, and verifies it all. Needs root. `kubeha lab down -i inventories/lab.yaml`
# removes the machines afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/become-root.sh
scripts/packages.sh debootstrap systemd-container iproute2 openssh-client
cargo build --release --locked
kubeha=target/release/kubeha
inventory=inventories/lab.yaml
$kubeha lab up -i "$inventory"
$kubeha apply --yes -i "$inventory"
$kubeha verify -i "$inventory"
echo
echo "The lab cluster is up. Try: $kubeha plan -i $inventory   (nothing to change)"
echo "  ssh -i /var/lib/kubeha/lab/lab/id_ed25519 -o UserKnownHostsFile=/var/lib/kubeha/lab/lab/known_hosts root@198.18.0.11"
echo "  then: set -a; . /etc/kubeha/etcdctl.env; etcdctl member list -w table"
echo "Remove it with: $kubeha lab down -i $inventory"
