#!/usr/bin/env bash
# Measures `kubeha apply` on the lab (3 control planes + 2 workers, 2 cores here): a full apply on fresh
# machines, a no-op re-apply, SSH connections per host per run (counted by each machine's sshd), and the
# critical path of the plan against the wall time, and the software phase (per host: time of the first install,
# bytes uploaded; whether the no-op run had any software step). Needs root; removes the lab at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
inventory=inventories/lab.yaml
kubeha=target/release/kubeha
key=/var/lib/kubeha/lab/lab/id_ed25519
known=/var/lib/kubeha/lab/lab/known_hosts
hosts=(cp-1:198.18.0.11 cp-2:198.18.0.12 cp-3:198.18.0.13 wk-1:198.18.0.21 wk-2:198.18.0.22)
state=$(mktemp -d)
trap '$kubeha lab down -i $inventory >/dev/null 2>&1 || true; rm -rf "$state"' EXIT

cargo build --release --locked -q
$kubeha lab down -i $inventory >/dev/null 2>&1 || true
$kubeha lab up -i $inventory >/dev/null

# sshd's own count of accepted logins; the count includes the login that asks for it.
accepted() { ssh -i $key -o UserKnownHostsFile=$known -o StrictHostKeyChecking=yes -o BatchMode=yes "root@$1" \
  "journalctl -u ssh --no-pager -q | grep -c 'Accepted publickey'" ; }
count_all() { for h in "${hosts[@]}"; do echo "${h%%:*} $(accepted "${h#*:}")"; done; }
now() { date +%s.%N; }

before=$(count_all)
t0=$(now)
KUBEHA_STATE_DIR=$state $kubeha apply --yes --output json -i $inventory 2>/dev/null > "$state/full.json"
t1=$(now)
after=$(count_all)
t2=$(now)
KUBEHA_STATE_DIR=$state $kubeha apply --yes --output json -i $inventory 2>/dev/null > "$state/noop.json"
t3=$(now)
t4=$(now)
$kubeha plan --detailed-exitcode -i $inventory >/dev/null 2>&1 || true
t5=$(now)

journals=$(find "$state" -name journal.jsonl -printf '%T@ %p\n' | sort -n | cut -d' ' -f2 | tr '\n' ' ')
python3 - "$state/full.json" "$state/noop.json" "$t0" "$t1" "$t2" "$t3" "$t4" "$t5" "$before" "$after" "$journals" <<'PY'
import json, sys
full, noop = (json.load(open(p)) for p in sys.argv[1:3])
t0, t1, t2, t3, t4, t5 = map(float, sys.argv[3:9])
before = dict(l.split() for l in sys.argv[9].splitlines())
after = dict(l.split() for l in sys.argv[10].splitlines())
print(f"full apply:      {t1 - t0:6.1f} s wall ({full['stepsRun']} steps, {full['changed']} changed)")
print(f"  executor:      {full['seconds']:6.1f} s, critical path {full['criticalPathSeconds']:.1f} s, all steps serially {full['serialSeconds']:.1f} s")
print(f"  before steps:  {t1 - t0 - full['seconds']:6.1f} s (connect, lock, cluster state, probe, plan)")
print(f"no-op re-apply:  {t3 - t2:6.1f} s wall ({noop['changed']} changed)")
print(f"plan (no-op):    {t5 - t4:6.1f} s wall")
conns = {h: int(after[h]) - int(before[h]) - 1 for h in before}
print("SSH connections per host during the full apply:", ", ".join(f"{h} {n}" for h, n in conns.items()))
# The software phase, from the full run's journal (the first run folder) and the no-op run's.
runs = sys.argv[11].split()
def software_steps(journal):
    steps = [json.loads(l) for l in open(journal) if '"stepDone"' in l]
    return {s["stepId"].split("/", 1)[1]: s["seconds"] for s in steps if s["stepId"].startswith("software/")}
first = software_steps(runs[0]) if runs else {}
print("software phase, first install:", ", ".join(f"{h} {s:.1f} s" for h, s in sorted(first.items())) or "no software step")
print("software steps in the no-op run:", len(software_steps(runs[1])) if len(runs) > 1 else 0)
PY
# Bytes each host received (kubeha uploads each of its artifacts once per host), from a bundle fetched from the
# lab's loopback mirror: that fetch is also the download time of a bundle.
b0=$(now)
XDG_CACHE_HOME=$state/cache $kubeha artifacts fetch -i $inventory -o "$state/bundle" >/dev/null
b1=$(now)
$kubeha artifacts list -i $inventory --output json | python3 -c '
import json, os, sys, collections
bundle, seconds = sys.argv[1], float(sys.argv[2])
manifest = {(e["name"], e["version"]): e for e in json.load(open(os.path.join(bundle, "manifest.json")))["artifacts"]}
per_host, total = collections.Counter(), 0
for a in json.load(sys.stdin)["artifacts"]:
    size = os.path.getsize(os.path.join(bundle, manifest[(a["name"], a["version"])]["file"]))
    total += size
    for h in a["hosts"]:
        per_host[h] += size
print(f"bundle download from the loopback mirror: {total / 2**20:.0f} MiB in {seconds:.1f} s")
print("bytes uploaded per host:", ", ".join(f"{h} {n / 2**20:.0f} MiB" for h, n in per_host.items()))
' "$state/bundle" "$(python3 -c "print($b1 - $b0)")"
