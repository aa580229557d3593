#!/usr/bin/env bash
# The guard's withdrawal is the pod's, on every address it has and across colo-node restarts that
# change `datapath`: a dual-stack declared pod caught over IPv4 is not spliced over IPv6 either;
# under `on` every opted-in pod is spliced again (what the guard saw is kept for /debug/pods);
# back under `auto`, the pod's next blocking read withdraws it with a log line naming the process.
# Real kernel, own cgroup and pin dir, pods as network namespaces on a bridge (dual stack).
source "$(dirname "$0")/lib.sh"
bpf_sandbox colo-it
BR=cgm$TAG
BR=${BR:0:15}
make_bridge "$BR"
CONF=$WORK/gm.conflist
write_conflist "$CONF" colo-gm "$BR" 198.18.46.0/24,2001:2:46::/64 closed false
DP=(--cgroup-path "$CG" --bpf-pin-dir "$PIN")
DECL='{"colo.dev/enabled":"true","colo.dev/splice":"true"}'
TC=$COLO_BIN/colo-tcpcheck
ip_of() { jq -r --arg f "$2" '[.ips[] | select((.address | contains(":")) == ($f == "6")) | .address][0]' "$WORK/$1.json" | cut -d/ -f1; }
veth_bytes() { ip -n "cgm$TAG-$1" -s -j link show eth0 | jq '.[0].stats64.rx.bytes + .[0].stats64.tx.bytes'; }
inserted() { metric colo_datapath_sockets_inserted_total; }
state_of() { agent_get /debug/pods | jq -r --arg n "pod-$1" '.pods[] | select(.name == $n) | .splice.state'; }
send() { ip netns exec "cgm$TAG-a" "$TC" send --to "$1" "${@:2}"; }
to_b() { if [[ $1 == 6 ]]; then echo "[$(ip_of b 6)]:7000"; else echo "$(ip_of b 4):7000"; fi; }

start_agent --datapath auto "${DP[@]}"
if [[ $(agent_get /readyz | jq -r '.checks.datapath.perPod // empty') == "" ]]; then
  echo "SKIP: this kernel is not in per-pod mode under datapath: auto (nothing for the guard to withdraw)"
  exit 77
fi
for p in a b; do
  make_netns "cgm$TAG-$p"
  chain ADD "$CONF" "gm$p" "/var/run/netns/cgm$TAG-$p" "$DECL" >"$WORK/$p.json"
done
# b serves on a dual-stack socket for the whole test (it is event-driven: never withdrawn).
ip netns exec "cgm$TAG-b" "$TC" serve --bind "[::]:7000" --conns 100000 --mode epoll --timeout-s 300 >"$WORK/serve.log" 2>&1 &
for _ in $(seq 1 100); do ip netns exec "cgm$TAG-b" ss -Hltn "sport = :7000" | grep -q . && break; sleep 0.05; done
for _ in $(seq 1 60); do ip netns exec "cgm$TAG-a" ping -6 -c1 -W1 "$(ip_of b 6)" >/dev/null 2>&1 && break; sleep 0.2; done  # IPv6 DAD

# --- caught over IPv4, withdrawn over IPv6 too ---
send "$(to_b 4)" --conns 20 --bytes 10000 --read blocking >/dev/null 2>&1 || true  # may meet the EAGAIN fault: what is checked is the guard
check "the guard withdrew pod a after its blocking reads over IPv4" test "$(state_of gma)" == unsafe
S0=$(inserted) V0=$(veth_bytes a)
check "16 MiB a -> b over IPv6 after the withdrawal, checksummed" send "$(to_b 6)" --bytes 16777216 --read poll
S1=$(inserted) V1=$(veth_bytes a)
check "a's new IPv6 connection is not spliced (sockets inserted: $((S1 - S0)))" test $((S1 - S0)) -eq 0
check "it went over a's veth ($((V1 - V0)) bytes)" test $((V1 - V0)) -ge 16777216

# --- restart under `on`: spliced again, and /debug/pods says so truthfully ---
stop_agent
start_agent --datapath on "${DP[@]}"
S0=$(inserted) V0=$(veth_bytes a)
check "on: 16 MiB a -> b over IPv4, checksummed" send "$(to_b 4)" --bytes 16777216 --read poll
S1=$(inserted) V1=$(veth_bytes a)
check "on: a's connection is spliced, as /debug/pods says ($(state_of gma), veth $((V1 - V0)) bytes)" \
  test "$(state_of gma)" == spliced -a $((S1 - S0)) -eq 2 -a $((V1 - V0)) -lt 65536
send "$(to_b 4)" --conns 5 --bytes 10000 --read blocking >/dev/null 2>&1 || true

# --- back under `auto`: the next blocking read withdraws a, and says so ---
stop_agent
L0=$(wc -l <"$WORK/agent.log")
start_agent --datapath auto "${DP[@]}"
send "$(to_b 4)" --conns 20 --bytes 10000 --read blocking >/dev/null 2>&1 || true
for _ in $(seq 1 50); do [[ $(state_of gma) == unsafe ]] && break; sleep 0.1; done
check "auto again: a's blocking read withdrew it (/debug/pods: $(state_of gma))" test "$(state_of gma)" == unsafe
check "auto again: the withdrawal is logged, naming the process" bash -c "tail -n +$((L0 + 1)) '$WORK/agent.log' | grep -q 'colo-tcpcheck.*blocking read'"
S0=$(inserted)
check "auto again: 1 MiB a -> b over IPv6, checksummed" send "$(to_b 6)" --bytes 1048576 --read poll
check "auto again: not spliced over IPv6 either" test $(($(inserted) - S0)) -eq 0
finish
