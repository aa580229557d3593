#!/usr/bin/env bash
# Listeners outlive colo-node: a Go, a Python and a C++ echo server keep serving their colo names
# when the agent restarts under them (an upgrade): each reconnects, registers its name again and
# says so, and dials after the restart reach all three. Also: a Python Listener.close() from
# another thread wakes a blocked accept() and releases the name.
source "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$(dirname "$COLO_BIN")}
export BUILD PYTHONDONTWRITEBYTECODE=1
bash "$ROOT/scripts/go.sh" build "$BUILD/bin/colo-go-echo" "$ROOT/clients/go/examples/echo"
PY=/usr/bin/python3

BR=ccr$TAG
BR=${BR:0:15}
make_bridge "$BR"
CONF=$WORK/cr.conflist
write_conflist "$CONF" colo-cr "$BR" 198.18.13.0/24 closed false
start_agent
for p in a b; do make_netns "ccr$TAG-$p"; done
ON='{"colo.dev/enabled":"true"}'
for p in a b; do chain ADD "$CONF" "ctr$p" "/var/run/netns/ccr$TAG-$p" "$ON" >/dev/null; done
inpod() { local p=$1; shift; ip netns exec "ccr$TAG-$p" "$@"; }

SERVERS=()
stop_servers() { for s in "${SERVERS[@]}"; do kill -KILL "$s" 2>/dev/null || true; done; }
on_exit stop_servers
serve() {  # serve LANG COMMAND...: an echo server in pod a on colo name echo-LANG
  local lang=$1
  shift
  inpod a "$@" "echo-$lang" >"$WORK/server-$lang.log" 2>&1 &
  SERVERS+=($!)
  for _ in $(seq 1 250); do grep -q listening "$WORK/server-$lang.log" && return 0; sleep 0.02; done
  return 1
}
check "the Go server listens" serve go "$COLO_BIN/colo-go-echo" serve
check "the Python server listens" serve py "$PY" "$ROOT/clients/python/examples/echo.py" serve
check "the C++ server listens" serve cpp "$COLO_BIN/echo_server"
LANGS=(go py cpp)
dial_all() {  # dial_all WHEN: each server from pod b, over a Unix pair and a channel
  for s in "${LANGS[@]}"; do
    OUT=$(inpod b "$COLO_BIN/colo-go-echo" dial "echo-$s" "to $s $1" --count 20 2>&1)
    check "$1: dial echo-$s (a Unix pair, 20 echoes)" grep -q "echo ok: to $s $1 (x20)" <<<"$OUT"
  done
}
dial_all "before the restart"

stop_agent
sleep 0.3  # the servers see the agent go away and back off while it is down
for i in "${!SERVERS[@]}"; do check "the ${LANGS[$i]} server still runs with colo-node down" kill -0 "${SERVERS[$i]}"; done
start_agent
back() {  # back LANG N: the server of LANG said N times that it listens again
  for _ in $(seq 1 250); do
    (($(grep -c "colo-node is back; listening again" "$WORK/server-$1.log") >= $2)) && return 0
    sleep 0.02
  done
  return 1
}
for s in "${LANGS[@]}"; do check "the $s listener says it listens again" back "$s" 1; done
for i in "${!SERVERS[@]}"; do check "server ${LANGS[$i]} still running after the restart" kill -0 "${SERVERS[$i]}"; done
dial_all "after the restart"
stop_agent
start_agent
for s in "${LANGS[@]}"; do check "the $s listener listens again after a second restart" back "$s" 2; done
dial_all "after a second restart"

# Python: close() from another thread while accept() blocks.
OUT=$(inpod a timeout 20 "$PY" - <<PYEOF 2>&1
import sys, threading, time
sys.path.insert(0, "$ROOT/clients/python")
import colo
l = colo.listen("closeme")
got = []
def run():
    try:
        l.accept()
        got.append("a connection")
    except colo.Closed as e:
        got.append("Closed")
    except Exception as e:
        got.append(type(e).__name__)
t = threading.Thread(target=run, daemon=True)
t.start()
time.sleep(0.3)
l.close()
t.join(2)
print("accept:", got[0] if got else "still blocked")
colo.listen("closeme").close()
print("name free again")
PYEOF
)
check "Python: close() wakes the blocked accept with colo.Closed" grep -q "accept: Closed" <<<"$OUT"
check "Python: close() released the name" grep -q "name free again" <<<"$OUT"

finish
