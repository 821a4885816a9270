#!/usr/bin/env bash
# berth-proxy side by side with docker-proxy and a direct connection, in one run, loopback only.
#
#   cargo build -p berth-proxy --release && perf/proxy.sh
#
# Builds nothing: expects berth-proxy and berth-proxy-load in $CARGO_TARGET_DIR/release
# (target/release when unset).
# Needs iperf3, jq, docker-proxy (/usr/sbin/docker-proxy from docker.io); haproxy, if installed
# (apt-get install haproxy; HAPROXY=path to choose one), runs beside them as a reference.
# Knobs: SECS (iperf3 seconds, 10), ROUNDS (iperf3 runs per path, best kept, 2),
#        CONNS (connect/request/close count per round, 2000), CROUNDS (rounds of those per
#        path, interleaved, median kept, 3), ONE_SECS (iperf3 seconds on one core, 5),
#        IDLE (idle connections held, 1000).
#
# Besides rates it prints CPU time (utime + stime, from /proc or getrusage) per GB and per
# connection for the proxy and for the endpoints: on a shared machine that moves far less than
# the rates do, and it shows whether the endpoints or the proxy had the CPU.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${CARGO_TARGET_DIR:-$root/target}/release
BP=$bin/berth-proxy
LOAD=$bin/berth-proxy-load
DP=${DOCKER_PROXY:-/usr/sbin/docker-proxy}
HAPROXY=${HAPROXY:-$(command -v haproxy || true)}
SECS=${SECS:-10}
ROUNDS=${ROUNDS:-2}
CONNS=${CONNS:-2000}
CROUNDS=${CROUNDS:-3}
ONE_SECS=${ONE_SECS:-5}
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
ticks() { if [ -n "$1" ]; then awk '{print $14 + $15}' "/proc/$1/stat"; else echo 0; fi; }
TCK=$(getconf CLK_TCK)
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
mean() { tr ' ' '\n' | grep . | awk '{s += $1} END {printf "%.0f", s / NR}'; }

start iperf3 -s -p 15201 >/dev/null 2>&1
iperf_srv=${pids[-1]}
start "$LOAD" serve 127.0.0.1:15300 >/dev/null
echo_srv=${pids[-1]}
wait_port 15300
sleep 0.3 # iperf3 -s is up (probing its port would count as a test)

start "$DP" -proto tcp -host-ip 127.0.0.1 -host-port 18080 -container-ip 127.0.0.1 -container-port 15201 3>"$tmp/sig-dp1" 2>/dev/null
dp1=${pids[-1]}
start "$DP" -proto tcp -host-ip 127.0.0.1 -host-port 18081 -container-ip 127.0.0.1 -container-port 15300 3>"$tmp/sig-dp2" 2>/dev/null
dp2=${pids[-1]}
start "$BP" serve --control "$tmp/bp.sock" --map tcp,127.0.0.1:18090,127.0.0.1:15201 --map tcp,127.0.0.1:18091,127.0.0.1:15300 2>"$tmp/bp.log"
bp1=${pids[-1]}
wait_port 18080; wait_port 18081; wait_port 18090; wait_port 18091

# HAProxy, when installed, runs as a reference: a mature single-threaded epoll proxy (one
# thread, like berth-proxy; splice for the bulk path) shows what the kernel leaves to gain.
paths_tput=(direct:15201: docker-proxy:18080:$dp1 berth-proxy:18090:$bp1)
paths_conn=(direct:15300: docker-proxy:18081:$dp2 berth-proxy:18091:$bp1)
if [ -n "$HAPROXY" ] && [ -x "$HAPROXY" ]; then
  cat >"$tmp/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4000
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
listen iperf
    bind 127.0.0.1:18070
    option splice-auto
    server s1 127.0.0.1:15201
listen echo
    bind 127.0.0.1:18071
    server s1 127.0.0.1:15300
EOF
  start "$HAPROXY" -f "$tmp/haproxy.cfg" -db >"$tmp/haproxy.log" 2>&1
  hp=${pids[-1]}
  wait_port 18070; wait_port 18071
  paths_tput+=(haproxy:18070:$hp); paths_conn+=(haproxy:18071:$hp)
fi
names=(); for p in "${paths_tput[@]}"; do names+=("${p%%:*}"); done

iperf_once() { # port proxy-pid -> "Gbit/s proxy-ms/GB server-ms/GB client-ms/GB"
  local p0 s0 p1 s1 j
  p0=$(ticks "$2"); s0=$(ticks "$iperf_srv")
  j=$(iperf3 -c 127.0.0.1 -p "$1" -t "$SECS" -J)
  p1=$(ticks "$2"); s1=$(ticks "$iperf_srv")
  jq -r --argjson p $((p1 - p0)) --argjson s $((s1 - s0)) --argjson t "$TCK" --argjson secs "$SECS" \
    '(.end.sum_received.bytes / 1e9) as $gb
     | "\(.end.sum_received.bits_per_second / 1e9) \($p / $t * 1000 / $gb) \($s / $t * 1000 / $gb) \(.end.cpu_utilization_percent.host_total * $secs * 10 / $gb)"' <<<"$j"
}
echo "== throughput: iperf3 -c 127.0.0.1, 1 stream, ${SECS} s, best of ${ROUNDS} =="
echo "   (CPU ms per GB received: the proxy's, the iperf3 server's, the iperf3 client's)"
declare -A tput pgb sgb cgb ceiling pgbm
for r in $(seq "$ROUNDS"); do
  for path in "${paths_tput[@]}"; do
    IFS=: read -r name port ppid <<<"$path"
    read -r g pms sms cms < <(iperf_once "$port" "$ppid")
    printf '  round %s %-13s %6.2f Gbit/s   CPU ms/GB: proxy %4.0f  server %4.0f  client %4.0f\n' \
      "$r" "$name" "$g" "$pms" "$sms" "$cms"
    tput[$name]=$(awk -v a="${tput[$name]:-0}" -v b="$g" 'BEGIN{print (b > a) ? b : a}')
    pgb[$name]+="$pms "; sgb[$name]+="$sms "; cgb[$name]+="$cms "
  done
done
# The CPU ceiling: the rate the per-GB costs allow on this machine if nothing else ran — each
# single-threaded program at most one core, all of them together at most nproc cores.
ncpu=$(nproc)
for name in "${names[@]}"; do
  pm=$(mean <<<"${pgb[$name]}"); sm=$(mean <<<"${sgb[$name]}"); cm=$(mean <<<"${cgb[$name]}")
  ceiling[$name]=$(awk -v p="$pm" -v s="$sm" -v c="$cm" -v n="$ncpu" 'BEGIN{
    m = (p + s + c) / n; if (p > m) m = p; if (s > m) m = s; if (c > m) m = c; printf "%.1f", 8000 / m }')
  pgbm[$name]=$pm
  printf '  %-13s best %6.2f Gbit/s   CPU ms/GB (mean): proxy %4.0f  server %4.0f  client %4.0f   CPU ceiling %5.1f Gbit/s\n' \
    "$name" "${tput[$name]}" "$pm" "$sm" "$cm" "${ceiling[$name]}"
done
echo "  berth/direct $(ratio "${tput[berth-proxy]}" "${tput[direct]}")  berth/docker-proxy $(ratio "${tput[berth-proxy]}" "${tput[docker-proxy]}")"
echo "  proxy CPU per GB berth/docker-proxy $(ratio "${pgbm[berth-proxy]}" "${pgbm[docker-proxy]}")   CPU ceilings berth/direct $(ratio "${ceiling[berth-proxy]}" "${ceiling[direct]}")"
if [ -n "${tput[haproxy]:-}" ]; then
  echo "  haproxy/direct $(ratio "${tput[haproxy]}" "${tput[direct]}")  haproxy/docker-proxy $(ratio "${tput[haproxy]}" "${tput[docker-proxy]}")"
fi

echo "== connections: ${CONNS}x connect, 64-byte request/response, close; 1 client; ${CROUNDS} rounds interleaved, medians =="
echo "   (CPU µs per connection: the proxy's, the echo server's, the client's own from getrusage)"
declare -A rates p50s pcpu scpu ccpu rate
for r in $(seq "$CROUNDS"); do
  for path in "${paths_conn[@]}"; do
    IFS=: read -r name port ppid <<<"$path"
    p0=$(ticks "$ppid"); s0=$(ticks "$echo_srv")
    out=$("$LOAD" rate 127.0.0.1:"$port" "$CONNS" 64)
    p1=$(ticks "$ppid"); s1=$(ticks "$echo_srv")
    pc=$(awk -v d=$((p1 - p0)) -v t="$TCK" -v n="$CONNS" 'BEGIN{printf "%.1f", d / t * 1e6 / n}')
    sc=$(awk -v d=$((s1 - s0)) -v t="$TCK" -v n="$CONNS" 'BEGIN{printf "%.1f", d / t * 1e6 / n}')
    read -r _ rt _ p50 _ _ _ cc <<<"$out"
    rates[$name]+="$rt "; p50s[$name]+="$p50 "; pcpu[$name]+="$pc "; scpu[$name]+="$sc "; ccpu[$name]+="$cc "
    printf '  round %s %-13s %s   proxy %s µs   echo %s µs\n' "$r" "$name" "$out" "$pc" "$sc"
  done
done
for name in "${names[@]}"; do
  rate[$name]=$(median <<<"${rates[$name]}")
  printf '  %-13s %6s conn/s   p50 %4s µs   CPU µs/conn: proxy %5s  echo %5s  client %5s\n' "$name" "${rate[$name]}" \
    "$(median <<<"${p50s[$name]}")" "$(median <<<"${pcpu[$name]}")" "$(median <<<"${scpu[$name]}")" "$(median <<<"${ccpu[$name]}")"
done
echo "  berth/direct $(ratio "${rate[berth-proxy]}" "${rate[direct]}")  berth/docker-proxy $(ratio "${rate[berth-proxy]}" "${rate[docker-proxy]}")"
if [ -n "${rate[haproxy]:-}" ]; then
  echo "  haproxy/docker-proxy $(ratio "${rate[haproxy]}" "${rate[docker-proxy]}")  berth/haproxy $(ratio "${rate[berth-proxy]}" "${rate[haproxy]}")"
fi

# One core: every program of each path confined to CPU 0 (fresh proxies started there, so Go
# and HAProxy size themselves for it). Nothing runs in parallel, so a rate here is the inverse of
# the whole path's CPU cost — proxy, endpoints, the kernel's loopback work and the switches
# between them — without the per-process accounting (which splits the loopback softirq work
# between sender and receiver by timing) and with little of the neighbours' noise.
echo "== one core: each path's programs on CPU 0; iperf3 ${ONE_SECS} s and ${CONNS} connections, ${CROUNDS} rounds, medians =="
pin0() { taskset -apc 0 "$1" >/dev/null; }
pin0 "$iperf_srv"; pin0 "$echo_srv"
start taskset -c 0 "$DP" -proto tcp -host-ip 127.0.0.1 -host-port 18083 -container-ip 127.0.0.1 -container-port 15201 3>"$tmp/sig-dp4" 2>/dev/null
start taskset -c 0 "$DP" -proto tcp -host-ip 127.0.0.1 -host-port 18084 -container-ip 127.0.0.1 -container-port 15300 3>"$tmp/sig-dp5" 2>/dev/null
start taskset -c 0 "$BP" serve --map tcp,127.0.0.1:18098,127.0.0.1:15201 --map tcp,127.0.0.1:18099,127.0.0.1:15300 2>>"$tmp/bp.log"
one_t=(direct:15201 docker-proxy:18083 berth-proxy:18098)
one_c=(direct:15300 docker-proxy:18084 berth-proxy:18099)
wait_port 18083; wait_port 18084; wait_port 18098; wait_port 18099
if [ -n "${hp:-}" ]; then
  sed -e 's/18070/18072/; s/18071/18073/' "$tmp/haproxy.cfg" >"$tmp/haproxy1.cfg"
  start taskset -c 0 "$HAPROXY" -f "$tmp/haproxy1.cfg" -db >>"$tmp/haproxy.log" 2>&1
  wait_port 18072; wait_port 18073
  one_t+=(haproxy:18072); one_c+=(haproxy:18073)
fi
declare -A one_g one_r
for r in $(seq "$CROUNDS"); do
  for path in "${one_t[@]}"; do
    g=$(taskset -c 0 iperf3 -c 127.0.0.1 -p "${path##*:}" -t "$ONE_SECS" -J | jq '.end.sum_received.bits_per_second / 1e7 | round / 100')
    one_g[${path%%:*}]+="$g "
  done
  for path in "${one_c[@]}"; do
    out=$(taskset -c 0 "$LOAD" rate 127.0.0.1:"${path##*:}" "$CONNS" 64)
    one_r[${path%%:*}]+="$(awk '{print $2}' <<<"$out") "
  done
done
declare -A og or
for name in "${names[@]}"; do
  og[$name]=$(median <<<"${one_g[$name]}"); or[$name]=$(median <<<"${one_r[$name]}")
  printf '  %-13s %6.2f Gbit/s = %4.0f ms CPU/GB   %6s conn/s = %4.0f µs CPU/connection   (rounds: %s| %s)\n' "$name" \
    "${og[$name]}" "$(awk -v g="${og[$name]}" 'BEGIN{print 8000 / g}')" "${or[$name]}" \
    "$(awk -v r="${or[$name]}" 'BEGIN{print 1e6 / r}')" "${one_g[$name]}" "${one_r[$name]}"
done
echo "  throughput berth/direct $(ratio "${og[berth-proxy]}" "${og[direct]}")  berth/docker-proxy $(ratio "${og[berth-proxy]}" "${og[docker-proxy]}")"
echo "  connections berth/direct $(ratio "${or[berth-proxy]}" "${or[direct]}")  berth/docker-proxy $(ratio "${or[berth-proxy]}" "${or[docker-proxy]}")"
if [ -n "${og[haproxy]:-}" ]; then
  echo "  haproxy: throughput /docker-proxy $(ratio "${og[haproxy]}" "${og[docker-proxy]}"), connections /docker-proxy $(ratio "${or[haproxy]}" "${or[docker-proxy]}")"
fi
taskset -apc "0-$(($(nproc) - 1))" "$iperf_srv" >/dev/null; taskset -apc "0-$(($(nproc) - 1))" "$echo_srv" >/dev/null

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
