#!/usr/bin/env bash
# Runs the real Kafka clients in tests/compat/<client>/ against a real spate-broker (issue #12,
# "Real clients, in CI"). For each client (every folder with a run.sh, or those named as
# arguments): its install.sh (idempotent; apt/pip/npm/Maven/Go), then a fresh broker on a fresh
# data directory and free ports, then its run.sh with
#   KAFKA_BOOTSTRAP        the broker's Kafka listener, 127.0.0.1:PORT
#   SPATE_BROKER           the broker's native listener (for the spate tool)
#   SPATE_BIN              the spate tool (target/<profile>/spate)
#   SPATE_COMPAT_CONTROL   tests/compat/broker.sh: `bash "$SPATE_COMPAT_CONTROL" kill9|restart`
#   SPATE_COMPAT_STATE     that broker's state directory (broker.sh reads it)
# then stops the broker. A fresh broker per client keeps one client's failure from cascading.
# Prints a summary table with timings, keeps the broker log of every failed client, and exits
# non-zero if any client failed that is not listed in EXPECTED_FAIL below.
#
#   tests/compat/run-all.sh [CLIENT...]
#   COMPAT_PROFILE=release      use a release broker (default: debug, what `cargo test` built)
#   COMPAT_RUN_TIMEOUT_S=300    a client's run.sh is killed after this long (a failure)
#   COMPAT_INSTALL_TIMEOUT_S=600
#   COMPAT_BUDGET_S=1800        clients not started by then are not run (a failure): CI's run
#                               must stay well inside its limit
set -uo pipefail

compat_dir="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$compat_dir/../.." && pwd)"
cd "$repo"

# Clients that are known to fail for a feature Spate does not have yet. Each entry names the
# missing feature; a listed client that fails is reported as XFAIL and does not fail the run, one
# that passes is reported as XPASS (remove it from this list then).
declare -A EXPECTED_FAIL=(
)

profile="${COMPAT_PROFILE:-debug}"
run_timeout_s="${COMPAT_RUN_TIMEOUT_S:-300}"
install_timeout_s="${COMPAT_INSTALL_TIMEOUT_S:-600}"
budget_s="${COMPAT_BUDGET_S:-1800}"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
started_all=$SECONDS

echo "== compat: building spate-broker and spate ($profile)"
build_flags=()
[ "$profile" = release ] && build_flags+=(--release)
build_started=$SECONDS
if ! cargo build -q "${build_flags[@]}" -p spate-broker --bin spate-broker -p spate-client --bin spate; then
  echo "compat: building the broker failed" >&2
  exit 1
fi
build_s=$((SECONDS - build_started))
export SPATE_BROKER_BIN="$target_dir/$profile/spate-broker"
export SPATE_BIN="$target_dir/$profile/spate"
export SPATE_COMPAT_CONTROL="$compat_dir/broker.sh"
echo "compat: built in ${build_s}s: $SPATE_BROKER_BIN"

clients=()
if [ $# -gt 0 ]; then
  for client in "$@"; do
    client="${client%/}"
    if [ ! -f "$compat_dir/$client/run.sh" ]; then
      echo "compat: no client $client (no tests/compat/$client/run.sh)" >&2
      exit 2
    fi
    clients+=("$client")
  done
else
  for run in "$compat_dir"/*/run.sh; do
    [ -f "$run" ] && clients+=("$(basename "$(dirname "$run")")")
  done
fi
if [ ${#clients[@]} -eq 0 ]; then
  echo "compat: no client folders (tests/compat/<client>/run.sh)" >&2
  exit 1
fi

# Broker data directories under the target directory: /tmp may be tmpfs, which has no O_DIRECT.
work="$target_dir/compat-runs/run-$(date -u +%Y%m%dT%H%M%SZ)-$$"
mkdir -p "$work"

results=()   # "client|install s|run s|result|note"
failures=0
for client in "${clients[@]}"; do
  echo
  echo "== compat: $client"
  state="$work/$client"
  mkdir -p "$state"
  export SPATE_COMPAT_STATE="$state"
  note=""
  install_s=0
  run_s=0
  result=PASS

  if [ $((SECONDS - started_all)) -ge "$budget_s" ]; then
    result=FAIL
    note="not run: the ${budget_s}s budget of this run was spent"
  fi
  step_started=$SECONDS
  if [ "$result" = PASS ] && ! timeout "$install_timeout_s" bash "$compat_dir/$client/install.sh" >"$state/install.log" 2>&1; then
    result=FAIL
    note="install.sh failed (log: $state/install.log)"
    tail -30 "$state/install.log"
  fi
  install_s=$((SECONDS - step_started))

  if [ "$result" = PASS ]; then
    if ! bash "$compat_dir/broker.sh" start; then
      result=FAIL
      note="the broker did not start (log: $state/broker.log)"
    fi
  fi

  if [ "$result" = PASS ]; then
    eval "$(bash "$compat_dir/broker.sh" env | sed 's/^/export /')"
    echo "compat: $client against KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP (native $SPATE_BROKER)"
    step_started=$SECONDS
    (cd "$compat_dir/$client" && timeout "$run_timeout_s" bash ./run.sh) 2>&1 | tee "$state/run.log"
    run_status=${PIPESTATUS[0]}
    run_s=$((SECONDS - step_started))
    if [ "$run_status" = 124 ]; then
      result=FAIL
      note="run.sh timed out after ${run_timeout_s}s"
    elif [ "$run_status" != 0 ]; then
      result=FAIL
      note="run.sh exited $run_status"
    fi
    pid=$(cat "$state/pid" 2>/dev/null || echo "")
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      result=FAIL
      note="${note:+$note; }the broker died during the run"
    fi
    if ! bash "$compat_dir/broker.sh" stop; then
      result=FAIL
      note="${note:+$note; }the broker did not stop on SIGTERM"
    fi
    # The broker never panics on input, whatever a client sends.
    if grep -q "panicked" "$state/broker.log"; then
      result=FAIL
      note="${note:+$note; }the broker panicked (see its log)"
      grep -m3 -A3 "panicked" "$state/broker.log"
    fi
  fi

  if [ "$result" = FAIL ] && [ -n "${EXPECTED_FAIL[$client]:-}" ]; then
    result=XFAIL
    note="${note:+$note; }expected: ${EXPECTED_FAIL[$client]}"
  elif [ "$result" = PASS ] && [ -n "${EXPECTED_FAIL[$client]:-}" ]; then
    result=XPASS
    note="passes now: remove it from EXPECTED_FAIL in tests/compat/run-all.sh"
  fi
  if [ "$result" = FAIL ]; then
    failures=$((failures + 1))
  fi
  # Keep the logs of a client that did not pass, never the data.
  rm -rf "$state/data"
  if [ "$result" = PASS ] || [ "$result" = XPASS ]; then
    rm -rf "$state"
  else
    note="${note:+$note; }logs kept in $state"
  fi
  results+=("$client|$install_s|$run_s|$result|$note")
  unset KAFKA_BOOTSTRAP SPATE_BROKER
done

echo
echo "== compat summary (broker: $profile build, built in ${build_s}s; total $((SECONDS - started_all))s)"
printf '%-24s %9s %7s  %-6s %s\n' client install_s run_s result note
for row in "${results[@]}"; do
  IFS='|' read -r client install_s run_s result note <<<"$row"
  printf '%-24s %9s %7s  %-6s %s\n' "$client" "$install_s" "$run_s" "$result" "$note"
done
rmdir "$work" 2>/dev/null || true
passed=0
expected_failures=0
for row in "${results[@]}"; do
  case "$row" in
    *"|PASS|"* | *"|XPASS|"*) passed=$((passed + 1)) ;;
    *"|XFAIL|"*) expected_failures=$((expected_failures + 1)) ;;
  esac
done
echo "compat: $expected_failures expected failures (XFAIL: a feature is missing, named above)"
echo "compat: $passed passed, $failures failed"
[ "$failures" = 0 ]
