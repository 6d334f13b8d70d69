#!/usr/bin/env bash
# Runs every test of kubeha. The lab and SSH tests boot machines and start sshd, which needs root and a few
# Debian packages: missing packages are installed first (as root), so a fresh Debian machine only needs
# the Rust and Go toolchains. Kubernetes and etcd are built from their Go modules (lab/upstream/build.sh,
# cached under /var/lib/kubeha/lab/cache; some 10 to 20 minutes the first time on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/become-root.sh

# debootstrap, systemd-container, iproute2: the lab's machines; openssh-client: SSH to them in tests;
# openssh-server, sudo: the SSH transport's tests against real sshd (started by the tests on loopback);
# openssl: checking kubeha's certificates; vagrant: validating vagrant/Vagrantfile; prometheus: its promtool checks and
# unit-tests the rendered monitoring configuration and alert rules (tests/monitoring_promtool.rs; no server is started).
PACKAGES=(debootstrap systemd-container iproute2 openssh-client openssh-server sudo openssl vagrant prometheus)

# The upstream build (CPU, tens of minutes when cold) runs while the packages install (network) and the
# Vagrantfiles are validated; its output is shown when it is waited for below.
build_out=$(mktemp)
build_err=$(mktemp)
lab/upstream/build.sh >"$build_out" 2>"$build_err" &
build_pid=$!
# The fuzz targets' cold build (cargo-fuzz, a release build with the address sanitizer: minutes of CPU) runs at
# the lowest priority beside everything else, mostly while the lab tests wait on their machines; only the timed
# fuzz runs come after the tests. Lab tests count niced CPU time as idle (tests/support/drill.rs).
fuzz_log=$(mktemp)
nice -n 19 ionice -c 3 scripts/fuzz.sh --build >"$fuzz_log" 2>&1 &
fuzz_build_pid=$!
log=
# The background jobs are ended with this script if it fails before waiting for them.
cleanup() {
  for pid in ${build_pid:-} ${fuzz_build_pid:-}; do kill "$pid" 2>/dev/null || true; done
  rm -f "$build_out" "$build_err" "$fuzz_log" ${log:+"$log"}
}
trap cleanup EXIT

installed_before=$(dpkg-query -W -f='${Status}' prometheus 2>/dev/null || true)
scripts/packages.sh "${PACKAGES[@]}"
# Installing prometheus starts its server and the node exporter it recommends; the tests need only promtool, so
# what this run installed is stopped again (a Prometheus the machine already had is left alone).
if [[ $installed_before != *"install ok installed"* ]] && command -v systemctl >/dev/null; then
  systemctl disable --now prometheus.service prometheus-node-exporter.service >/dev/null 2>&1 || true
fi

echo "== vagrant validate"
for inventory in vagrant prod-3az; do
  (cd vagrant && KUBEHA_INVENTORY="../inventories/$inventory.yaml" KUBEHA_SSH_PUBLIC_KEY=/dev/null vagrant validate)
done

# The test binaries compile meanwhile: the two builds fill each other's single-threaded stretches (links).
echo "== cargo test --no-run (while the upstream build runs)"
cargo test --locked --no-run
echo "== upstream Kubernetes and etcd (lab/upstream/build.sh) and the lab CRI runtime's Go tests"
build_status=0
wait "$build_pid" || build_status=$?
build_pid=
cat "$build_err" >&2
[[ $build_status -eq 0 ]] || { echo "test.sh: lab/upstream/build.sh failed ($build_status)" >&2; exit 1; }
upstream=$(cat "$build_out")
lab/upstream/build.sh --test
# The etcd tests run etcd 3.6 on this machine from PATH, and tests/kubeadm_validate.rs runs the real kubeadm.
# The links go where release binaries go; a file there that is not one of our links is never replaced.
for program in etcd etcdctl etcdutl; do
  link=/usr/local/bin/$program
  if [[ -e $link || -L $link ]] && [[ $(readlink "$link" || true) != "$(dirname "$upstream")"/* ]]; then
    echo "test.sh: $link exists and is not a link into the lab's cache; remove it or put the upstream $program first in PATH" >&2
    exit 1
  fi
  ln -sfn "$upstream/$program" "$link"
done
export KUBEHA_KUBEADM="$upstream/kubeadm"

echo "== cargo test"
log=$(mktemp)
set +e
cargo test --locked 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line with the totals of every test binary.
passed=$(grep -Eo "test result: [A-Za-z]+\. [0-9]+ passed" "$log" | awk '{sum += $4} END {print sum + 0}')
failed=$(grep -Eo "[0-9]+ failed;" "$log" | awk '{sum += $1} END {print sum + 0}')
echo "$passed passed, $failed failed"
fuzz_build_status=0
wait "$fuzz_build_pid" || fuzz_build_status=$?
fuzz_build_pid=
echo "== fuzz targets built beside the tests (scripts/fuzz.sh --build)"
cat "$fuzz_log"
if [[ $fuzz_build_status -ne 0 ]]; then
  echo "test.sh: scripts/fuzz.sh --build failed ($fuzz_build_status)" >&2
  exit 1
fi
if [[ $status -eq 0 ]]; then
  echo "== fuzzing (bounded)"
  scripts/fuzz.sh 30
fi
exit "$status"
