#!/usr/bin/env bash
# Builds the Kubernetes control-plane binaries, etcd and CoreDNS from the Go module proxy, through the
# wrapper modules in ../go/, into a cache outside the work tree. Idempotent: a cache directory is keyed on
# the wrapper modules' contents and is reused when complete. Prints the binary directory on the last line.
#
#   AMBIT_CACHE   cache root (default ~/.cache/ambit)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cache="${AMBIT_CACHE:-$HOME/.cache/ambit}"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly

command -v go >/dev/null || { echo "build-kube-binaries: Go >= 1.24 is needed to build the Kubernetes test binaries (not found on PATH)" >&2; exit 1; }
gov="$(go env GOVERSION)"; gominor="$(echo "$gov" | sed -E 's/^go1\.([0-9]+).*/\1/')"
if [ "${gominor:-0}" -lt 24 ]; then echo "build-kube-binaries: Go >= 1.24 is needed, found $gov" >&2; exit 1; fi

KUBE_VERSION="$(awk '$1=="k8s.io/kubernetes"{print $2}' "$here/go/kube/go.mod")"
COREDNS_VERSION="$(awk '$1=="github.com/coredns/coredns"{print $2}' "$here/go/coredns/go.mod")"
# Bump when the build itself changes (flags, the binary list) so caches are rebuilt.
BUILD_REVISION=1
key="$( (cat "$here"/go/kube/go.{mod,sum} "$here"/go/coredns/go.{mod,sum}; echo "$BUILD_REVISION") | sha256sum | cut -c1-12)"
out="$cache/kube/$KUBE_VERSION-$key"
minor="$(echo "$KUBE_VERSION" | cut -d. -f2)"
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 \
-X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean \
-X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"

build() { # name module-dir package [ldflags]
  local name="$1" dir="$2" pkg="$3" flags="${4:-}"
  if [ -x "$out/$name" ]; then return; fi
  local t0=$SECONDS
  echo "[kube-binaries] building $name ($pkg) ..."
  (cd "$here/go/$dir" && go build -trimpath -ldflags "$flags" -o "$out/$name.tmp" "$pkg")
  mv "$out/$name.tmp" "$out/$name"
  echo "[kube-binaries] $name built in $((SECONDS - t0))s"
}

mkdir -p "$out"
# Progress for long cold builds: a line a minute so CI logs show the build is alive. Its sleep holds no
# inherited output, so nothing keeps a caller's pipe open once the script has exited.
( while sleep 60 </dev/null >/dev/null 2>&1; do echo "[kube-binaries] still building ... ($(date +%H:%M:%S))"; done ) & ticker=$!
trap 'kill $ticker 2>/dev/null || true' EXIT
build etcd kube go.etcd.io/etcd/server/v3 "-s -w"
build kube-apiserver kube k8s.io/kubernetes/cmd/kube-apiserver "$ldflags"
build kube-controller-manager kube k8s.io/kubernetes/cmd/kube-controller-manager "$ldflags"
build kube-scheduler kube k8s.io/kubernetes/cmd/kube-scheduler "$ldflags"
build kube-proxy kube k8s.io/kubernetes/cmd/kube-proxy "$ldflags"
build kubectl kube k8s.io/kubernetes/cmd/kubectl "$ldflags"
build coredns coredns github.com/coredns/coredns "-s -w"
# Older builds (other pins) are dead weight: keep only this one.
find "$cache/kube" -mindepth 1 -maxdepth 1 -type d ! -name "$(basename "$out")" -exec rm -rf {} +
echo "$out"
