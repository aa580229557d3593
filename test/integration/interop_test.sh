#!/usr/bin/env bash
# The C++, Go and Python clients against each other through the real colo-node, pods as network
# namespaces: every server language with every client language over a Unix pair upgraded to a
# shared-memory channel (written by one language, read by the other) and over TCP from the
# caller's netns; identities, policy denials and unknown names seen the same way by each; the Go
# gRPC example over a Unix pair on the node and TCP elsewhere, with the same code.
source "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$(dirname "$COLO_BIN")}
export BUILD
bash "$ROOT/scripts/go.sh" build "$BUILD/bin/colo-go-echo" "$ROOT/clients/go/examples/echo"
bash "$ROOT/scripts/go.sh" build "$BUILD/bin/colo-go-grpc-echo" "$ROOT/clients/go/examples/grpc-echo"
PY=/usr/bin/python3
export PYTHONDONTWRITEBYTECODE=1

BR=cio$TAG
BR=${BR:0:15}
make_bridge "$BR"
CONF=$WORK/io.conflist
write_conflist "$CONF" colo-io "$BR" 198.18.12.0/24 closed false
# Two free 2 MiB pages for pod h's channel: raised only when missing, and put back at exit only
# when nobody else changed the reservation in the meantime (other tests share it).
HP_BEFORE=$(cat /proc/sys/vm/nr_hugepages) HP_SET=""
if (($(awk '/HugePages_Free/ {print $2}' /proc/meminfo) < 2)); then
  HP_SET=$((HP_BEFORE + 2))
  echo "$HP_SET" >/proc/sys/vm/nr_hugepages
fi
hp_restore() { [[ -n $HP_SET && $(cat /proc/sys/vm/nr_hugepages) == "$HP_SET" ]] && echo "$HP_BEFORE" >/proc/sys/vm/nr_hugepages; }
on_exit hp_restore
start_agent --hugepages-budget 8Mi
for p in a b d h; do make_netns "cio$TAG-$p"; done
ns() { echo "/var/run/netns/cio$TAG-$1"; }
ON='{"colo.dev/enabled":"true"}'
chain ADD "$CONF" ctra "$(ns a)" "$ON" >"$WORK/a.json"
chain ADD "$CONF" ctrb "$(ns b)" "$ON" >"$WORK/b.json"
POD_NS=other chain ADD "$CONF" ctrd "$(ns d)" "$ON" >/dev/null
chain ADD "$CONF" ctrh "$(ns h)" '{"colo.dev/enabled":"true","colo.dev/hugepages":"4Mi"}' >/dev/null
ip_of() { jq -r '.ips[0].address' "$WORK/$1.json" | cut -d/ -f1; }

# The same command line in every language: serve NAME [PORT] | dial TARGET [MESSAGE] [--count N].
tool() {
  case $1 in
    cpp) [[ $2 == serve ]] && echo "$COLO_BIN/echo_server" || echo "$COLO_BIN/echo_client" ;;
    go) echo "$COLO_BIN/colo-go-echo $2" ;;
    py) echo "$PY $ROOT/clients/python/examples/echo.py $2" ;;
  esac
}
SERVERS=()
stop_servers() { for s in "${SERVERS[@]}"; do kill -KILL "$s" 2>/dev/null || true; done; }
on_exit stop_servers
declare -A PORT=([cpp]=7201 [go]=7202 [py]=7203)
serve() {  # serve LANG: the echo server of LANG in pod a, on name echo-LANG and its TCP port
  local lang=$1
  # shellcheck disable=SC2046
  ip netns exec "cio$TAG-a" $(tool "$lang" serve) "echo-$lang" "${PORT[$lang]}" >"$WORK/server-$lang.log" 2>&1 &
  SERVERS+=($!)
  for _ in $(seq 1 250); do grep -q listening "$WORK/server-$lang.log" && return 0; sleep 0.02; done
  return 1
}
client() {  # client LANG POD ARGS...
  local lang=$1 pod=$2
  shift 2
  # shellcheck disable=SC2046
  ip netns exec "cio$TAG-$pod" $(tool "$lang" dial) "$@" 2>&1
}
LANGS=(cpp go py)
for s in "${LANGS[@]}"; do check "the $s server registers its name" serve "$s"; done

# --- every client with every server: a Unix pair, then a channel written and read across ---
for s in "${LANGS[@]}"; do
  for c in "${LANGS[@]}"; do
    OUT=$(client "$c" b "echo-$s" "from $c to $s" --count 500)
    check "$c client -> $s server: a Unix pair with the listener's identity" grep -q "transport unix, peer default/pod-ctra" <<<"$OUT"
    check "$c client -> $s server: upgraded to a channel in ordinary memory" grep -q "then channel (memory memfd)" <<<"$OUT"
    check "$c client -> $s server: 500 echoes through the channel" grep -q "echo ok: from $c to $s (x500)" <<<"$OUT"
  done
  check "the $s server was told who called, three times: pod b" test "$(grep -c 'accepted unix from default/pod-ctrb' "$WORK/server-$s.log")" -eq 3
  check "and mapped each channel" test "$(grep -c 'channel from default/pod-ctrb (memory memfd)' "$WORK/server-$s.log")" -eq 3
done
OUT=$(client go b echo-py "$(head -c 30000 /dev/zero | tr '\0' g)" --count 300)
check "30 KB messages, Go writing and Python reading, across many wraps of the ring" grep -q "(x300)" <<<"$OUT"
OUT=$(client py b echo-go "$(head -c 30000 /dev/zero | tr '\0' p)" --count 300)
check "and Python writing, Go reading" grep -q "(x300)" <<<"$OUT"
for other in go py; do  # libcolo's rings (with their marks) against the Go and Python rings, both ways
  OUT=$(client cpp b "echo-$other" "$(head -c 30000 /dev/zero | tr '\0' c)" --count 300)
  check "30 KB messages across wraps: C++ client and $other server" grep -q "(x300)" <<<"$OUT"
  OUT=$(client "$other" b echo-cpp "$(head -c 30000 /dev/zero | tr '\0' o)" --count 300)
  check "30 KB messages across wraps: $other client and C++ server" grep -q "(x300)" <<<"$OUT"
done

# --- channels in the dialer's hugepages, mapped by each language on both sides ---
for c in go py; do
  for s in cpp go py; do
    OUT=$(client "$c" h "echo-$s" "huge from $c" --count 100 --channel-bytes 2097152)
    check "$c client with hugepages -> $s server: the channel is in hugepages" grep -q "then channel (memory hugepages)" <<<"$OUT"
    check "$c client with hugepages -> $s server: 100 echoes" grep -q "echo ok: huge from $c (x100)" <<<"$OUT"
  done
done
for s in cpp go py; do
  check "the $s server mapped the same hugepage memory, twice" test "$(grep -c 'channel from default/pod-ctrh (memory hugepages)' "$WORK/server-$s.log")" -eq 2
done

# --- TCP from the caller's own netns, the same code ---
for s in "${LANGS[@]}"; do
  for c in go py; do
    OUT=$(client "$c" b "$(ip_of a):${PORT[$s]}" "tcp from $c")
    check "$c client dials the $s server's ip:port: TCP, and the echo works" grep -q "echo ok: tcp from $c" <<<"$OUT"
  done
  check "the $s server saw pod b's own address as the source" grep -q "accepted tcp from $(ip_of b)" "$WORK/server-$s.log"
done

# --- the same identity, denial and missing name in every language ---
check "Go: whoami" grep -q "I am default/pod-ctrb (uid uid-ctrb)" <<<"$(ip netns exec "cio$TAG-b" "$COLO_BIN/colo-go-echo" whoami)"
check "Python: whoami" grep -q "I am default/pod-ctrb (uid uid-ctrb)" <<<"$(ip netns exec "cio$TAG-b" $PY "$ROOT/clients/python/examples/echo.py" whoami)"
DENIALS=$(metric colo_broker_denials_total)
for c in "${LANGS[@]}"; do
  check "$c client in another namespace is denied" grep -q "permission denied" <<<"$(client "$c" d default/echo-go || true)"
  check "$c client: an unknown name is 'not found'" grep -q "not found" <<<"$(client "$c" b nope || true)"
  check "$c client: a refused port is 'connection refused'" grep -q "connection refused" <<<"$(client "$c" b "$(ip_of a):7999" || true)"
done
for c in "${LANGS[@]}"; do
  check "$c client: a Kubernetes name without Kubernetes mode is a clear error" \
    grep -q "Kubernetes names need colo-node in Kubernetes mode" <<<"$(client "$c" b service/default/web:80 || true)"
done
check "each denial was counted once" test "$(metric colo_broker_denials_total)" == "$((DENIALS + 3))"

# --- gRPC (Go) over colo: a Unix pair on the node, TCP elsewhere, the same code ---
ip netns exec "cio$TAG-a" "$COLO_BIN/colo-go-grpc-echo" serve greeter 7210 >"$WORK/grpc.log" 2>&1 &
SERVERS+=($!)
for _ in $(seq 1 250); do grep -q serving "$WORK/grpc.log" && break; sleep 0.02; done
OUT=$(ip netns exec "cio$TAG-b" "$COLO_BIN/colo-go-grpc-echo" call greeter "hi" 2>&1 || true)
check "gRPC by colo name: a Unix pair, and the server knows the caller" grep -q "reply: hi (from default/pod-ctrb over unix) via unix to default/pod-ctra" <<<"$OUT"
OUT=$(ip netns exec "cio$TAG-b" "$COLO_BIN/colo-go-grpc-echo" call "$(ip_of a):7210" "hi" 2>&1 || true)
check "gRPC by ip:port: TCP from the caller's netns, the same client code" grep -q "reply: hi (from $(ip_of b) over tcp) via tcp" <<<"$OUT"
OUT=$(ip netns exec "cio$TAG-d" "$COLO_BIN/colo-go-grpc-echo" call default/greeter "hi" 2>&1 || true)
check "gRPC from another namespace: the dial is denied, and errors.Is says so" grep -q "denied by policy" <<<"$OUT"

finish
