#!/usr/bin/env bash
# Builds the upstream programs the lab runs (Kubernetes and etcd) from their Go modules, once per key, and
# prints the folder that holds them.
#
#   lab/upstream/build.sh [CACHE]          CACHE defaults to /var/lib/kubeha/lab/cache
#   lab/upstream/build.sh --test [CACHE]   runs the Go tests of the lab's CRI runtime and mirror server instead
#   lab/upstream/build.sh --mirror-manifest KVERSION EVERSION GOARCH
#                                          prints the mirror's paths for those versions (what MANIFEST holds);
#                                          src/lab/mirror.rs's tests compare them with src/artifacts/catalogue.rs
#
# The key is a hash of everything that decides the bytes: both wrapper modules (go.mod, go.sum, tools.go), this
# script (flags, ldflags, the list of programs), `go version` and GOOS/GOARCH. A finished build lives in
# CACHE/upstream/KEY with a SHA256SUMS file; it is built in a folder beside it and renamed only when complete,
# and its checksums are verified before every reuse (a folder that fails them is removed and built again).
# Go's own module and build caches live in CACHE/go, so a new key (one version bumped) rebuilds only what changed.
#
# The build folder also holds mirror/: kubeadm, kubelet and kubectl (hard links) and an etcd tarball in the
# upstream download layout with upstream-style checksum files, which kubeha-lab-mirror serves on loopback so that
# `kubeha apply` installs the lab through the same download code (`spec.artifacts.mirror`) as a real site.
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
# Without GOPROXY set, go uses the public proxy: the only registry these machines reach for Go modules.
unset GOPATH 2>/dev/null || true

kubernetes_programs=(kubeadm kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet)
# The lab's own programs, built in the Kubernetes module: the CRI runtime (kubernetes/labcri, against its
# cri-api) and the loopback download mirror (kubernetes/labmirror, standard library only).
lab_programs=(kubeha-lab-cri kubeha-lab-mirror)
etcd_programs=(etcd etcdctl etcdutl)

# The version a wrapper module requires of one module, as go.mod spells it (v1.36.3).
required_version() { # MODULE_DIR MODULE_PATH
  (cd "$1" && go list -m -f '{{.Version}}' "$2")
}

key() {
  {
    (cd "$here" && for f in kubernetes/go.mod kubernetes/go.sum kubernetes/tools.go kubernetes/labcri/*.go kubernetes/labmirror/*.go etcd/go.mod etcd/go.sum etcd/tools.go build.sh; do
      printf '%s ' "$f"
      sha256sum <"$f"
    done)
    go version
    go env GOOS GOARCH CGO_ENABLED
  } | sha256sum | cut -c1-16
}

verified() { # DIR: every program present and matching its recorded checksum
  [[ -f "$1/SHA256SUMS" ]] || return 1
  local program
  for program in "${kubernetes_programs[@]}" "${etcd_programs[@]}" "${lab_programs[@]}"; do
    grep -q "  $program\$" "$1/SHA256SUMS" || return 1
  done
  (cd "$1" && sha256sum --quiet --strict -c SHA256SUMS >/dev/null 2>&1) && mirror_verified "$1"
}

# The mirror's paths below mirror/, as dl.k8s.io and GitHub lay them out (src/artifacts/catalogue.rs `file()`
# spells the same paths; its test in src/lab/mirror.rs runs --mirror-manifest to compare).
kubernetes_mirror_dir() { echo "release/$1/bin/linux/$2"; }   # KVERSION GOARCH
etcd_mirror_dir() { echo "etcd-io/etcd/releases/download/$1"; } # EVERSION
etcd_tarball() { echo "etcd-$1-linux-$2"; }                     # EVERSION GOARCH: also its top folder
mirror_kubernetes_programs=(kubeadm kubelet kubectl)

mirror_manifest() { # KVERSION EVERSION GOARCH: every file of the mirror, one relative path a line
  local program
  for program in "${mirror_kubernetes_programs[@]}"; do
    echo "$(kubernetes_mirror_dir "$1" "$3")/$program"
    echo "$(kubernetes_mirror_dir "$1" "$3")/$program.sha256"
  done
  echo "$(etcd_mirror_dir "$2")/$(etcd_tarball "$2" "$3").tar.gz"
  echo "$(etcd_mirror_dir "$2")/SHA256SUMS"
}

build_mirror() { # OUT: after both builds, which wrote the versions
  local kversion eversion arch program name
  kversion=$(cat "$1/KUBERNETES_VERSION")
  eversion=$(cat "$1/ETCD_VERSION")
  arch=$(go env GOARCH)
  local kdir="$1/mirror/$(kubernetes_mirror_dir "$kversion" "$arch")"
  local edir="$1/mirror/$(etcd_mirror_dir "$eversion")"
  mkdir -p "$kdir" "$edir"
  for program in "${mirror_kubernetes_programs[@]}"; do
    ln "$1/$program" "$kdir/$program"
    # dl.k8s.io's .sha256 files hold the bare lower-case digest and a newline.
    sha256sum <"$1/$program" | cut -d' ' -f1 >"$kdir/$program.sha256"
  done
  # Like upstream's tarball: one top folder with the three programs. Sorted names, fixed owner, mode and time,
  # and gzip without a name or time stamp, so the same programs always give the same bytes and checksum.
  name=$(etcd_tarball "$eversion" "$arch")
  local staging="$1/.etcd-tarball"
  mkdir -p "$staging/$name"
  for program in "${etcd_programs[@]}"; do ln "$1/$program" "$staging/$name/$program"; done
  local started=$SECONDS
  tar -C "$staging" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --mode=u=rwX,go=rX -cf - "$name" | gzip -n >"$edir/$name.tar.gz"
  echo "build.sh: etcd tarball made in $((SECONDS - started)) s" >&2
  rm -rf "$staging"
  (cd "$edir" && sha256sum "$name.tar.gz" >SHA256SUMS)
  mirror_manifest "$kversion" "$eversion" "$arch" >"$1/mirror/MANIFEST"
}

# The mirror holds exactly what MANIFEST lists (so the paths build_mirror wrote are the ones --mirror-manifest
# prints), its Kubernetes programs are the verified ones themselves (hard links), and its checksum files say so.
mirror_verified() { # DIR
  local m="$1/mirror" path program
  [[ -f "$m/MANIFEST" ]] || return 1
  [[ $(cd "$m" && find . -type f ! -name MANIFEST -printf '%P\n' | sort) == $(sort "$m/MANIFEST") ]] || return 1
  while read -r path; do
    case $path in
      *.sha256)
        program=${path##*/}
        program=${program%.sha256}
        [[ "$m/${path%.sha256}" -ef "$1/$program" ]] || return 1
        grep -qx "$(cat "$m/$path")  $program" "$1/SHA256SUMS" || return 1
        ;;
      */SHA256SUMS) (cd "$m/${path%/SHA256SUMS}" && sha256sum --quiet --strict -c SHA256SUMS >/dev/null 2>&1) || return 1 ;;
    esac
  done <"$m/MANIFEST"
}

build_kubernetes() { # OUT
  local version major minor
  version=$(required_version "$here/kubernetes" k8s.io/kubernetes)
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
  (cd "$here/kubernetes" && go build -trimpath -ldflags "$ldflags" -o "$1/" "${packages[@]}")
  echo "$version" >"$1/KUBERNETES_VERSION"
  (cd "$here/kubernetes" && go build -trimpath -ldflags "-s -w" -o "$1/kubeha-lab-cri" ./labcri &&
    go build -trimpath -ldflags "-s -w" -o "$1/kubeha-lab-mirror" ./labmirror)
}

build_etcd() { # OUT
  local version
  version=$(required_version "$here/etcd" go.etcd.io/etcd/server/v3)
  (cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$1/etcd" go.etcd.io/etcd/server/v3 &&
    go build -trimpath -ldflags "-s -w" -o "$1/etcdctl" go.etcd.io/etcd/etcdctl/v3 &&
    go build -trimpath -ldflags "-s -w" -o "$1/etcdutl" go.etcd.io/etcd/etcdutl/v3)
  echo "$version" >"$1/ETCD_VERSION"
}

main() {
  command -v go >/dev/null || { echo "build.sh: go is not installed (the lab builds Kubernetes and etcd with it)" >&2; exit 1; }
  local k dest partial
  k=$(key)
  dest="$cache/upstream/$k"
  # One build at a time per cache: a second run (`lab up` while the tests build, two CI jobs) waits here and
  # then finds the finished folder, instead of building beside it or removing its partial folder below.
  mkdir -p "$cache/upstream"
  exec 9>"$cache/upstream/.lock"
  flock 9
  if [[ -d "$dest" ]]; then
    if verified "$dest"; then
      echo "$dest"
      return
    fi
    echo "build.sh: $dest fails its checksums; building it again" >&2
    rm -rf "$dest"
  fi
  mkdir -p "$GOMODCACHE" "$GOCACHE"
  # Leftovers of builds that were killed (this script's own names only; the lock above rules out a live one).
  find "$cache/upstream" -maxdepth 1 -name ".$k.partial-*" -exec rm -rf {} +
  partial="$cache/upstream/.$k.partial-$$"
  mkdir -p "$partial"
  trap 'rm -rf "$partial"' EXIT
  local started=$SECONDS
  echo "build.sh: building Kubernetes and etcd into $dest (cold: tens of minutes on 2 cores)" >&2
  build_etcd "$partial"
  echo "build.sh: etcd built after $((SECONDS - started)) s" >&2
  build_kubernetes "$partial"
  echo "build.sh: Kubernetes built after $((SECONDS - started)) s" >&2
  build_mirror "$partial"
  # The mirror's own checksum files and MANIFEST are anchored here, so the tarball verifies against this file too.
  (cd "$partial" && sha256sum "${kubernetes_programs[@]}" "${etcd_programs[@]}" "${lab_programs[@]}" mirror/MANIFEST \
    $(cd "$partial" && find mirror -name SHA256SUMS | sort) >SHA256SUMS)
  verified "$partial"
  mv -T "$partial" "$dest"
  trap - EXIT
  prune_except "$dest"
  echo "$dest"
}

# Builds of other keys take some 600 MB each: remove them unless a running machine still has one bound in.
prune_except() { # KEEP
  local old
  for old in "$cache"/upstream/*; do
    [[ -d "$old" && "$old" != "$1" ]] || continue
    # grep reads the files itself: behind a pipe, `grep -q` ends at the first match, cat dies of SIGPIPE, and
    # under pipefail the pipeline "fails" exactly when the folder IS mounted (that removed a running lab's).
    if ! grep -qsF " $old " /proc/[0-9]*/mountinfo; then
      rm -rf "$old"
    fi
  done
}

if [[ $mode == manifest ]]; then
  [[ $# == 3 ]] || { echo "usage: build.sh --mirror-manifest KVERSION EVERSION GOARCH" >&2; exit 2; }
  mirror_manifest "$@"
  exit
fi
if [[ $mode == test ]]; then
  mkdir -p "$GOMODCACHE" "$GOCACHE"
  cd "$here/kubernetes" && exec go test -count=1 ./labcri/ ./labmirror/
fi
main
