#!/usr/bin/env bash
# mTLS vs plaintext over a link instead of loopback: the `tls` bench's server and client run as
# two processes in two network namespaces joined by a veth pair, each direction shaped by a
# token bucket (tc tbf; default 10 Gbit/s, a data-centre NIC). Where the sch_netem module is
# available, DELAY adds a one-way delay too (e.g. DELAY=50us: a 100 µs round trip).
# Needs root (ip netns, tc). Usage:
#   sudo benches/tls-netns.sh                    # 10gbit
#   RATE=25gbit DELAY=50us benches/tls-netns.sh
set -euo pipefail
args=("$@")
RATE=${RATE:-10gbit}
DELAY=${DELAY:-}
S=meshbench-s C=meshbench-c
cd "$(dirname "$0")/.."
bin=$(cargo bench -p benches --bench tls --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)
[ -x "$bin" ] || { echo "could not build the tls bench" >&2; exit 1; }
ca=$(mktemp -d)
srv=
cleanup() {
  [ -n "$srv" ] && kill "$srv" 2>/dev/null || true
  ip netns del $S 2>/dev/null || true
  ip netns del $C 2>/dev/null || true
  rm -rf "$ca"
}
trap cleanup EXIT
cleanup
ip netns add $S
ip netns add $C
ip link add mb-s netns $S type veth peer name mb-c netns $C
ip -n $S addr add 10.77.0.1/24 dev mb-s
ip -n $C addr add 10.77.0.2/24 dev mb-c
for ns in $S $C; do ip -n $ns link set lo up; done
ip -n $S link set mb-s up
ip -n $C link set mb-c up
for end in "$S mb-s" "$C mb-c"; do
  set -- $end
  if [ -n "$DELAY" ]; then
    tc -n "$1" qdisc add dev "$2" root netem delay "$DELAY" rate "$RATE" limit 100000
  else
    tc -n "$1" qdisc add dev "$2" root tbf rate "$RATE" burst 512kb latency 2ms
  fi
done
set --
echo "link: veth, $RATE${DELAY:+, $DELAY one way}"

MESH_TLS_BENCH_CA=$ca MESH_TLS_BENCH_SERVE=10.77.0.1 ip netns exec $S "$bin" --bench &
srv=$!
for _ in $(seq 100); do
  ip netns exec $C bash -c 'exec 3<>/dev/tcp/10.77.0.1/18443' 2>/dev/null && break
  sleep 0.1
done
MESH_TLS_BENCH_CA=$ca MESH_TLS_BENCH_REMOTE=10.77.0.1 ip netns exec $C "$bin" --bench "${args[@]}"
