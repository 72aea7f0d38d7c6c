#!/usr/bin/env bash
# Installs the pinned real parts the tests and the demo run — Temporal CLI dev
# server, kube-apiserver, kube-controller-manager, etcd and kwok — and the
# workflowcheck and staticcheck linters and helm into a cache
# outside the clone, and links them into bin/. A fresh clone on the same
# machine reuses the cache; a fresh machine builds everything from the Go
# module proxy (about 35 minutes on 2 cores, see README; helm alone about 6).
# The tool 'ssh-peers' instead installs Debian's OpenSSH server and client and
# pdsh with apt-get (the sshfan tests and hack/bench-fanout run real sshd and
# pdsh); it needs root or sudo and never leaves a system sshd running. The tool
# 'chromium' installs Debian's chromium the same way (the Web UI tests in
# internal/webui render the Temporal UI in it, headless).
# The tool 'temporal-server' builds the Temporal server and its SQL schema
# tool (temporal-sql-tool) at the server version the Temporal CLI embeds, in
# hack/temporaltools, whose build list is the CLI's: with the CLI built, most
# of its packages come from Go's build cache. The tool 'postgresql' installs
# Debian's PostgreSQL with apt (no cluster is started; internal/pgtemporal
# starts its own on loopback) and links postgres and initdb into bin/.
#
# Usage: hack/install-tools.sh [tool...]   (default: all)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${ETCD_REPOPULATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/etcd-repopulate}
bin=$root/bin
mkdir -p "$cache" "$bin"

TEMPORAL_CLI_VERSION=v1.5.1
# The server the CLI above embeds (`temporal --version`); docker-compose.yml
# runs its images (internal/pgtemporal's test holds them equal).
TEMPORAL_SERVER_VERSION=v1.29.1
KUBE_VERSION=v1.37.2
KWOK_VERSION=v0.8.0
WORKFLOWCHECK_VERSION=v0.6.0
STATICCHECK_VERSION=v0.8.2
# Renders and installs deploy/chart (make manifests; the deploy tests).
HELM_VERSION=v3.22.0
# Debian bookworm's versions; a newer point release (deb12uN) that replaces
# them in the archive is installed instead, with a warning.
OPENSSH_DEB_VERSION='1:9.2p1-2+deb12u10'
PDSH_DEB_VERSION='2.34-0.2'
# bookworm-security's build; its --headless=new and DevTools protocol are what
# internal/browser drives.
CHROMIUM_DEB_VERSION='156.0.8078.79-1~deb12u1'
POSTGRESQL_MAJOR=15
POSTGRESQL_DEB_VERSION='15.18-0+deb12u1'
kubetools=$root/hack/kubetools
# The kube tools are keyed by their module's go.sum so that a pin change
# rebuilds them instead of silently reusing old binaries.
kubetools_key=$(cat "$kubetools/go.mod" "$kubetools/go.sum" | sha256sum | cut -c1-12)
temporaltools=$root/hack/temporaltools
temporaltools_key=$(cat "$temporaltools/go.mod" "$temporaltools/go.sum" | sha256sum | cut -c1-12)

log() { printf 'install-tools: %s\n' "$*" >&2; }

# build_once DIR NAME CMD...: runs CMD with $out set to a scratch directory
# unless DIR/NAME already exists; moves the result into place atomically so an
# interrupted build never leaves a half-written binary in the cache.
build_once() {
  local dir=$1 name=$2
  shift 2
  if [[ -x $dir/$name ]]; then
    return 0
  fi
  log "building $name into $dir (cold builds take minutes; later runs reuse it)"
  local started=$SECONDS
  out=$(mktemp -d "$cache/.build.XXXXXX")
  if ! "$@"; then
    rm -rf "$out"
    log "failed to build $name"
    return 1
  fi
  mkdir -p "$dir"
  mv "$out/$name" "$dir/$name"
  rm -rf "$out"
  log "built $name in $((SECONDS - started))s"
}

link() { ln -sfn "$1" "$bin/$(basename "$1")"; }

go_install_temporal() { GOBIN=$out go install "github.com/temporalio/cli/cmd/temporal@$TEMPORAL_CLI_VERSION"; }

kube_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION \
-X k8s.io/component-base/version.gitMajor=1 \
-X k8s.io/component-base/version.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2)"

go_build_kube() { # $1: binary name, $2: package
  (cd "$kubetools" && go build -trimpath -ldflags "$kube_ldflags" -o "$out/$1" "$2")
}
go_build_apiserver() { go_build_kube kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver; }
go_build_controller_manager() { go_build_kube kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager; }
go_build_etcd() { (cd "$kubetools" && go build -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3); }
# No -trimpath and no compile flags: the packages must compile exactly as in
# the CLI's `go install` for Go's build cache to serve them.
go_build_temporaltool() { # $1: binary name, $2: package
  (cd "$temporaltools" && go build -ldflags "-s -w" -o "$out/$1" "$2")
}
go_build_temporal_server() { go_build_temporaltool temporal-server go.temporal.io/server/cmd/server; }
go_build_temporal_sql_tool() { go_build_temporaltool temporal-sql-tool go.temporal.io/server/cmd/tools/sql; }
go_install_workflowcheck() { GOBIN=$out go install "go.temporal.io/sdk/contrib/tools/workflowcheck@$WORKFLOWCHECK_VERSION"; }
go_install_staticcheck() { GOBIN=$out go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"; }
# The version flag as helm's own Makefile sets it (else `helm version` says v3.22).
go_install_helm() { GOBIN=$out go install -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"; }
go_install_kwok() { GOBIN=$out go install -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"; }

# kwok alone loads no stages; take the ones kwokctl uses from kwok's own
# module source so that fake nodes go Ready, pods go Running/Ready, Job pods
# Succeed and deleted pods really disappear.
copy_kwok_stages() {
  local dir=$1
  [[ -s $dir/kwok-stages.yaml ]] && return 0
  local src
  src=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  local tmp
  tmp=$(mktemp "$cache/.stages.XXXXXX")
  for f in node/fast/node-initialize.yaml \
    node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    cat "$src/kustomize/stage/$f"
    printf '\n---\n'
  done >"$tmp"
  chmod 644 "$tmp"
  mv "$tmp" "$dir/kwok-stages.yaml"
}

# apt_serves PKG=VERSION...: whether apt's lists offer each exact version
# (apt-cache show exits 0 even for an unknown version, madison does not lie).
apt_serves() {
  local pv
  for pv in "$@"; do
    apt-cache madison "${pv%%=*}" 2>/dev/null | awk -F'|' '{gsub(/ /, "", $2); print $2}' | grep -qxF "${pv#*=}" || return 1
  done
}

# apt_install LABEL PKG=VERSION...: apt-get installs the pinned versions
# without recommends; if apt no longer serves them (a newer deb12uN replaced
# them), installs what apt has and warns. Runs apt-get update at most once,
# only when apt does not know the pinned versions. Needs root or sudo.
apt_install() {
  local label=$1
  shift
  local pinned=("$@") sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { log "$label: need root or sudo to apt-get install ${pinned[*]%%=*}"; return 1; }
    sudo=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ! apt_serves "${pinned[@]}"; then
    log "$label: apt-get update"
    "${sudo[@]}" apt-get update -qq
  fi
  local install=("${pinned[@]}")
  if ! apt_serves "${pinned[@]}"; then
    log "WARNING: $label: apt does not serve the pinned versions (${pinned[*]});"
    log "WARNING: installing the versions it has now. Update the pins in hack/install-tools.sh."
    install=("${pinned[@]%%=*}")
  fi
  log "$label: apt-get install ${install[*]}"
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${install[@]}" >&2 || { log "$label: apt-get install failed"; return 1; }
}

# install_ssh_peers: apt-get installs openssh-server, openssh-client and pdsh
# when /usr/sbin/sshd, ssh or pdsh is missing. Services are kept from starting
# during the install (policy-rc.d) and a system sshd that runs anyway is
# stopped and disabled: the tests start their own unprivileged-style sshd on
# 127.0.0.0/8 only.
install_ssh_peers() {
  if [[ -x /usr/sbin/sshd ]] && command -v ssh >/dev/null && command -v pdsh >/dev/null; then
    return 0
  fi
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { log "ssh-peers: need root or sudo to apt-get install openssh-server openssh-client pdsh"; return 1; }
    sudo=(sudo)
  fi
  # Keep dpkg from starting sshd on port 22 while it installs.
  local policy=/usr/sbin/policy-rc.d made_policy=
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    made_policy=1
  fi
  local rc=0
  apt_install ssh-peers "openssh-server=$OPENSSH_DEB_VERSION" "openssh-client=$OPENSSH_DEB_VERSION" \
    "openssh-sftp-server=$OPENSSH_DEB_VERSION" "pdsh=$PDSH_DEB_VERSION" || rc=$?
  [[ -n $made_policy ]] && "${sudo[@]}" rm -f "$policy"
  [[ $rc -eq 0 ]] || return "$rc"
  # No system sshd listening on port 22: disable it under systemd, stop it
  # (by its pid file) otherwise.
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
    "${sudo[@]}" systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true
  elif [[ -s /run/sshd.pid ]] && "${sudo[@]}" kill -0 "$(cat /run/sshd.pid)" 2>/dev/null; then
    log "ssh-peers: stopping the system sshd the package started (pid $(cat /run/sshd.pid))"
    "${sudo[@]}" kill "$(cat /run/sshd.pid)" || true
  fi
  for b in /usr/sbin/sshd ssh pdsh; do
    command -v "$b" >/dev/null || { log "ssh-peers: $b still missing after apt-get install"; return 1; }
  done
  log "ssh-peers: $(ssh -V 2>&1), $(dpkg-query -W -f='pdsh ${Version}' pdsh)"
}

# install_chromium: apt-get installs Debian's chromium when it is missing.
# chromium-common is pinned too: chromium depends on its exact version. The
# tests run the browser itself, not the /usr/bin/chromium wrapper script.
install_chromium() {
  local browser=/usr/lib/chromium/chromium
  [[ -x $browser ]] && return 0
  apt_install chromium "chromium=$CHROMIUM_DEB_VERSION" "chromium-common=$CHROMIUM_DEB_VERSION" || return 1
  [[ -x $browser ]] || { log "chromium: $browser still missing after apt-get install"; return 1; }
  log "chromium: $("$browser" --version)"
}

# install_postgresql: apt-get installs Debian's PostgreSQL server when its
# binaries are missing, with policy-rc.d keeping the package's own cluster
# from starting; the tests run postgres as the 'postgres' system user the
# package creates (postgres refuses to run as root).
install_postgresql() {
  local dir=/usr/lib/postgresql/$POSTGRESQL_MAJOR/bin
  if [[ ! -x $dir/postgres || ! -x $dir/initdb ]]; then
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
      command -v sudo >/dev/null || { log "postgresql: need root or sudo to apt-get install postgresql-$POSTGRESQL_MAJOR"; return 1; }
      sudo=(sudo)
    fi
    local policy=/usr/sbin/policy-rc.d made_policy=
    if [[ ! -e $policy ]]; then
      printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
      "${sudo[@]}" chmod 755 "$policy"
      made_policy=1
    fi
    local rc=0
    apt_install postgresql "postgresql-$POSTGRESQL_MAJOR=$POSTGRESQL_DEB_VERSION" \
      "postgresql-client-$POSTGRESQL_MAJOR=$POSTGRESQL_DEB_VERSION" || rc=$?
    [[ -n $made_policy ]] && "${sudo[@]}" rm -f "$policy"
    [[ $rc -eq 0 ]] || return "$rc"
    [[ -x $dir/postgres ]] || { log "postgresql: $dir/postgres still missing after apt-get install"; return 1; }
    getent passwd postgres >/dev/null || { log "postgresql: the package created no 'postgres' user"; return 1; }
    log "postgresql: $("$dir/postgres" --version)"
  fi
  link "$dir/postgres"
  link "$dir/initdb"
}

want=("$@")
[[ ${#want[@]} -gt 0 ]] || want=(temporal temporal-server kube-apiserver etcd kube-controller-manager kwok workflowcheck staticcheck helm ssh-peers chromium postgresql)
for tool in "${want[@]}"; do
  case $tool in
    temporal)
      build_once "$cache/temporal-$TEMPORAL_CLI_VERSION" temporal go_install_temporal
      link "$cache/temporal-$TEMPORAL_CLI_VERSION/temporal" ;;
    temporal-server)
      d=$cache/temporal-server-$TEMPORAL_SERVER_VERSION-$temporaltools_key
      build_once "$d" temporal-server go_build_temporal_server
      build_once "$d" temporal-sql-tool go_build_temporal_sql_tool
      link "$d/temporal-server"
      link "$d/temporal-sql-tool" ;;
    kube-apiserver)
      build_once "$cache/kube-$KUBE_VERSION-$kubetools_key" kube-apiserver go_build_apiserver
      link "$cache/kube-$KUBE_VERSION-$kubetools_key/kube-apiserver" ;;
    kube-controller-manager)
      build_once "$cache/kube-$KUBE_VERSION-$kubetools_key" kube-controller-manager go_build_controller_manager
      link "$cache/kube-$KUBE_VERSION-$kubetools_key/kube-controller-manager" ;;
    etcd)
      build_once "$cache/kube-$KUBE_VERSION-$kubetools_key" etcd go_build_etcd
      link "$cache/kube-$KUBE_VERSION-$kubetools_key/etcd" ;;
    kwok)
      build_once "$cache/kwok-$KWOK_VERSION" kwok go_install_kwok
      copy_kwok_stages "$cache/kwok-$KWOK_VERSION"
      link "$cache/kwok-$KWOK_VERSION/kwok"
      link "$cache/kwok-$KWOK_VERSION/kwok-stages.yaml" ;;
    workflowcheck)
      build_once "$cache/workflowcheck-$WORKFLOWCHECK_VERSION" workflowcheck go_install_workflowcheck
      link "$cache/workflowcheck-$WORKFLOWCHECK_VERSION/workflowcheck" ;;
    staticcheck)
      build_once "$cache/staticcheck-$STATICCHECK_VERSION" staticcheck go_install_staticcheck
      link "$cache/staticcheck-$STATICCHECK_VERSION/staticcheck" ;;
    helm)
      build_once "$cache/helm-$HELM_VERSION" helm go_install_helm
      link "$cache/helm-$HELM_VERSION/helm" ;;
    ssh-peers)
      install_ssh_peers ;;
    chromium)
      install_chromium ;;
    postgresql)
      install_postgresql ;;
    *) log "unknown tool '$tool' (known: temporal temporal-server kube-apiserver etcd kube-controller-manager kwok workflowcheck staticcheck helm ssh-peers chromium postgresql)"; exit 2 ;;
  esac
done
log "tools ready in $bin"
