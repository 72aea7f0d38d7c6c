#!/usr/bin/env bash
# Starts (or stops) the demo on loopback: a Temporal dev server with its Web
# UI, the simulated CSM control plane (real etcd, kube-apiserver,
# kube-controller-manager and kwok, seeded like a CSM system), the CSM API
# emulator (hack/csmemu: HSM, HMNFD, CRUS, FAS, BOS v2, CPS), real sshd nodes
# (hack/sshnodes) and a worker configured for all of them. Then it plays the
# runbook's story:
#   1. repopulate snapshot   of the healthy system, before the rebuild;
#   2. the "rebuild"         wipes what etcd held: BOS session templates and
#                            HMNFD subscriptions;
#   3. repopulate plan       which services lost data (bos and hmnfd), and
#                            the start line for exactly those; shown only:
#                            the demo goes on whatever it says;
#   4. repopulate start --snapshot   all nine services; the cps gates are
#                            approved for you (DEMO_AUTO_APPROVE=1, the
#                            default) or left to you (DEMO_AUTO_APPROVE=0).
# Everything keeps running until `make demo-stop` (hack/demo.sh stop), so the
# run can be explored in the Web UI and with the CLI.
#
# Environment: DEMO_TEMPORAL_PORT (default 7233), DEMO_UI_PORT (8233),
# DEMO_WORKER_HTTP_PORT (8080: the worker's /healthz and /metrics),
# DEMO_AUTO_APPROVE (1), DEMO_DIR (state and logs, default .demo; no
# whitespace: pdsh-style ssh arguments split on it).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
state=${DEMO_DIR:-.demo}
port=${DEMO_TEMPORAL_PORT:-7233}
ui=${DEMO_UI_PORT:-8233}
http=${DEMO_WORKER_HTTP_PORT:-8080}
auto=${DEMO_AUTO_APPROVE:-1}
address=127.0.0.1:$port
ui_url=http://127.0.0.1:$ui

# The simulated system: computes nid000001..16 (x1000c0s0b0n0..), the first
# four of which boot their root file system from CPS; NCNs for HMNFD.
computes=16
cps_nodes=4
cps_template=cos-2.0.30-cps
ncn_ranges=('ncn-w00[1-3]' 'ncn-s00[1-3]')

# How to stop this demo: make demo-stop, told where it lives if not .demo.
stop_cmd="make demo-stop"
[[ $state == .demo ]] || stop_cmd="DEMO_DIR=$state make demo-stop"

# Every process the demo starts.
procs=(worker sshnodes csmemu simcluster temporal)

say() { printf 'demo: %s\n' "$*"; }
fail() {
  printf 'demo: FAILED: %s\n' "$*" >&2
  if compgen -G "$state/*.pid" >/dev/null; then
    printf 'demo: what was started keeps running for a look; stop it with %s\n' "$stop_cmd" >&2
  fi
  exit 1
}

# stop [quiet]: ends every process the demo started and removes their state.
stop() {
  local quiet=${1:-} name pidfile pid
  local -A pids=()
  local groups=()
  for name in "${procs[@]}"; do
    pidfile=$state/$name.pid
    [[ -f $pidfile ]] || continue
    pid=$(cat "$pidfile")
    rm -f "$pidfile"
    kill -0 "$pid" 2>/dev/null || continue
    # Each runs in its own session (setsid): signal the whole group, so
    # children (sshd listeners, etcd, kube-apiserver) go too. All at once:
    # each may take seconds to shut down gracefully.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    pids[$name]=$pid
    groups+=("$pid")
  done
  for _ in $(seq 75); do
    for name in "${!pids[@]}"; do
      kill -0 "${pids[$name]}" 2>/dev/null && continue
      say "stopped $name (pid ${pids[$name]})"
      unset "pids[$name]"
    done
    [[ ${#pids[@]} -gt 0 ]] || break
    sleep 0.2
  done
  for name in "${!pids[@]}"; do
    kill -KILL -- "-${pids[$name]}" 2>/dev/null || true
    say "killed $name (pid ${pids[$name]}): it did not stop within 15s of SIGTERM"
  done
  # A child that outlived its parent (an sshd serving a session) goes too.
  for pid in "${groups[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  # What the processes used goes too (etcd data, sshd keys, the client
  # secret, the snapshot); the logs stay for a look.
  if [[ -d $state ]]; then
    rm -rf "$state/cluster" "$state/nodes" "$state/snapshot" "$state"/temporal.db* "$state/client-secret" \
      "$state/csmemu-ca.pem" "$state/csm-url" "$state/nodes-ready" "$state/kubeconfig-path" "$state/worker.yaml"
    if [[ -z $quiet ]] && compgen -G "$state/*.log" >/dev/null; then say "logs kept in $state/*.log"; fi
  fi
}

# background NAME CMD...: runs CMD detached in its own session, output in
# $state/NAME.log.
background() {
  local name=$1
  shift
  setsid "$@" >"$state/$name.log" 2>&1 </dev/null &
  echo $! >"$state/$name.pid"
}

alive() { kill -0 "$(cat "$state/$1.pid")" 2>/dev/null; }

# wait_file NAME FILE SECONDS: waits until process NAME has written FILE.
wait_file() {
  local name=$1 file=$2 secs=$3
  for _ in $(seq $((secs * 5))); do
    [[ -s $file ]] && return 0
    alive "$name" || fail "$name exited while starting: see $state/$name.log"
    sleep 0.2
  done
  fail "$name was not ready after ${secs}s: see $state/$name.log"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

preflight() {
  [[ $state != *[[:space:]]* ]] || fail "DEMO_DIR '$state' contains whitespace: pick another directory"
  local t missing=()
  for t in temporal etcd kube-apiserver kube-controller-manager kwok; do
    [[ -x bin/$t ]] || missing+=("bin/$t")
  done
  [[ ${#missing[@]} -eq 0 ]] || fail "${missing[*]} missing: run make tools (hack/install-tools.sh) first"
  for t in /usr/sbin/sshd ssh pdsh flock; do
    command -v "$t" >/dev/null || fail "$t missing: the demo's nodes are real sshd processes; run hack/install-tools.sh ssh-peers (apt-get install openssh-server openssh-client pdsh)"
  done
  local p
  for p in "$port" "$ui" "$http"; do
    port_free "$p" || fail "port $p on 127.0.0.1 is in use: stop what holds it (make demo-stop?) or set DEMO_TEMPORAL_PORT / DEMO_UI_PORT / DEMO_WORKER_HTTP_PORT"
  done
}

# write_worker_config ABS CSM_URL: the worker's configuration for the demo's
# system, from the generator the tests use too (internal/workerconfig). The
# emulator serves CSM 1.0's APIs (-release csm-1.0), the release with all
# nine services.
write_worker_config() {
  local abs=$1 csm_url=$2 cps_list="" i
  for ((i = 0; i < cps_nodes; i++)); do cps_list+="${cps_list:+,}x1000c0s${i}b0n0"; done
  bin/workerconfig -release csm-1.0 -csm-url "$csm_url" -ca "$abs/csmemu-ca.pem" -secret-file "$abs/client-secret" \
    -ssh-config "$abs/nodes/ssh_config" -known-hosts "$abs/nodes/known_hosts" -identity "$abs/nodes/id_ed25519" \
    -ncn-groups "$(IFS=,; echo "${ncn_ranges[*]}")" -cps-nodes "$cps_list" -cps-template "$cps_template" \
    >"$state/worker.yaml" || fail "could not write the worker configuration (hack/workerconfig)"
}

services_re='^(bos|bss|cps|crus|externaldns|fas|hmnfd|meds|reds)$'
finished_re='^(done|failed|skipped|canceled)$'

# status_text RUN: repopulate status's text, empty when it cannot be read.
status_text() { "${cli[@]}" status "$1" 2>/dev/null || true; }

# gate_lines STATUS: one "gate|service|action" line per gate listed under
# "Waiting for approval:" in repopulate status's text.
gate_lines() {
  printf '%s\n' "$1" | awk '/^Waiting for approval:/ { on = 1; next } /^$/ { on = 0 } on' |
    sed -n 's/^  \([a-z0-9-]*\) (\([a-z]*\)): \(.*\)$/\1|\2|\3/p'
}

# service_states STATUS: "service state" per service row of the table.
service_states() { printf '%s\n' "$1" | awk -v re="$services_re" '$1 ~ re { print $1, $2 }'; }

# others_running STATUS: how many services besides cps have not finished.
others_running() { service_states "$1" | awk -v re="$finished_re" '$1 != "cps" && $2 !~ re' | wc -l; }

# follow_gates RUN PID: while the run's watcher PID lives, shows each gate
# that opens. DEMO_AUTO_APPROVE=1 approves it after a pause, printing the
# command; DEMO_AUTO_APPROVE=0 prints how to approve once the other
# services have finished and returns, leaving the run waiting.
follow_gates() {
  local run=$1 pid=$2 st gate svc action
  local -A seen=()
  while kill -0 "$pid" 2>/dev/null; do
    if ! alive worker; then
      kill "$pid" 2>/dev/null || true
      fail "repopulate-worker exited during the run: see $state/worker.log"
    fi
    st=$(status_text "$run")
    while IFS='|' read -r gate svc action; do
      [[ -n $gate && -z ${seen[$gate]:-} ]] || continue
      if [[ $auto != 1 ]]; then
        # Let the other services finish first, so the instructions are the
        # last thing on the screen.
        [[ $(others_running "$st") -eq 0 ]] || continue
        seen[$gate]=1
        sleep 1
        echo
        say "gate $gate ($svc) is waiting for you: $action"
        say "approve it:  ${cli_hint[*]} approve $run $gate --note 'nodes drained'"
        say "or reject:   ${cli_hint[*]} reject $run $gate --reason 'TEXT'"
        say "then follow: ${cli_hint[*]} watch $run   (it shows the next gate, cps-reboot, with its command)"
        return 0
      fi
      seen[$gate]=1
      echo
      say "gate $gate ($svc) is waiting for a person: $action"
      if [[ $gate == cps-unmount ]]; then
        # The shutdown names a BOS template, which the bos service restores
        # from the snapshot in parallel: let it finish first.
        for _ in $(seq 60); do
          service_states "$(status_text "$run")" | grep -Eq "^bos (done|failed|skipped)$" && break
          sleep 0.5
        done
      fi
      sleep 2
      say "approving it for you (DEMO_AUTO_APPROVE=1): ${cli_hint[*]} approve $run $gate --note '$note'"
      "${cli[@]}" approve "$run" "$gate" --note "$note" | sed -u 's/^/     /' ||
        say "the approve command failed (see above and $state/worker.log); approve by hand: ${cli_hint[*]} approve $run $gate"
      echo
    done < <(gate_lines "$st")
    sleep 2
  done
}

start() {
  stop quiet
  preflight
  mkdir -p "$state"
  local abs
  abs=$(cd "$state" && pwd)
  rm -f "$state"/*.log

  say "building the binaries (log: $state/build.log)"
  { go build -o bin/repopulate ./starter && go build -o bin/repopulate-worker ./worker &&
    go build -o bin/ ./hack/simcluster ./hack/csmemu ./hack/sshnodes ./hack/workerconfig; } >"$state/build.log" 2>&1 ||
    fail "go build failed: see $state/build.log"
  cli=(bin/repopulate --address "$address" --ui-url "$ui_url")
  note="approved by the demo"
  cli_hint=(bin/repopulate)
  [[ $port == 7233 ]] || cli_hint+=(--address "$address")

  say "starting the Temporal dev server on $address (Web UI $ui_url)"
  background temporal bin/temporal server start-dev --ip 127.0.0.1 --port "$port" \
    --ui-ip 127.0.0.1 --ui-port "$ui" --db-filename "$state/temporal.db" --log-level warn

  say "starting the simulated CSM control plane (etcd, kube-apiserver, kube-controller-manager, kwok)"
  background simcluster bin/simcluster -bin bin -dir "$state/cluster" -kubeconfig-out "$state/kubeconfig-path"

  say "starting the CSM API emulator: $computes Ready computes, $cps_nodes of them on CPS, BOS session templates, a CRUS session in progress"
  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$abs/client-secret"
  chmod 600 "$abs/client-secret"
  CSMEMU_CLIENT_SECRET=$(cat "$abs/client-secret") background csmemu bin/csmemu -release csm-1.0 -nodes "$computes" -seed \
    -cps-nodes "$cps_nodes" -bos-step 1s -tls -ca-dir "$abs" -url-file "$state/csm-url"
  wait_file csmemu "$state/csm-url" 30
  local csm_url
  csm_url=$(cat "$state/csm-url")

  say "starting sshd for nid000001-nmn..nid$(printf %06d $computes)-nmn and ${ncn_ranges[*]} (log: $state/sshnodes.log)"
  background sshnodes bin/sshnodes -dir "$abs/nodes" -computes "$computes" -csm "$csm_url" \
    -csm-ca "$abs/csmemu-ca.pem" -ready-file "$state/nodes-ready" "${ncn_ranges[@]}"
  wait_file sshnodes "$state/nodes-ready" 60
  write_worker_config "$abs" "$csm_url"

  for _ in $(seq 300); do
    bin/temporal operator cluster health --address "$address" >/dev/null 2>&1 && break
    alive temporal || fail "the Temporal dev server exited: see $state/temporal.log"
    sleep 0.2
  done
  bin/temporal operator cluster health --address "$address" >/dev/null 2>&1 ||
    fail "the Temporal dev server did not answer within 60s: see $state/temporal.log"
  wait_file simcluster "$state/kubeconfig-path" 180
  local kubeconfig
  kubeconfig=$(cat "$state/kubeconfig-path")

  say "starting repopulate-worker with $state/worker.yaml (log: $state/worker.log)"
  background worker bin/repopulate-worker --address "$address" --kubeconfig "$kubeconfig" \
    --config "$state/worker.yaml" --log-format console --http-address "127.0.0.1:$http"
  for _ in $(seq 300); do
    grep -q 'worker started' "$state/worker.log" && break
    alive worker || fail "repopulate-worker exited: see $state/worker.log (its config: $state/worker.yaml)"
    sleep 0.2
  done
  grep -q 'worker started' "$state/worker.log" || fail "repopulate-worker did not start within 60s: see $state/worker.log"

  echo
  say "1. before the rebuild: repopulate snapshot --out $state/snapshot"
  "${cli[@]}" snapshot --out "$state/snapshot" --config "$state/worker.yaml" --kubeconfig "$kubeconfig" |
    sed 's/^/     /' || fail "the snapshot failed (output above; the worker config is $state/worker.yaml, the emulator's log $state/csmemu.log)"

  echo
  say "2. the etcd \"rebuild\": BOS session templates and HMNFD subscriptions are gone"
  bin/csmemu control -url-file "$state/csm-url" -ca "$abs/csmemu-ca.pem" clear-templates clear-subscriptions |
    sed 's/^/     /' || fail "could not wipe the emulator's BOS and HMNFD: see $state/csmemu.log"

  echo
  say "3. what did the rebuild lose? repopulate plan --snapshot $state/snapshot (changes nothing)"
  # Shown, not obeyed: the demo runs all nine services whatever plan says
  # (repopulate start --services auto would start only its "lost data" ones).
  local plan_code=0
  "${cli[@]}" plan --snapshot "$state/snapshot" --config "$state/worker.yaml" --kubeconfig "$kubeconfig" 2>&1 |
    sed 's/^/     /' || plan_code=$?
  [[ $plan_code -eq 0 ]] || say "   repopulate plan exited $plan_code (output above); the demo goes on with all nine services"

  local run_id
  run_id=demo-$(date -u +%Y%m%d-%H%M%S)
  echo
  say "4. the run, for all nine services: repopulate start --snapshot $state/snapshot --id $run_id"
  "${cli[@]}" start --snapshot "$state/snapshot" --id "$run_id" | sed 's/^/     /' ||
    fail "repopulate start failed (output above; worker log $state/worker.log)"
  say "   following it with repopulate watch $run_id (one line per change):"
  # watch prints plain lines, not its live table, when its output is a pipe:
  # the demo's own lines can go between them.
  # Its complaints about slow status answers (a busy machine) go to a log.
  "${cli[@]}" watch "$run_id" > >(sed -u 's/^/     /') 2>"$state/watch.log" &
  local watcher=$!
  follow_gates "$run_id" "$watcher"
  local code=0 ended=1
  if kill -0 "$watcher" 2>/dev/null && [[ $auto != 1 ]]; then
    kill "$watcher" 2>/dev/null || true
    ended=0
  fi
  wait "$watcher" 2>/dev/null || code=$?
  sleep 0.2 # the watcher's last lines go through sed

  echo
  if [[ $ended == 0 ]]; then
    code=0
    say "run $run_id waits for you at gate cps-unmount (DEMO_AUTO_APPROVE=0): approve it as shown above"
  else
    local done_count
    done_count=$(service_states "$(status_text "$run_id")" | awk '$2 == "done"' | wc -l)
    if [[ $code -eq 0 ]]; then
      say "run $run_id is done: $done_count of 9 services done"
    else
      say "run $run_id did not end done (exit $code): the report above says why; logs: $state/watch.log, $state/worker.log"
    fi
  fi
  cat <<MSG

demo: still running for you to explore:
  Web UI:      $ui_url/namespaces/default/workflows/$run_id
  worker:      http://127.0.0.1:$http/healthz  http://127.0.0.1:$http/metrics
  report:      ${cli_hint[*]} report $run_id
  status:      ${cli_hint[*]} status $run_id
  watch:       ${cli_hint[*]} watch $run_id
  approve:     ${cli_hint[*]} approve $run_id GATE --note TEXT   (gates: cps-unmount, cps-reboot; bos-templates without --snapshot)
  another run: ${cli_hint[*]} start --snapshot $state/snapshot --wait
  plan:        ${cli_hint[*]} plan --snapshot $state/snapshot --config $state/worker.yaml --kubeconfig $kubeconfig
  only lost:   ${cli_hint[*]} start --services auto --snapshot $state/snapshot --config $state/worker.yaml --kubeconfig $kubeconfig --dry-run --wait
  dry-run:     ${cli_hint[*]} start --dry-run --wait
  kubectl:     KUBECONFIG=$kubeconfig kubectl -n services get jobs,pods,etcdclusters   (kubectl is not among the tools)
  logs:        $state/*.log (worker.log, csmemu.log, sshnodes.log, simcluster.log, temporal.log)
  stop it all: $stop_cmd
MSG
  return "$code"
}

case ${1:-start} in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
