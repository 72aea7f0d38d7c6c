#!/usr/bin/env bash
# Starts (or stops) the demo on loopback: a Temporal dev server with its Web
# UI, the simulated CSM control plane (real etcd, kube-apiserver,
# kube-controller-manager and kwok, seeded like a CSM system), a worker, and a
# run of every service. Everything it starts keeps running until
# `make demo-stop`, so the run can be explored in the Web UI.
#
# Ports: DEMO_TEMPORAL_PORT (default 7233), DEMO_UI_PORT (default 8233) and
# DEMO_WORKER_HTTP_PORT (default 8080: the worker's /healthz and /metrics).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
state=.demo
port=${DEMO_TEMPORAL_PORT:-7233}
ui=${DEMO_UI_PORT:-8233}
http=${DEMO_WORKER_HTTP_PORT:-8080}
address=127.0.0.1:$port

say() { printf 'demo: %s\n' "$*"; }

stop() {
  for name in worker simcluster temporal; do
    pidfile=$state/$name.pid
    [[ -f $pidfile ]] || continue
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -KILL "$pid" 2>/dev/null || true
      say "stopped $name (pid $pid)"
    fi
    rm -f "$pidfile"
  done
}

# background NAME CMD...: runs CMD detached, output in .demo/NAME.log.
background() {
  local name=$1
  shift
  setsid "$@" >"$state/$name.log" 2>&1 </dev/null &
  echo $! >"$state/$name.pid"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
  stop
  mkdir -p "$state"
  for p in "$port" "$ui" "$http"; do
    port_free "$p" || { say "port $p on 127.0.0.1 is in use: stop what holds it or set DEMO_TEMPORAL_PORT / DEMO_UI_PORT / DEMO_WORKER_HTTP_PORT"; exit 1; }
  done
  go build -o bin/simcluster ./hack/simcluster

  say "starting the Temporal dev server on $address (Web UI http://127.0.0.1:$ui)"
  rm -f "$state/temporal.db"
  background temporal bin/temporal server start-dev --ip 127.0.0.1 --port "$port" \
    --ui-ip 127.0.0.1 --ui-port "$ui" --db-filename "$state/temporal.db" --log-level warn

  say "starting the simulated CSM control plane (etcd, kube-apiserver, kube-controller-manager, kwok)"
  rm -f "$state/kubeconfig-path"
  background simcluster bin/simcluster -bin bin -dir "$state/cluster" -kubeconfig-out "$state/kubeconfig-path"
  for _ in $(seq 600); do
    [[ -s $state/kubeconfig-path ]] && break
    kill -0 "$(cat "$state/simcluster.pid")" 2>/dev/null || { say "the control plane did not start: see $state/simcluster.log and $state/cluster/*.log"; exit 1; }
    sleep 0.2
  done
  [[ -s $state/kubeconfig-path ]] || { say "the control plane was not ready after 120s: see $state/simcluster.log"; exit 1; }
  kubeconfig=$(cat "$state/kubeconfig-path")

  say "starting repopulate-worker (log: $state/worker.log)"
  background worker bin/repopulate-worker --address "$address" --kubeconfig "$kubeconfig" --log-format console \
    --http-address "127.0.0.1:$http"

  run_id=demo-$(date -u +%Y%m%d-%H%M%S)
  say "running all services as run $run_id; the Web UI shows the run and its child workflows"
  set +e
  bin/repopulate --address "$address" --ui-url "http://127.0.0.1:$ui" start --wait --id "$run_id"
  code=$?
  set -e
  cat <<MSG

demo: still running for you to explore:
  Web UI:        http://127.0.0.1:$ui/namespaces/default/workflows/$run_id
  CLI:           bin/repopulate --address $address report $run_id
  dry-run:       bin/repopulate --address $address start --dry-run --wait
  worker:        http://127.0.0.1:$http/healthz  http://127.0.0.1:$http/metrics
  kubectl:       KUBECONFIG=$kubeconfig kubectl -n services get jobs,pods,etcdclusters
  stop it all:   make demo-stop
MSG
  exit $code
}

case ${1:-start} in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
