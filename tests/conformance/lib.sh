# shellcheck shell=bash
# Shared by tests/conformance/run and tests/conformance/control (sourced, not executed):
# preparing the testbed's flag directory and starting, probing and stopping flagpole.
#
# Everything lives under $CONFORMANCE_WORK (one directory per suite run):
#   testbed/               flagpole's working directory: flags/allFlags.json, rawflags/*.json,
#                          config.json (relative uris, as the testbed's launchpad configures flagd)
#   ports                  the ports of this run (sourced)
#   flagpole.pid           the running daemon; flagpole.log its output (appended across restarts)
#   flagd.sock, sync.sock  the unix sockets of the "socket" instance (below)
#   restarting             present while a "connection lost" restart is pending
#   restarter.pid          the background process of that restart
#   stopped                present once the suite is tearing down: no restart may start

conformance_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
conformance_python=${CONFORMANCE_PYTHON:-$conformance_dir/../../.venv/bin/python}

# Lays out the flag files the way the flagd testbed's launchpad does: every flags/*.json except
# selector-* deep-merged (file-name order, objects merge key by key, later files win) into
# flags/allFlags.json, and the selector files kept as separate sources under rawflags/.
# Args: testbed dir (source), destination dir.
testbed_prepare() {
  local src=$1 dest=$2
  mkdir -p "$dest/flags" "$dest/rawflags"
  cp "$src"/flags/*.json "$dest/rawflags/"
  "$conformance_python" - "$dest" <<'PY'
import json, pathlib, sys

dest = pathlib.Path(sys.argv[1])

def merge(into, new):
    for key, value in new.items():
        if isinstance(into.get(key), dict) and isinstance(value, dict):
            merge(into[key], value)
        else:
            into[key] = value

combined = {}
for path in sorted((dest / "rawflags").glob("*.json")):
    if not path.name.startswith("selector-"):
        merge(combined, json.loads(path.read_text(encoding="utf-8")))
(dest / "flags" / "allFlags.json").write_text(json.dumps(combined, indent=2), encoding="utf-8")

config = {
    "sources": [
        {"uri": "flags/allFlags.json", "provider": "file"},
        {"uri": "rawflags/selector-flags.json", "provider": "file"},
        {"uri": "rawflags/selector-flag-combined-metadata.json", "provider": "file"},
    ],
    "context-value": {"injectedmetadata": "set"},
}
(dest / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
PY
}

# Prints N free TCP ports.
free_ports() {
  "$conformance_python" - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
}

# The daemons of a suite run, each with its own ports and pid file (flagpole[-NAME].pid) and
# all logging into flagpole.log: "plain" (the testbed's default flagd), "ssl" (TLS with the
# certificates in $CONFORMANCE_WORK/certs, for the @customCert scenarios) and "socket" (the
# evaluation and sync services on the unix sockets below instead of TCP, for @unixsocket).
flagpole_instances="plain ssl socket"
flagpole_socket=$CONFORMANCE_WORK/flagd.sock
flagpole_sync_socket=$CONFORMANCE_WORK/sync.sock

# Starts every flagpole instance in the background from the testbed directory (the config's
# uris are relative).
flagpole_start() {
  local instance
  for instance in $flagpole_instances; do
    flagpole_start_instance "$instance"
  done
}

# Arg: instance name.
flagpole_start_instance() {
  local instance=$1 pid_file
  # shellcheck disable=SC1091
  source "$CONFORMANCE_WORK/ports"
  local args=(--port "$EVAL_PORT" --sync-port "$SYNC_PORT"
    --management-port "$MGMT_PORT" --ofrep-port "$OFREP_PORT")
  pid_file=$CONFORMANCE_WORK/flagpole.pid
  if [ "$instance" = ssl ]; then
    args=(--port "$SSL_EVAL_PORT" --sync-port "$SSL_SYNC_PORT"
      --management-port "$SSL_MGMT_PORT" --ofrep-port "$SSL_OFREP_PORT"
      --server-cert-path "$CONFORMANCE_WORK/certs/server.pem"
      --server-key-path "$CONFORMANCE_WORK/certs/server.key")
    pid_file=$CONFORMANCE_WORK/flagpole-ssl.pid
  elif [ "$instance" = socket ]; then
    args=(--socket-path "$flagpole_socket" --sync-socket-path "$flagpole_sync_socket"
      --management-port "$SOCKET_MGMT_PORT" --ofrep-port "$SOCKET_OFREP_PORT")
    pid_file=$CONFORMANCE_WORK/flagpole-socket.pid
  fi
  (
    cd "$CONFORMANCE_WORK/testbed" || exit
    exec "$FLAGPOLE_BIN" start --config config.json "${args[@]}"
  ) >>"$CONFORMANCE_WORK/flagpole.log" 2>&1 </dev/null &
  echo $! >"$pid_file"
  # Not this shell's job: `control` may kill it, and that is no news.
  disown $!
}

# Stops every instance. Arg: signal (TERM for an orderly stop, KILL for a lost connection).
# Signals all instances first, then waits for them together; a zombie (exited, not yet reaped:
# a restarted daemon is an orphan, and the container's init reaps late) counts as gone.
flagpole_stop() {
  local signal=${1:-TERM} pid pid_file pids=()
  for pid_file in "$CONFORMANCE_WORK"/flagpole{,-ssl,-socket}.pid; do
    pid=$(cat "$pid_file" 2>/dev/null) || continue
    rm -f "$pid_file"
    [ -n "$pid" ] || continue
    kill -"$signal" "$pid" 2>/dev/null || true
    pids+=("$pid")
  done
  for pid in ${pids[@]+"${pids[@]}"}; do
    for _ in $(seq 100); do
      flagpole_running "$pid" || break
      sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
  done
}

# Whether process $1 exists and has not exited.
flagpole_running() {
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  case $state in Z*) return 1 ;; esac
}

# Waits until every instance serves a flag from every source (and, once the management port
# answers HTTP, until /readyz says ready). Arg: timeout in seconds.
flagpole_await_ready() {
  # shellcheck disable=SC1091
  source "$CONFORMANCE_WORK/ports"
  "$conformance_python" "$conformance_dir/probe.py" --timeout "${1:-20}" \
    --pid-file "$CONFORMANCE_WORK/flagpole.pid" \
    --port "$EVAL_PORT" --management-port "$MGMT_PORT" \
    --config "$CONFORMANCE_WORK/testbed/config.json" \
    ${PROBE_SYNC:+--sync-port "$SYNC_PORT"} &&
  "$conformance_python" "$conformance_dir/probe.py" --timeout "${1:-20}" \
    --pid-file "$CONFORMANCE_WORK/flagpole-ssl.pid" \
    --port "$SSL_EVAL_PORT" --management-port "$SSL_MGMT_PORT" \
    --config "$CONFORMANCE_WORK/testbed/config.json" \
    --ca "$CONFORMANCE_WORK/certs/ca.pem" \
    ${PROBE_SYNC:+--sync-port "$SSL_SYNC_PORT"} &&
  "$conformance_python" "$conformance_dir/probe.py" --timeout "${1:-20}" \
    --pid-file "$CONFORMANCE_WORK/flagpole-socket.pid" \
    --socket "$flagpole_socket" --management-port "$SOCKET_MGMT_PORT" \
    --config "$CONFORMANCE_WORK/testbed/config.json" \
    ${PROBE_SYNC:+--sync-socket "$flagpole_sync_socket"}
}
