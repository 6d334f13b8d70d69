#!/usr/bin/env bash
# Builds the upstream programs the lab runs (Kubernetes and etcd) from their Go modules, once per key, and
# prints the folder that holds them. Two release sets: the current one (kubernetes/, etcd/: the programs in the
# folder itself, with the lab's own CRI runtime and mirror) and the previous one (previous/kubernetes,
# previous/etcd: the same upstream programs one minor version older, in the folder's previous/), which the lab's
# upgrade test bootstraps and then upgrades to the current one.
#
#   lab/upstream/build.sh [CACHE]          CACHE defaults to /var/lib/kubeha/lab/cache
#   lab/upstream/build.sh --test [CACHE]   runs the Go tests of the lab's CRI runtime and mirror server instead
#   lab/upstream/build.sh --mirror-manifest KVERSION EVERSION [KVERSION EVERSION]... GOARCH
#                                          prints the mirror's paths for those sets of versions (what MANIFEST
#                                          holds); src/lab/mirror.rs's tests compare them with
#                                          src/artifacts/catalogue.rs
#
# The key is a hash of everything that decides the bytes: all four wrapper modules (go.mod, go.sum, tools.go),
# this script (flags, ldflags, the list of programs), `go version` and GOOS/GOARCH. A finished build lives in
# CACHE/upstream/KEY with a SHA256SUMS file; it is built in a folder beside it and renamed only when complete,
# and its checksums are verified before every reuse (a folder that fails them is removed and built again).
# Go's own module and build caches live in CACHE/go, so a new key (one version bumped) rebuilds only what changed.
#
# The previous set is also kept under a key of its own (its two wrapper modules, this script, Go):
# CACHE/upstream/previous-PKEY, built, verified and reused the same way, and hard-linked into KEY/previous/.
# So bumping the current set reuses the previous programs as they are (hard links, no Go build), a machine that
# binds KEY sees both sets, and a change of this script (both keys) only relinks them from Go's build cache.
#
# The build folder also holds mirror/: both sets' kubeadm, kubelet and kubectl (hard links) and etcd tarballs in
# the upstream download layout with upstream-style checksum files, which kubeha-lab-mirror serves on loopback so
# that `kubeha apply` (and `kubeha upgrade`) install the lab through the same download code
# (`spec.artifacts.mirror`) as a real site.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
mode=build
if [[ ${1:-} == --test ]]; then
  mode=test
  shift
elif [[ ${1:-} == --mirror-manifest ]]; then
  mode=manifest
  shift
fi
cache=${1:-/var/lib/kubeha/lab/cache}

export GOMODCACHE="$cache/go/mod" GOCACHE="$cache/go/build"
export CGO_ENABLED=0 GOFLAGS=-mod=readonly GOTOOLCHAIN=local
# The compiler collects its own garbage less often with more heap (the machines have 24 GB; two compiles run at
# once): a cold build of both sets spends less time in the compiler's GC. Not part of any build's identity.
export GOGC=${GOGC:-400}
# Without GOPROXY set, go uses the public proxy: the only registry these machines reach for Go modules.
unset GOPATH 2>/dev/null || true

kubernetes_programs=(kubeadm kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet)
# The previous set's wrapper modules, and the folder its programs take inside a build (machines see it at
# /opt/kubeha-lab/upstream/previous; lab/machine/images.json names its control-plane programs there).
previous_modules=$here/previous
previous=previous
# The lab's own programs, built in the Kubernetes module: the CRI runtime (kubernetes/labcri, against its
# cri-api) and the loopback download mirror (kubernetes/labmirror, standard library only).
lab_programs=(kubeha-lab-cri kubeha-lab-mirror)
etcd_programs=(etcd etcdctl etcdutl)

# The version a wrapper module requires of one module, as go.mod spells it (v1.36.3).
required_version() { # MODULE_DIR MODULE_PATH
  (cd "$1" && go list -m -f '{{.Version}}' "$2")
}

hash_of() { # FILE... (relative to this folder), then the toolchain: a 16-digit key
  {
    (cd "$here" && for f in "$@"; do
      printf '%s ' "$f"
      sha256sum <"$f"
    done)
    go version
    go env GOOS GOARCH CGO_ENABLED
  } | sha256sum | cut -c1-16
}

previous_files=(previous/kubernetes/go.mod previous/kubernetes/go.sum previous/kubernetes/tools.go
  previous/etcd/go.mod previous/etcd/go.sum previous/etcd/tools.go build.sh)

key() {
  (cd "$here" && hash_of kubernetes/go.mod kubernetes/go.sum kubernetes/tools.go kubernetes/labcri/*.go kubernetes/labmirror/*.go \
    etcd/go.mod etcd/go.sum etcd/tools.go "${previous_files[@]}")
}

previous_key() { hash_of "${previous_files[@]}"; }

has_checksums() { # DIR PROGRAM...: each program listed in DIR/SHA256SUMS, and every listed file matching
  local dir=$1 program
  shift
  [[ -f "$dir/SHA256SUMS" ]] || return 1
  for program in "$@"; do
    grep -q "  $program\$" "$dir/SHA256SUMS" || return 1
  done
  (cd "$dir" && sha256sum --quiet --strict -c SHA256SUMS >/dev/null 2>&1)
}

verified() { # DIR: every program of both sets present and matching its recorded checksum, and the mirror
  has_checksums "$1" "${kubernetes_programs[@]}" "${etcd_programs[@]}" "${lab_programs[@]}" \
    "${kubernetes_programs[@]/#/$previous/}" "${etcd_programs[@]/#/$previous/}" && mirror_verified "$1"
}

previous_verified() { has_checksums "$1" "${kubernetes_programs[@]}" "${etcd_programs[@]}"; } # DIR

# The mirror's paths below mirror/, as dl.k8s.io and GitHub lay them out (src/artifacts/catalogue.rs `file()`
# spells the same paths; its test in src/lab/mirror.rs runs --mirror-manifest to compare).
kubernetes_mirror_dir() { echo "release/$1/bin/linux/$2"; }   # KVERSION GOARCH
etcd_mirror_dir() { echo "etcd-io/etcd/releases/download/$1"; } # EVERSION
etcd_tarball() { echo "etcd-$1-linux-$2"; }                     # EVERSION GOARCH: also its top folder
mirror_kubernetes_programs=(kubeadm kubelet kubectl)

mirror_manifest() { # KVERSION EVERSION [KVERSION EVERSION]... GOARCH: every file of the mirror, one path a line
  local arch=${!#} program
  while (($# >= 3)); do
    for program in "${mirror_kubernetes_programs[@]}"; do
      echo "$(kubernetes_mirror_dir "$1" "$arch")/$program"
      echo "$(kubernetes_mirror_dir "$1" "$arch")/$program.sha256"
    done
    echo "$(etcd_mirror_dir "$2")/$(etcd_tarball "$2" "$arch").tar.gz"
    echo "$(etcd_mirror_dir "$2")/SHA256SUMS"
    shift 2
  done
}

# The sets of a build folder, as paths relative to it: "." (the current set) and the previous one.
sets=(. "$previous")

listed_as() { # SET PROGRAM: how the folder's SHA256SUMS names it (kubeadm, previous/kubeadm)
  if [[ $1 == . ]]; then echo "$2"; else echo "$1/$2"; fi
}

set_versions() { # OUT: each set's KVERSION EVERSION, as mirror_manifest takes them
  local set
  for set in "${sets[@]}"; do
    echo "$(cat "$1/$set/KUBERNETES_VERSION") $(cat "$1/$set/ETCD_VERSION")"
  done
}

build_mirror() { # OUT: after the builds, which wrote the versions
  local arch set
  arch=$(go env GOARCH)
  for set in "${sets[@]}"; do
    build_mirror_set "$1" "$set" "$arch"
  done
  mirror_manifest $(set_versions "$1") "$arch" >"$1/mirror/MANIFEST"
}

build_mirror_set() { # OUT SET GOARCH: one set's files in OUT/mirror
  local src="$1/$2" kversion eversion program name
  kversion=$(cat "$src/KUBERNETES_VERSION")
  eversion=$(cat "$src/ETCD_VERSION")
  local kdir="$1/mirror/$(kubernetes_mirror_dir "$kversion" "$3")"
  local edir="$1/mirror/$(etcd_mirror_dir "$eversion")"
  mkdir -p "$kdir" "$edir"
  for program in "${mirror_kubernetes_programs[@]}"; do
    ln "$src/$program" "$kdir/$program"
    # dl.k8s.io's .sha256 files hold the bare lower-case digest and a newline.
    sha256sum <"$src/$program" | cut -d' ' -f1 >"$kdir/$program.sha256"
  done
  # Like upstream's tarball: one top folder with the three programs. Sorted names, fixed owner, mode and time,
  # and gzip without a name or time stamp, so the same programs always give the same bytes and checksum.
  name=$(etcd_tarball "$eversion" "$3")
  local staging="$1/.etcd-tarball"
  mkdir -p "$staging/$name"
  for program in "${etcd_programs[@]}"; do ln "$src/$program" "$staging/$name/$program"; done
  local started=$SECONDS
  tar -C "$staging" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --mode=u=rwX,go=rX -cf - "$name" | gzip -n >"$edir/$name.tar.gz"
  echo "build.sh: etcd $eversion tarball made in $((SECONDS - started)) s" >&2
  rm -rf "$staging"
  (cd "$edir" && sha256sum "$name.tar.gz" >SHA256SUMS)
}

# The mirror holds exactly what MANIFEST lists (so the paths build_mirror wrote are the ones --mirror-manifest
# prints), its Kubernetes programs are the verified ones themselves (hard links, each set's in its own
# release/VERSION folder), and its checksum files say so.
mirror_verified() { # DIR
  local m="$1/mirror" path program set kdir
  [[ -f "$m/MANIFEST" ]] || return 1
  [[ $(cd "$m" && find . -type f ! -name MANIFEST -printf '%P\n' | sort) == $(sort "$m/MANIFEST") ]] || return 1
  for set in "${sets[@]}"; do
    [[ -f "$1/$set/KUBERNETES_VERSION" ]] || return 1
    kdir="$m/$(kubernetes_mirror_dir "$(cat "$1/$set/KUBERNETES_VERSION")" "$(go env GOARCH)")"
    for program in "${mirror_kubernetes_programs[@]}"; do
      [[ "$kdir/$program" -ef "$1/$set/$program" ]] || return 1
      grep -qx "$(cat "$kdir/$program.sha256")  $(listed_as "$set" "$program")" "$1/SHA256SUMS" || return 1
    done
  done
  while read -r path; do
    case $path in
      */SHA256SUMS) (cd "$m/${path%/SHA256SUMS}" && sha256sum --quiet --strict -c SHA256SUMS >/dev/null 2>&1) || return 1 ;;
    esac
  done <"$m/MANIFEST"
}

build_kubernetes() { # OUT MODULE_DIR
  local version major minor
  version=$(required_version "$2" k8s.io/kubernetes)
  major=${version#v}
  major=${major%%.*}
  minor=${version#v*.}
  minor=${minor%%.*}
  # The variables Kubernetes' own build stamps (hack/lib/version.sh), in both packages that carry them:
  # kubeadm's preflight compares `kubelet --version`, and the API server's /version reports them.
  local ldflags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.gitCommit=unknown -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  local packages=()
  for program in "${kubernetes_programs[@]}"; do packages+=("k8s.io/kubernetes/cmd/$program"); done
  (cd "$2" && go build -trimpath -ldflags "$ldflags" -o "$1/" "${packages[@]}")
  echo "$version" >"$1/KUBERNETES_VERSION"
}

build_lab_programs() { # OUT: from the current set's module only
  (cd "$here/kubernetes" && go build -trimpath -ldflags "-s -w" -o "$1/kubeha-lab-cri" ./labcri &&
    go build -trimpath -ldflags "-s -w" -o "$1/kubeha-lab-mirror" ./labmirror)
}

build_etcd() { # OUT MODULE_DIR
  local version
  version=$(required_version "$2" go.etcd.io/etcd/server/v3)
  # The same three main packages in 3.5 and 3.6: each module's root.
  (cd "$2" && go build -trimpath -ldflags "-s -w" -o "$1/etcd" go.etcd.io/etcd/server/v3 &&
    go build -trimpath -ldflags "-s -w" -o "$1/etcdctl" go.etcd.io/etcd/etcdctl/v3 &&
    go build -trimpath -ldflags "-s -w" -o "$1/etcdutl" go.etcd.io/etcd/etcdutl/v3)
  echo "$version" >"$1/ETCD_VERSION"
}

# The previous set's own cached folder, built first if absent or failing its checksums (under the lock).
# Sets pdest to its path (not printed: in a command substitution, a failed build would not stop the script).
ensure_previous() {
  local pk
  pk=$(previous_key)
  pdest="$cache/upstream/previous-$pk"
  if [[ -d "$pdest" ]]; then
    if previous_verified "$pdest"; then
      return
    fi
    echo "build.sh: $pdest fails its checksums; building it again" >&2
    rm -rf "$pdest"
  fi
  previous_partial="$cache/upstream/.previous-$pk.partial-$$"
  mkdir -p "$previous_partial"
  local started=$SECONDS
  echo "build.sh: building the previous Kubernetes and etcd into $pdest (cold: tens of minutes on 2 cores)" >&2
  build_etcd "$previous_partial" "$previous_modules/etcd"
  build_kubernetes "$previous_partial" "$previous_modules/kubernetes"
  echo "build.sh: previous set ($(cat "$previous_partial/KUBERNETES_VERSION"), etcd $(cat "$previous_partial/ETCD_VERSION")) built after $((SECONDS - started)) s" >&2
  (cd "$previous_partial" && sha256sum "${kubernetes_programs[@]}" "${etcd_programs[@]}" >SHA256SUMS)
  previous_verified "$previous_partial"
  mv -T "$previous_partial" "$pdest"
  previous_partial=
}

# The folders being built, removed if the script stops before renaming them. Globals: bash runs the EXIT trap
# after leaving the functions, whose locals are gone by then.
partial=
previous_partial=
cleanup() { rm -rf ${partial:+"$partial"} ${previous_partial:+"$previous_partial"}; }

# A folder verified by its checksums since this boot, whose files are still the very files then verified
# (inode, size, time), is not hashed again: `lab up` runs this script each time, and hashing both sets (1.1 GB)
# took 11 s. A changed file, a new boot or a missing stamp means a full check.
listing() { (cd "$1" && find . -type f ! -name .verified -printf '%i %s %T@ %P\n' | sort); } # DIR
write_stamp() { { cat /proc/sys/kernel/random/boot_id; listing "$1"; } >"$1/.verified"; }
stamp_current() { [[ -f "$1/.verified" ]] && [[ $(cat "$1/.verified") == "$(cat /proc/sys/kernel/random/boot_id; listing "$1")" ]]; }

main() {
  command -v go >/dev/null || { echo "build.sh: go is not installed (the lab builds Kubernetes and etcd with it)" >&2; exit 1; }
  local k dest pdest
  k=$(key)
  dest="$cache/upstream/$k"
  # One build at a time per cache: a second run (`lab up` while the tests build, two CI jobs) waits here and
  # then finds the finished folder, instead of building beside it or removing its partial folder below.
  mkdir -p "$cache/upstream"
  exec 9>"$cache/upstream/.lock"
  flock 9
  if [[ -d "$dest" ]]; then
    if stamp_current "$dest" || { verified "$dest" && write_stamp "$dest"; }; then
      echo "$dest"
      return
    fi
    echo "build.sh: $dest fails its checksums; building it again" >&2
    rm -rf "$dest"
  fi
  mkdir -p "$GOMODCACHE" "$GOCACHE"
  # Leftovers of builds that were killed, of any key and either set (this script's own names only; the lock
  # above rules out a live one).
  find "$cache/upstream" -maxdepth 1 -name ".*.partial-*" -exec rm -rf {} +
  partial="$cache/upstream/.$k.partial-$$"
  trap cleanup EXIT
  ensure_previous
  mkdir -p "$partial"
  local started=$SECONDS
  echo "build.sh: building Kubernetes and etcd into $dest (cold: tens of minutes on 2 cores)" >&2
  build_etcd "$partial" "$here/etcd"
  echo "build.sh: etcd built after $((SECONDS - started)) s" >&2
  build_kubernetes "$partial" "$here/kubernetes"
  build_lab_programs "$partial"
  echo "build.sh: Kubernetes built after $((SECONDS - started)) s" >&2
  # Hard links (same file system): the previous set costs no space twice, and a later prune of its cached
  # folder leaves this one whole.
  cp -al "$pdest" "$partial/$previous"
  build_mirror "$partial"
  # The mirror's own checksum files and MANIFEST are anchored here, so the tarballs verify against this file too.
  (cd "$partial" && sha256sum "${kubernetes_programs[@]}" "${etcd_programs[@]}" "${lab_programs[@]}" \
    "${kubernetes_programs[@]/#/$previous/}" "${etcd_programs[@]/#/$previous/}" mirror/MANIFEST \
    $(cd "$partial" && find mirror -name SHA256SUMS | sort) >SHA256SUMS)
  verified "$partial"
  mv -T "$partial" "$dest"
  partial=
  trap - EXIT
  prune_except "$dest" "$pdest"
  echo "$dest"
}

# Builds of other keys take some 600 MB each (the previous set's, some 500 MB more): remove them unless a running
# machine still has one bound in. A folder KEY/previous is hard links, so it outlives previous-PKEY's removal.
prune_except() { # KEEP...
  local old keep kept
  for old in "$cache"/upstream/*; do
    [[ -d "$old" ]] || continue
    kept=false
    for keep in "$@"; do
      if [[ "$old" == "$keep" ]]; then kept=true; fi
    done
    $kept && continue
    # grep reads the files itself: behind a pipe, `grep -q` ends at the first match, cat dies of SIGPIPE, and
    # under pipefail the pipeline "fails" exactly when the folder IS mounted (that removed a running lab's).
    if ! grep -qsF " $old " /proc/[0-9]*/mountinfo; then
      rm -rf "$old"
    fi
  done
}

if [[ $mode == manifest ]]; then
  (($# >= 3 && $# % 2 == 1)) || { echo "usage: build.sh --mirror-manifest KVERSION EVERSION [KVERSION EVERSION]... GOARCH" >&2; exit 2; }
  mirror_manifest "$@"
  exit
fi
if [[ $mode == test ]]; then
  mkdir -p "$GOMODCACHE" "$GOCACHE"
  cd "$here/kubernetes" && exec go test -count=1 ./labcri/ ./labmirror/
fi
main
