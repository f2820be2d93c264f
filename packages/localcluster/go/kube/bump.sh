#!/usr/bin/env bash
# Re-pins the wrapper module to another Kubernetes patch release. Run by hand when bumping,
# then commit go.mod and go.sum. Usage: ./bump.sh 1.34.4 3.6.4   (Kubernetes version, etcd version)
set -euo pipefail
cd "$(dirname "$0")"
export GOTOOLCHAIN=local
KUBE="$1"; ETCD="$2"; MINOR="${KUBE#*.}"; MINOR="${MINOR%%.*}"; PATCH="${KUBE##*.}"
go mod edit -require="k8s.io/kubernetes@v${KUBE}" -require="go.etcd.io/etcd/server/v3@v${ETCD}"
# k8s.io/kubernetes requires its staging modules at v0.0.0 and points them at ./staging; a consumer must
# replace each with the published v0.<minor>.<patch> tag. Derive the list from the release's own go.mod.
MOD="$(go mod download -json "k8s.io/kubernetes@v${KUBE}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
for m in $(grep -E '=> \./staging/src/k8s.io/' "$MOD" | awk '{print $1}' | sort -u); do
  go mod edit -replace="${m}=${m}@v0.${MINOR}.${PATCH}"
done
for t in k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
         k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl \
         go.etcd.io/etcd/server/v3; do
  go mod edit -tool="$t"
done
go mod tidy
