#!/usr/bin/env bash
# berth-proxy side by side with docker-proxy and a direct connection, in one run, loopback only.
#
#   cargo build -p berth-proxy --release && perf/proxy.sh
#
# Builds nothing: expects berth-proxy and berth-proxy-load in $CARGO_TARGET_DIR/release
# (target/release when unset).
# Needs iperf3, jq, docker-proxy (/usr/sbin/docker-proxy from docker.io).
# Knobs: SECS (iperf3 seconds, 10), ROUNDS (iperf3 runs per path, best kept, 2),
#        CONNS (connect/request/close count, 2000), IDLE (idle connections held, 1000).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${CARGO_TARGET_DIR:-$root/target}/release
BP=$bin/berth-proxy
LOAD=$bin/berth-proxy-load
DP=${DOCKER_PROXY:-/usr/sbin/docker-proxy}
SECS=${SECS:-10}
ROUNDS=${ROUNDS:-2}
CONNS=${CONNS:-2000}
IDLE=${IDLE:-1000}

for b in "$BP" "$LOAD" "$DP" "$(command -v iperf3)" "$(command -v jq)"; do
  [ -x "$b" ] || { echo "missing $b (build with cargo build -p berth-proxy --release; apt-get install iperf3 jq docker.io)" >&2; exit 1; }
done

mkdir -p "$root/perf/out"
out=$root/perf/out/proxy-$(date -u +%Y%m%dT%H%M%SZ).txt
exec > >(tee "$out")
echo "raw output: $out"

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # Only our own children: a bare `wait` would also wait for the tee that logs this script.
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# Ports: iperf3 server 15201, echo server 15300; docker-proxy 1808x, berth-proxy 1809x.
start() { "$@" & pids+=($!); }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

start iperf3 -s -p 15201 >/dev/null 2>&1
start "$LOAD" serve 127.0.0.1:15300 >/dev/null
wait_port 15300
sleep 0.3 # iperf3 -s is up (probing its port would count as a test)

start "$DP" -proto tcp -host-ip 127.0.0.1 -host-port 18080 -container-ip 127.0.0.1 -container-port 15201 3>"$tmp/sig-dp1" 2>/dev/null
start "$DP" -proto tcp -host-ip 127.0.0.1 -host-port 18081 -container-ip 127.0.0.1 -container-port 15300 3>"$tmp/sig-dp2" 2>/dev/null
start "$BP" serve --control "$tmp/bp.sock" --map tcp,127.0.0.1:18090,127.0.0.1:15201 --map tcp,127.0.0.1:18091,127.0.0.1:15300 2>"$tmp/bp.log"
wait_port 18080; wait_port 18081; wait_port 18090; wait_port 18091

iperf_once() { # port -> Gbit/s received
  iperf3 -c 127.0.0.1 -p "$1" -t "$SECS" -J | jq '.end.sum_received.bits_per_second / 1e9'
}
echo "== throughput: iperf3 -c 127.0.0.1, 1 stream, ${SECS} s, best of ${ROUNDS} =="
declare -A tput=([direct]=0 [docker-proxy]=0 [berth-proxy]=0)
for r in $(seq "$ROUNDS"); do
  for path in direct:15201 docker-proxy:18080 berth-proxy:18090; do
    name=${path%%:*}; port=${path##*:}
    g=$(iperf_once "$port")
    printf '  round %s %-13s %6.2f Gbit/s\n' "$r" "$name" "$g"
    tput[$name]=$(awk -v a="${tput[$name]}" -v b="$g" 'BEGIN{print (b > a) ? b : a}')
  done
done
printf '  direct %.2f, docker-proxy %.2f, berth-proxy %.2f Gbit/s\n' "${tput[direct]}" "${tput[docker-proxy]}" "${tput[berth-proxy]}"
echo "  berth/direct $(ratio "${tput[berth-proxy]}" "${tput[direct]}")  berth/docker-proxy $(ratio "${tput[berth-proxy]}" "${tput[docker-proxy]}")"

echo "== connections: ${CONNS}x connect, 64-byte request/response, close; 1 client =="
declare -A rate
for path in direct:15300 docker-proxy:18081 berth-proxy:18091; do
  name=${path%%:*}; port=${path##*:}
  out=$("$LOAD" rate 127.0.0.1:"$port" "$CONNS" 64)
  rate[$name]=$(awk '{print $2}' <<<"$out")
  printf '  %-13s %s\n' "$name" "$out"
done
echo "  berth/direct $(ratio "${rate[berth-proxy]}" "${rate[direct]}")  berth/docker-proxy $(ratio "${rate[berth-proxy]}" "${rate[docker-proxy]}")"

echo "== memory: fresh proxies, RSS idle, with ${IDLE} idle connections, after they close =="
mem() { # name pid port
  local base held after per
  sleep 0.3
  base=$(rss_kb "$2")
  coproc HOLD { "$LOAD" hold 127.0.0.1:"$3" "$IDLE" 60; }
  read -r line <&"${HOLD[0]}"
  held=$(rss_kb "$2")
  echo >&"${HOLD[1]}"; exec {HOLD[1]}>&-
  read -r _ <&"${HOLD[0]}" || true
  wait "$HOLD_PID" 2>/dev/null || true
  sleep 0.5
  after=$(rss_kb "$2")
  per=$(( (held - base) * 1024 / IDLE ))
  printf '  %-13s idle %6d kB   %s: %6d kB (%d B/connection)   after close %6d kB\n' "$1" "$base" "$line" "$held" "$per" "$after"
  eval "mem_$3=$base"
}
start "$DP" -proto tcp -host-ip 127.0.0.1 -host-port 18082 -container-ip 127.0.0.1 -container-port 15300 3>"$tmp/sig-dp3" 2>/dev/null
dp3=${pids[-1]}
start "$BP" serve --map tcp,127.0.0.1:18092,127.0.0.1:15300 2>>"$tmp/bp.log"
bp3=${pids[-1]}
wait_port 18082; wait_port 18092
mem docker-proxy "$dp3" 18082
mem berth-proxy "$bp3" 18092
echo "  berth idle / docker-proxy idle $(ratio "$mem_18092" "$mem_18082")"

echo "== 100 published ports =="
maps=()
for i in $(seq 0 99); do maps+=(--map "tcp,127.0.0.1:$((18200 + i)),127.0.0.1:15300"); done
start "$BP" serve "${maps[@]}" 2>>"$tmp/bp.log"
bp100=${pids[-1]}
dp100=()
for i in $(seq 0 99); do
  start "$DP" -proto tcp -host-ip 127.0.0.1 -host-port $((18400 + i)) -container-ip 127.0.0.1 -container-port 15300 3>"$tmp/sig-100-$i" 2>/dev/null
  dp100+=(${pids[-1]})
done
wait_port 18299; wait_port 18499
"$LOAD" rate 127.0.0.1:18250 10 64 >/dev/null && "$LOAD" rate 127.0.0.1:18450 10 64 >/dev/null
sleep 0.3
bp_rss=$(rss_kb "$bp100")
dp_rss=0
for p in "${dp100[@]}"; do dp_rss=$((dp_rss + $(rss_kb "$p"))); done
printf '  berth-proxy:  1 process,   %6d kB RSS\n' "$bp_rss"
printf '  docker-proxy: %d processes, %6d kB RSS total\n' "${#dp100[@]}" "$dp_rss"
echo "  berth/docker-proxy memory $(ratio "$bp_rss" "$dp_rss")"
echo "machine: $(nproc) cores, $(uname -r), $(date -u +%F)"
