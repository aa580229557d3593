#!/usr/bin/env bash
# Service ClusterIP traffic between two pods, side by side in one run: iperf3 single-stream
# throughput and sockperf 64-byte ping-pong latency to a Service's ClusterIP, without colo (pods
# c -> d, not opted in: kube-proxy, emulated by an iptables DNAT rule in the client pod's netns,
# sends the ClusterIP to the backend over veth and bridge) and with colo (pods a -> b, opted in
# and declaring colo.dev/splice; the Service asks for node-local traffic: colo translates the
# connect to b's address and splices the connection; the same DNAT rule is there and never hit).
# colo-node in Kubernetes mode against the fake kube-apiserver (test/fake-apiserver). Medians of
# RUNS runs, interleaved; latency endpoints pinned to CPU 0. Private cgroup, pin directory and
# netns; addresses from 198.18.0.0/15; everything removed at exit.
BUILD=$(cd "${1:-build}" && pwd)
RUNS=${COLO_BENCH_RUNS:-7}
SECS=${COLO_BENCH_SECONDS:-2}
OUT=$BUILD/bench
export COLO_BIN=$BUILD/bin
# shellcheck source=../test/integration/kube_lib.sh
source "$(dirname "$0")/../test/integration/kube_lib.sh"
mkdir -p "$OUT"
median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b == 0) print "n/a"; else printf "%.2fx", a / b}'; }

bpf_sandbox colo-bench

in_cluster_api tok-b
BR=cbs$TAG
BR=${BR:0:15}
make_bridge "$BR"
CONF=$WORK/bs.conflist
write_conflist "$CONF" colo-bs "$BR" 198.18.32.0/24 closed false
ON='{"colo.dev/enabled":"true","colo.dev/splice":"true"}'
OFF='{"colo.dev/enabled":"false"}'
for p in a b c d; do
  ann=$OFF
  [[ $p == a || $p == b ]] && ann=$ON
  jq -nc --arg id "ctr$p" --argjson a "$ann" --arg node "$NODE" \
    '{metadata:{name:"pod-\($id)",namespace:"default",uid:"uid-\($id)",annotations:$a},spec:{nodeName:$node}}' |
    { read -r body; fake POST /fake/pods "$body" >/dev/null; }
done
start_agent --mode kubernetes --service-account-dir "$WORK/sa" --log-level info --datapath on --cgroup-path "$CG" --bpf-pin-dir "$PIN"
echo "colo-node: datapath $(agent_get /readyz | jq -r .checks.datapath.state), service translation $(agent_get /readyz | jq -r .checks.serviceTranslation.state)"
in_pod() { local p=$1; shift; ip netns exec "cbs$TAG-$p" "$@"; }

declare -A IP
for p in a b c d; do
  make_netns "cbs$TAG-$p"
  ann=$OFF
  [[ $p == a || $p == b ]] && ann=$ON
  chain ADD "$CONF" "ctr$p" "/var/run/netns/cbs$TAG-$p" "$ann" >"$WORK/$p.json"
  IP[$p]=$(jq -r '.ips[0].address' "$WORK/$p.json" | cut -d/ -f1)
done

# Two Services, ports 5201 (iperf3) and 11111 (sockperf): plain -> d, colo -> b (asks for node-local traffic).
VIP_PLAIN=198.19.32.10 VIP_COLO=198.19.32.20
service() {  # NAME VIP ANNOTATIONS BACKEND
  fake POST /fake/services "$(jq -nc --arg n "$1" --arg ip "$2" --argjson a "$3" \
    '{metadata:{name:$n,namespace:"default",annotations:$a},spec:{clusterIP:$ip,ports:[{name:"iperf",protocol:"TCP",port:5201,targetPort:5201},{name:"sockperf",protocol:"TCP",port:11111,targetPort:11111}]}}')" >/dev/null
  fake POST /fake/endpointslices "$(jq -nc --arg n "$1" --arg a "${IP[$4]}" --arg node "$NODE" --arg pod "pod-ctr$4" \
    '{metadata:{name:"\($n)-1",namespace:"default",labels:{"kubernetes.io/service-name":$n}},addressType:"IPv4",
      ports:[{name:"iperf",protocol:"TCP",port:5201},{name:"sockperf",protocol:"TCP",port:11111}],
      endpoints:[{addresses:[$a],nodeName:$node,conditions:{ready:true},targetRef:{kind:"Pod",namespace:"default",name:$pod}}]}')" >/dev/null
}
service plain "$VIP_PLAIN" '{}' d
service colo "$VIP_COLO" '{"colo.dev/prefer-local":"true"}' b
# kube-proxy, emulated in the client pods: the ClusterIPs DNATed to their backends.
for p in a c; do
  in_pod "$p" ip route add 198.19.32.0/24 dev eth0
  in_pod "$p" iptables -t nat -A OUTPUT -d "$VIP_PLAIN" -p tcp -j DNAT --to-destination "${IP[d]}"
  in_pod "$p" iptables -t nat -A OUTPUT -d "$VIP_COLO" -p tcp -j DNAT --to-destination "${IP[b]}"
done
for _ in $(seq 1 200); do
  [[ $(agent_get /readyz | jq -r '.checks.serviceTranslation.services["default/colo"] // 0') == 2 ]] && break
  sleep 0.05
done
echo "colo-node translates default/colo: $(agent_get /readyz | jq -c .checks.serviceTranslation.services)"

# iperf3_run FROM TO VIP -> Gbit/s
iperf3_run() {
  in_pod "$2" timeout 30 iperf3 -s -1 -B "${IP[$2]}" -p 5201 >/dev/null 2>&1 &
  local srv=$!
  sleep 0.2
  in_pod "$1" timeout 30 iperf3 -c "$3" -p 5201 -t "$SECS" -J | jq '.end.sum_received.bits_per_second / 1e9'
  wait "$srv" || true
}
# sockperf_run FROM TO ADDRESS -> "p50 p99" one-way microseconds, both ends on CPU 0. A run that
# gives no figure (sockperf can meet the kernel's spliced-read EAGAIN, docs/datapath.md) is
# retried, at most twice, and counted.
sockperf_once() {
  in_pod "$2" taskset -c 0 timeout 30 sockperf server --tcp -i "${IP[$2]}" -p 11111 >/dev/null 2>&1 &
  local srv=$!
  sleep 0.3
  in_pod "$1" taskset -c 0 timeout 30 sockperf ping-pong --tcp -i "$3" -p 11111 -m 64 -t "$SECS" 2>&1 |
    awk '/percentile 50.000/ {p50=$NF} /percentile 99.000/ {p99=$NF} END {if (p50 != "") print p50, p99}'
  # sockperf's server restarts its accept after SIGINT and would sit out its 30 s timeout.
  pkill -TERM -f "sockperf server --tcp -i ${IP[$2]} -p 11111" 2>/dev/null || true
  wait "$srv" 2>/dev/null || true
}
sockperf_run() {
  local out
  for _ in 1 2 3; do
    out=$(sockperf_once "$@")
    [[ -n $out ]] && { echo "$out"; return 0; }
    echo "sockperf $1 -> $3 gave no figure; again" >&2
    echo x >>"$WORK/sockperf_retries"
  done
  echo "0 0"
}

T0=$(metric colo_service_translations_total) S0=$(metric colo_datapath_sockets_inserted_total)
: >"$WORK/r"
for run in $(seq 1 "$RUNS"); do
  echo "run $run/$RUNS" >&2
  echo "tput_plain $(iperf3_run c d "$VIP_PLAIN")" >>"$WORK/r"
  echo "tput_colo $(iperf3_run a b "$VIP_COLO")" >>"$WORK/r"
  read -r p50 p99 < <(sockperf_run c d "$VIP_PLAIN"); echo "lat_plain $p50 $p99" >>"$WORK/r"
  read -r p50 p99 < <(sockperf_run a b "$VIP_COLO"); echo "lat_colo $p50 $p99" >>"$WORK/r"
  # The same pods by pod IP (bench/datapath.sh's figures), for reference.
  echo "tput_podip_plain $(iperf3_run c d "${IP[d]}")" >>"$WORK/r"
  echo "tput_podip_colo $(iperf3_run a b "${IP[b]}")" >>"$WORK/r"
  read -r p50 p99 < <(sockperf_run c d "${IP[d]}"); echo "lat_podip_plain $p50 $p99" >>"$WORK/r"
  read -r p50 p99 < <(sockperf_run a b "${IP[b]}"); echo "lat_podip_colo $p50 $p99" >>"$WORK/r"
done
TRANSLATED=$(($(metric colo_service_translations_total) - ${T0:-0}))
SPLICED=$(($(metric colo_datapath_sockets_inserted_total) - ${S0:-0}))
PLAIN_DNAT=$(in_pod c iptables -t nat -L OUTPUT -v -n -x | awk -v ip="$VIP_PLAIN" '$0 ~ ip {print $1}')
COLO_DNAT=$(in_pod a iptables -t nat -L OUTPUT -v -n -x | awk -v ip="$VIP_COLO" '$0 ~ ip {print $1}')
col() { awk -v k="$1" -v c="$2" '$1 == k {print $c}' "$WORK/r" | median; }
TP=$(col tput_plain 2) TC=$(col tput_colo 2) LP=$(col lat_plain 2) LC=$(col lat_colo 2) LP99=$(col lat_plain 3) LC99=$(col lat_colo 3)
IP_TP=$(col tput_podip_plain 2) IP_TC=$(col tput_podip_colo 2) IP_LP=$(col lat_podip_plain 2) IP_LC=$(col lat_podip_colo 2)
IP_LP99=$(col lat_podip_plain 3) IP_LC99=$(col lat_podip_colo 3)

echo
echo "Service ClusterIP, pod to pod on one node, medians of $RUNS runs of ${SECS}s"
echo "(with colo: $TRANSLATED connects translated, $SPLICED sockets spliced, DNAT rule hit $COLO_DNAT times; without: DNAT hit $PLAIN_DNAT times)"
printf '%-44s %12s %10s %12s %12s %10s\n' "" "throughput" "vs plain" "p50 one-way" "p99 one-way" "vs plain"
printf '%-44s %9.2f Gb %10s %9.2f us %9.2f us %10s\n' "ClusterIP via kube-proxy DNAT, without colo" "$TP" "1.00x" "$LP" "$LP99" "1.00x"
printf '%-44s %9.2f Gb %10s %9.2f us %9.2f us %10s\n' "ClusterIP, with colo (translated, spliced)" "$TC" "$(ratio "$TC" "$TP")" "$LC" "$LC99" "$(ratio "$LC" "$LP")"
printf '%-44s %9.2f Gb %10s %9.2f us %9.2f us %10s\n' "pod IP, without colo (reference)" "$IP_TP" "$(ratio "$IP_TP" "$TP")" "$IP_LP" "$IP_LP99" "$(ratio "$IP_LP" "$LP")"
printf '%-44s %9.2f Gb %10s %9.2f us %9.2f us %10s\n' "pod IP, with colo (spliced, reference)" "$IP_TC" "$(ratio "$IP_TC" "$TP")" "$IP_LC" "$IP_LC99" "$(ratio "$IP_LC" "$LP")"
[[ -s $WORK/sockperf_retries ]] && echo "sockperf runs retried: $(wc -l <"$WORK/sockperf_retries")"
echo "targets: throughput >= 2.50x -> $(ratio "$TC" "$TP"); p50 latency <= 0.60x -> $(ratio "$LC" "$LP")"
jq -n --argjson tp "$TP" --argjson tc "$TC" --argjson lp "$LP" --argjson lc "$LC" --argjson runs "$RUNS" --argjson tr "$TRANSLATED" --argjson sp "$SPLICED" \
  --argjson itp "$IP_TP" --argjson itc "$IP_TC" --argjson ilp "$IP_LP" --argjson ilc "$IP_LC" \
  --argjson lp9 "$LP99" --argjson lc9 "$LC99" --argjson ilp9 "$IP_LP99" --argjson ilc9 "$IP_LC99" \
  '{runs: $runs, gbps: {plain: $tp, colo: $tc, podIpPlain: $itp, podIpColo: $itc}, p50us: {plain: $lp, colo: $lc, podIpPlain: $ilp, podIpColo: $ilc},
    p99us: {plain: $lp9, colo: $lc9, podIpPlain: $ilp9, podIpColo: $ilc9}, translated: $tr, spliced: $sp,
    throughputRatio: ($tc / $tp), latencyRatio: ($lc / $lp)}' >"$OUT/service.json"
