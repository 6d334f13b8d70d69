#!/bin/sh
# Writes vagrant/known_hosts from the VMs' own host keys, read through `vagrant ssh` (a channel Vagrant
# already trusts), so kubeha's strict host-key checking needs no trust-on-first-use.
set -eu
cd "$(dirname "$0")"
out=known_hosts.tmp
: > "$out"
for name in $(vagrant status --machine-readable | awk -F, '$3 == "state" && $4 == "running" {print $2}'); do
  address=$(vagrant ssh "$name" -c "ip -4 -o addr show eth1 | awk '{print \$4}' | cut -d/ -f1" 2>/dev/null | tr -d '\r')
  key=$(vagrant ssh "$name" -c "cat /etc/ssh/ssh_host_ed25519_key.pub" 2>/dev/null | tr -d '\r' | awk '{print $1, $2}')
  echo "$name,$address $key" >> "$out"
done
mv "$out" known_hosts
echo "wrote $(wc -l < known_hosts) host keys to $(pwd)/known_hosts"
