#!/usr/bin/env bash
# Renders deploy/chart with its default values, as release etcd-repopulate in
# namespace services, into one file per template in DIR (default deploy/):
# deploy/*.yaml are this output, so that the chart is their one source.
# deploy/chart_test.go fails when they differ. Needs bin/helm
# (hack/install-tools.sh helm).
#
# Usage: hack/render-manifests.sh [DIR]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/deploy}
helm=${HELM:-$root/bin/helm}
[[ -x $helm ]] || { echo "render-manifests: $helm is missing: run hack/install-tools.sh helm" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$helm" template etcd-repopulate "$root/deploy/chart" --namespace services --output-dir "$tmp" >/dev/null
for f in "$tmp"/etcd-repopulate/templates/*.yaml; do
  {
    echo "# Generated from deploy/chart by 'make manifests' (helm template, default values):"
    echo "# edit the chart, then run 'make manifests'."
    cat "$f"
  } >"$dir/$(basename "$f")"
done
