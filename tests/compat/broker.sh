#!/usr/bin/env bash
# One spate-broker for the real-client compatibility runs: start, kill -9, restart, stop.
#
#   broker.sh start     fresh start: picks two free 127.0.0.1 ports (native, Kafka), waits until
#                       the broker logged "broker ready" and its Kafka port accepts connections
#   broker.sh restart   start again on the same data directory and the same ports (after kill9)
#   broker.sh kill9     SIGKILL, as a crash, and wait until the process is gone
#   broker.sh stop      SIGTERM, wait up to 30 s (then SIGKILL); exit 1 if it had to be killed
#   broker.sh env       print KAFKA_BOOTSTRAP=... and SPATE_BROKER=... for the current ports
#
# Environment: SPATE_COMPAT_STATE (a directory for this broker's state: data/, ports, pid,
# broker.log with every start's log appended), SPATE_BROKER_BIN (the spate-broker binary),
# SPATE_COMPAT_SHARDS (default 2, so that requests are forwarded between shards),
# SPATE_COMPAT_BROKER_ARGS (extra flags, word-split). run-all.sh sets them; a client's test
# program restarts the broker through this script (SPATE_COMPAT_CONTROL names it).
set -euo pipefail

state="${SPATE_COMPAT_STATE:?set SPATE_COMPAT_STATE to the state directory of this broker}"
ready_timeout_s=90
# A restart's port may be taken meanwhile as some socket's ephemeral port; it is freed within
# TIME_WAIT (60 s on Linux).
reclaim_timeout_s=90

log() { echo "broker.sh: $*" >&2; }

alive() { # $1: pid; a zombie (killed, not yet reaped by its new parent) counts as gone
  local status
  status=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$status" ] && [ "$status" != Z ]
}

free_ports() { # two distinct free ports, bound at once so they differ
  python3 -c '
import socket
sockets = [socket.socket() for _ in range(2)]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in sockets))
'
}

port_open() { # $1: port
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Starts the broker on the ports in $state/ports; returns 0 when ready, 2 when an address was in
# use, 1 on any other failure (the log says why).
launch() {
  local native kafka offset pid deadline
  read -r native kafka <"$state/ports"
  offset=$(stat -c %s "$state/broker.log" 2>/dev/null || echo 0)
  echo "--- start $(date -u +%FT%TZ) native=127.0.0.1:$native kafka=127.0.0.1:$kafka" >>"$state/broker.log"
  offset=$((offset + 1))
  # setsid: the broker outlives this script (a test program calls `restart` and goes on).
  # shellcheck disable=SC2086
  NO_COLOR=1 setsid "${SPATE_BROKER_BIN:?set SPATE_BROKER_BIN to the spate-broker binary}" \
    --data-dir "$state/data" \
    --listen "127.0.0.1:$native" \
    --kafka-listen "127.0.0.1:$kafka" \
    --admin-listen 127.0.0.1:0 \
    --shards "${SPATE_COMPAT_SHARDS:-2}" \
    --log-level info \
    ${SPATE_COMPAT_BROKER_ARGS:-} \
    </dev/null >>"$state/broker.log" 2>&1 &
  pid=$!
  echo "$pid" >"$state/pid"
  deadline=$((SECONDS + ready_timeout_s))
  while :; do
    if ! alive "$pid"; then
      if tail -c "+$offset" "$state/broker.log" | grep -qi "in use"; then
        return 2
      fi
      log "the broker exited during start; its log:"
      tail -c "+$offset" "$state/broker.log" | tail -40 >&2
      return 1
    fi
    if tail -c "+$offset" "$state/broker.log" | grep -q "broker ready" && port_open "$kafka"; then
      return 0
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "no readiness within ${ready_timeout_s}s (\"broker ready\" logged and the Kafka port open); its log:"
      tail -c "+$offset" "$state/broker.log" | tail -40 >&2
      kill -9 "$pid" 2>/dev/null || true
      return 1
    fi
    sleep 0.1
  done
}

start() {
  mkdir -p "$state/data"
  local attempt result
  for attempt in 1 2 3 4 5; do
    free_ports >"$state/ports"
    result=0
    launch || result=$?
    [ "$result" = 2 ] || return "$result"
    log "a port was taken before the broker bound it (attempt $attempt); new ports"
  done
  return 1
}

restart() {
  [ -f "$state/ports" ] || { log "restart before start"; return 1; }
  if [ -f "$state/pid" ] && alive "$(cat "$state/pid")"; then
    log "restart: the broker (pid $(cat "$state/pid")) is still running"
    return 1
  fi
  local deadline=$((SECONDS + reclaim_timeout_s)) result
  while :; do
    result=0
    launch || result=$?
    [ "$result" = 2 ] || return "$result"
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "restart: the old ports stayed taken for ${reclaim_timeout_s}s"
      return 1
    fi
    sleep 0.25
  done
}

kill9() {
  local pid
  pid=$(cat "$state/pid")
  kill -9 "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while alive "$pid"; do
    [ "$SECONDS" -lt "$deadline" ] || { log "pid $pid survived SIGKILL for 30 s"; return 1; }
    sleep 0.05
  done
  echo "--- killed with SIGKILL $(date -u +%FT%TZ)" >>"$state/broker.log"
}

stop() {
  [ -f "$state/pid" ] || return 0
  local pid
  pid=$(cat "$state/pid")
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while alive "$pid"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "the broker did not stop within 30 s of SIGTERM; killed"
      kill -9 "$pid" 2>/dev/null || true
      return 1
    fi
    sleep 0.05
  done
}

print_env() {
  local native kafka
  read -r native kafka <"$state/ports"
  echo "KAFKA_BOOTSTRAP=127.0.0.1:$kafka"
  echo "SPATE_BROKER=127.0.0.1:$native"
}

case "${1:-}" in
  start) start ;;
  restart) restart ;;
  kill9) kill9 ;;
  stop) stop ;;
  env) print_env ;;
  *) echo "usage: broker.sh start|restart|kill9|stop|env" >&2; exit 2 ;;
esac
