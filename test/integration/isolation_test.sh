#!/usr/bin/env bash
# No pod can stall colo-node (issue 13): one attacker pod at a time floods without reading,
# hangs 100 TCP dials on an address that never answers, holds 5000 connections, listens and never
# reads, sends JSON nested 10 000 deep, and finally drives colo-node out of descriptors; meanwhile
# another pod measures hello latency and a new pod is added through the real CNI chain.
# Every address is in 198.18.0.0/15; the dial target sits behind a veth pair in the attacker's
# own netns, so nothing leaves the machine. Figures go to stdout (docs/benchmarks.md quotes them).
source "$(dirname "$0")/lib.sh"

ATTACK="python3 $(dirname "$0")/attack.py"
# The target is hello p99 under 10 ms (docs/benchmarks.md has the figures); asserted here is an
# order of magnitude above it, because this machine's other work alone moves p99 past 10 ms, while
# the stall this test guards against (replies or dials on the loop) shows as 2 s timeouts.
P99_MS=${COLO_ATTACK_P99_MS:-$((100 * TIME_SCALE))}
BR=cis$TAG
BR=${BR:0:15}
make_bridge "$BR"
CONF=$WORK/is.conflist
write_conflist "$CONF" colo-is "$BR" 198.18.14.0/24 closed false
start_agent --log-level info
ON='{"colo.dev/enabled":"true"}'
ns() { echo "/var/run/netns/cis$TAG-$1"; }
in_pod() { local p=$1; shift; ip netns exec "cis$TAG-$p" "$@"; }
for p in v x; do
  make_netns "cis$TAG-$p"
  chain ADD "$CONF" "ctr$p" "$(ns "$p")" "$ON" >"$WORK/$p.json"
done
# The attacker's blackhole, inside its own netns: 198.18.99.0/24 goes out one end of a veth pair
# to a fixed MAC; the other end has no address and drops every SYN, so a connect never answers.
in_pod x ip link add bh0 type veth peer name bh1
in_pod x ip link set bh0 up
in_pod x ip link set bh1 up
in_pod x ip addr add 198.18.99.1/24 dev bh0
in_pod x ip neigh replace 198.18.99.2 lladdr 02:00:00:00:99:02 dev bh0 nud permanent

now_ms() { date +%s%3N; }
# add_ms NAME: a new pod through the whole chain (bridge, host-local, colo-cni); prints milliseconds.
# Its netns is made here (not in a subshell, so that cleanup knows it) by the caller: new_pod.
new_pod() { make_netns "cis$TAG-$1"; }
add_ms() {
  local t0
  t0=$(now_ms)
  chain ADD "$CONF" "ctr$1" "$(ns "$1")" "$ON" >/dev/null || { echo "ADD-FAILED"; return 0; }
  echo $(($(now_ms) - t0))
}
p99() { jq -r .p99 <<<"$1"; }
hello_ok() { [[ $(jq -r .errors <<<"$1") == 0 ]] && awk -v p="$(p99 "$1")" -v lim="$P99_MS" 'BEGIN { exit !(p < lim) }'; }
add_ok() { [[ $1 != ADD-FAILED ]] && (($1 < 2 * BASE_ADD + 300)); }
figure() { echo "FIGURE: $1: hello $(jq -c '{p50,p99,max,n,errors}' <<<"$2"), ADD ${3} ms, agent fds $(find "/proc/$AGENT_PID/fd" -mindepth 1 | wc -l), RSS $(awk '/VmRSS/ {print $2 $3}' "/proc/$AGENT_PID/status")"; }

# during NAME: runs the attack already started in the background ($ATTACKER), measures, reports.
during() {
  local name=$1 h a
  sleep 0.5
  in_pod v $ATTACK hello 3 >"$WORK/hello-$name.json" &
  local hp=$!
  sleep 0.5
  new_pod "new-$name"
  a=$(add_ms "new-$name")
  wait "$hp"
  h=$(cat "$WORK/hello-$name.json")
  figure "$name" "$h" "$a"
  check "$name: another pod's hello p99 stays under $P99_MS ms, no errors" hello_ok "$h"
  check "$name: a new pod's ADD succeeds in its usual time (${a} ms, baseline ${BASE_ADD} ms)" add_ok "$a"
}

# --- baseline ---
for i in 1 2 3; do new_pod "base$i"; done
BASE_ADD=$(for i in 1 2 3; do add_ms "base$i"; done | sort -n | sed -n 2p)

H=$(in_pod v $ATTACK hello 2)
figure baseline "$H" "$BASE_ADD"
check "baseline hello works" hello_ok "$H"

# --- 1. a pod floods requests and never reads the replies ---
in_pod x $ATTACK flood 5 >"$WORK/flood.json" &
ATTACKER=$!
during flood
wait "$ATTACKER"
check "flood: the flooder was cut off" test "$(jq -r .cut "$WORK/flood.json")" == true
check "flood: and counted" test "$(metric 'colo_wire_peers_cut_total{socket="pods",reason="slow_reader"}')" -ge 1

# --- 2. 100 dials to an address that never answers ---
in_pod x $ATTACK dials 100 198.18.99.2:9 4 >"$WORK/dials.json" &
ATTACKER=$!
during dials
OUT=$(in_pod v $ATTACK dialname "$(jq -r '.ips[0].address' "$WORK/x.json" | cut -d/ -f1):7999" 1)
check "dials: another pod's TCP dial is answered at once (refused)" grep -q '"refused": 1' <<<"$OUT"
wait "$ATTACKER"
echo "dials: $(cat "$WORK/dials.json")"
check "dials: at most 16 of the attacker's dials wait (its cap), the rest are refused resource_exhausted at once" \
  jq -e '(.codes.pending // 0) >= 1 and (.codes.pending // 0) <= 16 and (.codes.pending // 0) + (.codes.resource_exhausted // 0) == 100' "$WORK/dials.json" >/dev/null

# --- 2b. an abandoned dial: a pod dials an address that never answers and closes its socket; the
# next dial, from the same pod and from another, is answered at once (a refused port) ---
X_IP=$(jq -r '.ips[0].address' "$WORK/x.json" | cut -d/ -f1)
OUT=$(in_pod x $ATTACK abandon 198.18.99.2:9 "$X_IP:7999")
V_OUT=$(in_pod v $ATTACK dialname "$X_IP:7999" 1)
echo "FIGURE: abandoned dial: next dial from the same pod $(jq -c . <<<"$OUT"), from another pod $(jq -c . <<<"$V_OUT")"
check "abandoned dial: the same pod's next dial is answered at once" jq -e --argjson lim $((500 * TIME_SCALE)) '.next == "refused" and .ms < $lim' <<<"$OUT"
check "abandoned dial: another pod's dial is answered at once" jq -e --argjson lim $((500 * TIME_SCALE)) '.codes.refused == 1 and .max < $lim' <<<"$V_OUT"

# --- 3. 5000 connections held ---
in_pod x $ATTACK hold 5000 4 >"$WORK/hold.json" &
ATTACKER=$!
during hold
wait "$ATTACKER"
echo "hold: $(cat "$WORK/hold.json")"
check "hold: at most 64 of the attacker's connections are served" test "$(jq -r .served "$WORK/hold.json")" -le 64
check "hold: the rest are refused, counted" test "$(metric 'colo_wire_connections_rejected_total{socket="pods",reason="per_pod_cap"}')" -ge 100

# --- 4. a listener that never reads its incoming dials ---
in_pod x $ATTACK deaf deaf 6 >"$WORK/deaf.json" &
ATTACKER=$!
sleep 0.3
in_pod v $ATTACK dialname deaf 2000 >"$WORK/deafdial.json"
echo "deaf: $(cat "$WORK/deafdial.json")"
check "deaf listener: dials to it are answered, unavailable once its queue is full, never stalled" \
  bash -c "jq -e '(.codes.unavailable // 0) >= 1 and .max < $((1000 * TIME_SCALE))' '$WORK/deafdial.json' >/dev/null"
check "deaf listener: then cut off like any peer that does not read (its name released: not_found)" \
  bash -c "jq -e '(.codes.not_found // 0) > 0' '$WORK/deafdial.json' >/dev/null"
check "deaf listener: the cut is counted" test "$(metric 'colo_wire_peers_cut_total{socket="pods",reason="slow_reader"}')" -ge 2
during deaf
wait "$ATTACKER"

# --- 5. JSON nested 10 000 deep ---
OUT=$(in_pod x $ATTACK deep)
check "deep: answered bad_request, and the connection still serves" grep -q '"first": "bad_request", "second_ok": true' <<<"$OUT"

# --- a container id of 200 characters (podman keys pods by it): ADD works, colo.sock fits ---
make_netns "cis$TAG-long"
LONG_ID=$(printf 'c%.0s' $(seq 1 200))
LCONF='{"cniVersion":"1.1.0","name":"colo-long","type":"colo-cni","agentSocket":"'$WORK/run/cni/cni.sock'","failurePolicy":"closed","logFile":"","runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"colo.dev/enabled":"true"}},"prevResult":{"cniVersion":"1.1.0","ips":[{"address":"198.18.15.2/24"}]}}'
long_cni() { cni_direct "$1" "$LCONF" CNI_CONTAINERID="$LONG_ID" CNI_NETNS="$(ns long)" CNI_IFNAME=eth0 >/dev/null; }
check "long container id: ADD succeeds" long_cni ADD
LONG_SOCK=$(find "$WORK/run/pods" -maxdepth 2 -name colo.sock -path "*cccccccccccccccc-*")
check "long container id: its colo.sock is under a short hashed directory" test -S "$LONG_SOCK"
OUT=$(in_pod long env COLO_SOCKET="$LONG_SOCK" $ATTACK hello 0.1)
check "long container id: and answers hello there" test "$(jq -r .errors <<<"$OUT")" == 0
check "long container id: DEL removes it" long_cni DEL
check "long container id: and its directory" test ! -e "$LONG_SOCK"

# --- SIGTERM while a pod floods and holds connections ---
in_pod x $ATTACK hold 60 10 >/dev/null &
H1=$!
in_pod x $ATTACK flood 10 >/dev/null &
H2=$!
sleep 1
T0=$(now_ms)
stop_agent
TERM_MS=$(($(now_ms) - T0))
echo "FIGURE: SIGTERM under attack: colo-node exited in ${TERM_MS} ms"
check "SIGTERM does not wait for the attacker (${TERM_MS} ms)" test "$TERM_MS" -lt 2000
kill "$H1" "$H2" 2>/dev/null || true
wait "$H1" "$H2" 2>/dev/null || true

# --- 6. out of descriptors (EMFILE) ---
start_agent --log-level info
in_pod v $ATTACK hello 0.1 >/dev/null  # the endpoints are back
cpu() { awk '{print $14 + $15}' "/proc/$AGENT_PID/stat"; }
in_pod v $ATTACK hello 4.5 >"$WORK/hello-emfile.json" &  # connected before the attack
HP=$!
sleep 0.5
# Not one descriptor to spare (with any, the pods' descriptor budget closes connections before
# accept can fail); the limit goes back up after the attack.
NOFILE=$(prlimit --pid "$AGENT_PID" --nofile --noheadings --output SOFT,HARD | awk '{print $1 ":" $2}')
prlimit --pid "$AGENT_PID" --nofile="$(find "/proc/$AGENT_PID/fd" -mindepth 1 | wc -l):${NOFILE#*:}"  # soft only: the hard limit cannot go back up
in_pod x $ATTACK hold 400 5 >"$WORK/emfile.json" &
ATTACKER=$!
sleep 1
C0=$(cpu)
sleep 3
C1=$(cpu)
wait "$HP"
H=$(cat "$WORK/hello-emfile.json")
wait "$ATTACKER"
prlimit --pid "$AGENT_PID" --nofile="$NOFILE"
CPU_PCT=$(((C1 - C0) * 100 / $(getconf CLK_TCK) / 3))
figure emfile "$H" "-"
echo "FIGURE: EMFILE: colo-node used ${CPU_PCT}% of a CPU while out of descriptors"
check "emfile: accept errors counted" test "$(metric 'colo_wire_accept_errors_total{socket="pods",reason="emfile"}')" -ge 1
check "emfile: and logged" grep -q "dropping connections until descriptors are free" "$WORK/agent.log"
# The hellos served meanwhile count too; a spinning loop takes a whole CPU. Under a sanitizer
# (TIME_SCALE > 1) each hello costs several times more CPU: 32% was measured under ASan at -O0.
SPIN_PCT=$((TIME_SCALE > 1 ? 60 : 30))
check "emfile: the loop does not spin (${CPU_PCT}% CPU, under ${SPIN_PCT}%)" test "$CPU_PCT" -lt "$SPIN_PCT"
check "emfile: a pod connected before still gets hello, p99 under $P99_MS ms" hello_ok "$H"
sleep 1.5  # the refused connections' linger ends; descriptors come back
H=$(in_pod v $ATTACK hello 0.2)
check "emfile: after the attack new connections are served again" test "$(jq -r .errors <<<"$H")" == 0

finish
