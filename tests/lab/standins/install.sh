#!/bin/sh
# Install the kubeha lab stand-ins into a machine's root file system (before it boots):
#   tests/lab/standins/install.sh DESTROOT
# Copies kubeadm, kubelet, kubectl, kube-apiserver and their Python modules to DESTROOT/usr/bin/ and the
# systemd units to DESTROOT/etc/systemd/system/ (NOT enabled: the kubeadm stand-in starts them).
# Needs in DESTROOT: python3, python3-yaml, openssl, etcd-client (etcdctl).
set -eu
if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 DESTROOT" >&2
    exit 2
fi
dest=$1
src=$(cd "$(dirname "$0")" && pwd)
if [ ! -d "$dest" ]; then
    echo "install.sh: $dest is not a directory" >&2
    exit 1
fi
install -d -m 0755 "$dest/usr/bin" "$dest/etc/systemd/system"
for tool in kubeadm kubelet kubectl kube-apiserver; do
    install -m 0755 "$src/$tool" "$dest/usr/bin/$tool"
done
for module in standin_common.py standin_schema.py standin_cluster.py; do
    install -m 0644 "$src/$module" "$dest/usr/bin/$module"
done
for unit in kube-apiserver-standin.service kubelet.service; do
    install -m 0644 "$src/units/$unit" "$dest/etc/systemd/system/$unit"
done
echo "kubeha lab stand-ins installed into $dest (units not enabled)"
