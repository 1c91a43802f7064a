#!/usr/bin/env bash
# Runs the Python interop test (interop_test.py) against a real shotline server.
#
# Usage: client/python/run_interop.sh PATH/TO/shotline [extra interop_test.py args...]
#
# Installs aioquic and msgpack with pip, starts `shotline serve` with configs/sim.yaml on a free
# port and a temporary data dir, adds a user, runs the test, and always stops the server and removes
# the temporary dir. The last line printed is "N passed, M failed"; the exit status is the test's.
# Environment: INTEROP_TIMEOUT (seconds for the test, default 300), PYTHON (default python3).
set -uo pipefail

PYTHON="${PYTHON:-python3}"
TEST_TIMEOUT="${INTEROP_TIMEOUT:-300}"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"

fail() {
  echo "run_interop: $*" >&2
  echo "0 passed, 1 failed"
  exit 1
}

[ $# -ge 1 ] || fail "usage: $0 PATH/TO/shotline [interop_test.py args...]"
BIN="$1"
shift
case "$BIN" in /*) ;; *) BIN="$PWD/$BIN" ;; esac
[ -x "$BIN" ] || fail "the shotline binary $BIN does not exist or is not executable (build it: cargo build -p shotline)"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/shotline-interop.XXXXXX")" || fail "cannot create a temporary directory"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! pip_out="$("$PYTHON" -m pip install --quiet --disable-pip-version-check aioquic msgpack 2>&1)"; then
  echo "$pip_out" >&2
  fail "pip install aioquic msgpack failed (see above)"
fi
"$PYTHON" -c 'import aioquic, msgpack' 2>/dev/null || fail "aioquic/msgpack not importable after pip install"

LOG="$TMP/server.log"
(cd "$REPO_ROOT" && exec "$BIN" serve --config configs/sim.yaml --listen 127.0.0.1:0 --data-dir "$TMP/data") \
  >"$TMP/server.out" 2>"$LOG" &
SERVER_PID=$!

ADDR=""
for _ in $(seq 1 300); do
  ADDR="$(sed -n 's/.*shotline ready: listening on \([^ ]*:[0-9][0-9]*\).*/\1/p' "$LOG" | head -n 1)"
  [ -n "$ADDR" ] && break
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    tail -n 20 "$LOG" >&2
    fail "the server exited before it was ready (log above)"
  fi
  sleep 0.1
done
if [ -z "$ADDR" ]; then
  tail -n 20 "$LOG" >&2
  fail "the server did not print 'shotline ready: listening on IP:PORT' within 30 s"
fi
echo "run_interop: server ready on $ADDR (pid $SERVER_PID)"

if ! printf 'interop-password\n' | "$BIN" user add pyuser --data-dir "$TMP/data" --password-stdin >"$TMP/useradd.out" 2>&1; then
  cat "$TMP/useradd.out" >&2
  fail "shotline user add pyuser failed (output above)"
fi
printf 'interop-password\n' >"$TMP/password"

timeout "$TEST_TIMEOUT" "$PYTHON" "$SCRIPT_DIR/interop_test.py" --server "$ADDR" --user pyuser \
  --password-file "$TMP/password" --pins "$TMP/pins.json" "$@" | tee "$TMP/test.out"
status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ]; then
  echo "run_interop: the test failed (exit $status); last server log lines:" >&2
  tail -n 15 "$LOG" >&2
fi
if [ "$status" -eq 124 ]; then
  echo "run_interop: the test was stopped after ${TEST_TIMEOUT} s" >&2
fi
summary="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$TMP/test.out" | tail -n 1)"
if [ -z "$summary" ]; then
  summary="$(grep -c '^PASS ' "$TMP/test.out") passed, $(( $(grep -c '^FAIL ' "$TMP/test.out") + 1 )) failed"
  [ "$status" -ne 0 ] || status=1
fi
# The summary line is printed last so that CI can read it (tee already printed the test's own one).
echo "$summary"
exit "$status"
