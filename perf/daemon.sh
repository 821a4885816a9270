#!/usr/bin/env bash
# berthd side by side with dockerd 20.10 + containerd 1.6 (Debian's docker.io), in one run,
# both driven by the same docker CLI 28.2.2, both with a busybox image made by `docker import`.
#
#   cargo build --release --workspace --bins && perf/daemon.sh
#
# Measures: `docker run --rm busybox true` and `docker run -d busybox sleep` (RUNS each, the
# daemons taking turns, then removed), idle daemon RSS (berthd vs dockerd + containerd),
# and `docker ps` with MANY running containers on berthd. Knobs: RUNS (default 30), MANY
# (default 500, the issue's figure).
#
# berthd runs twice: as it runs by default, keeping a container parked for the next create
# like the last one (which a loop of one command always claims), and with --no-park, where
# every create makes its container (what a create unlike the one before it costs).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
perf_need_root
perf_need_cmds hyperfine dockerd containerd jq
root=$(perf_repo_root)
BERTHD=$root/target/release/berthd
SHIM=$root/target/release/berth-shim
DOCKER=${DOCKER:-/usr/local/bin/docker}
RUNS=${RUNS:-30}
MANY=${MANY:-500}
for b in "$BERTHD" "$SHIM" "$DOCKER"; do [[ -x $b ]] || perf_die "missing $b (cargo build --release --workspace --bins)"; done

out=$(perf_out_dir)/daemon-$(date -u +%Y%m%dT%H%M%SZ).txt
exec > >(tee "$out")
perf_machine_facts
tmp=$(mktemp -d /tmp/perf-daemon.XXXXXX)
# Both daemons keep run-time state on tmpfs, as their defaults do (/run/docker, /run/berth,
# /run/containerd) where /run is a tmpfs. On this project's machines /run is on the root ext4,
# so the script mounts one for the pair of them.
run=$(mktemp -d /run/perf-daemon.XXXXXX)
[[ $(stat -f -c %T "$run") == tmpfs ]] || mount -t tmpfs -o mode=0711 tmpfs "$run"
pids=()
cleanup() {
	DOCKER_HOST=unix://$tmp/berth.sock "$DOCKER" rm -f $(DOCKER_HOST=unix://$tmp/berth.sock "$DOCKER" ps -aq 2>/dev/null) >/dev/null 2>&1 || true
	DOCKER_HOST=unix://$tmp/docker.sock "$DOCKER" rm -f $(DOCKER_HOST=unix://$tmp/docker.sock "$DOCKER" ps -aq 2>/dev/null) >/dev/null 2>&1 || true
	DOCKER_HOST=unix://$tmp/cold.sock "$DOCKER" rm -f $(DOCKER_HOST=unix://$tmp/cold.sock "$DOCKER" ps -aq 2>/dev/null) >/dev/null 2>&1 || true
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	umount -R "$tmp"/*/ 2>/dev/null || true
	grep -o " $tmp[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
	grep -o " $run[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
	rm -rf "$tmp" "$run" 2>/dev/null || true
}
trap cleanup EXIT
wait_sock() { for _ in $(seq 300); do "$DOCKER" -H "unix://$1" version >/dev/null 2>&1 && return 0; sleep 0.1; done; perf_die "$2 did not come up"; }
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.1f", a / b; else print "n/a" }'; }

perf_busybox_rootfs "$tmp/rootfs"
tar -C "$tmp/rootfs" -cf "$tmp/busybox.tar" .

containerd --root "$tmp/ctd-root" --state "$run/ctd-state" --address "$tmp/containerd.sock" >"$tmp/containerd.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [[ -S $tmp/containerd.sock ]] && break; sleep 0.1; done
dockerd --containerd "$tmp/containerd.sock" -H "unix://$tmp/docker.sock" --data-root "$tmp/docker-root" \
	--exec-root "$run/docker-exec" --pidfile "$tmp/dockerd.pid" --iptables=false --ip-masq=false \
	--bridge=none >"$tmp/dockerd.log" 2>&1 &
pids+=($!)
dockerd_pid=$!
"$BERTHD" -H "unix://$tmp/berth.sock" --data-root "$tmp/berth-root" --exec-root "$run/berth-exec" >"$tmp/berthd.log" 2>&1 &
pids+=($!)
berthd_pid=$!
"$BERTHD" -H "unix://$tmp/cold.sock" --data-root "$tmp/cold-root" --exec-root "$run/cold-exec" --no-park >"$tmp/cold.log" 2>&1 &
pids+=($!)
wait_sock "$tmp/docker.sock" dockerd
wait_sock "$tmp/berth.sock" berthd
wait_sock "$tmp/cold.sock" "berthd --no-park"
containerd_pid=$(pgrep -f "containerd --root $tmp/ctd-root" | head -1)

for d in docker berth cold; do
	DOCKER_HOST=unix://$tmp/$d.sock "$DOCKER" import "$tmp/busybox.tar" busybox:local >/dev/null
done
sleep 2
echo "== idle memory (RSS) =="
b_rss=$(rss_kb "$berthd_pid"); d_rss=$(rss_kb "$dockerd_pid"); c_rss=$(rss_kb "$containerd_pid")
printf '  berthd %d kB; dockerd %d kB + containerd %d kB\n' "$b_rss" "$d_rss" "$c_rss"
echo "  (dockerd+containerd)/berthd $(ratio $((d_rss + c_rss)) "$b_rss")"

# alternate ARGS...: RUNS timed docker CLI runs against each daemon, the daemons taking turns
# (the order rotated every round); prints the medians and the ratios. Taking turns keeps a
# slow stretch of the machine (this is a shared 2-core VM) out of the ratio: a daemon timed
# in its own block gets whatever load that block had. Each timed run follows an untimed one
# of the same command, as a run follows a run in hyperfine: the work the previous daemon's
# run left behind (dockerd's and containerd's clean-up, berthd's refills) lands there.
alternate() {
	python3 - "$DOCKER" "$tmp" "$RUNS" "$@" <<'PY'
import statistics, subprocess, sys, time
docker, tmp, runs, args = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
socks = {"berthd": f"unix://{tmp}/berth.sock", "berthd --no-park": f"unix://{tmp}/cold.sock",
         "dockerd": f"unix://{tmp}/docker.sock"}
def once(name):
    t = time.perf_counter()
    subprocess.run([docker, "-H", socks[name], *args], stdout=subprocess.DEVNULL, check=True)
    return (time.perf_counter() - t) * 1000
for name in socks:  # warm-up
    once(name); once(name)
ms = {name: [] for name in socks}
names = list(socks)
for i in range(runs):
    for name in names[i % 3:] + names[:i % 3]:
        once(name)
        ms[name].append(once(name))
med = {n: statistics.median(v) for n, v in ms.items()}
for n, v in ms.items():
    q = statistics.quantiles(v, n=4)
    ratio = f", dockerd/{n} {med['dockerd'] / med[n]:.1f}" if n != "dockerd" else ""
    print(f"  {n:17} {med[n]:6.1f} ms (quartiles {q[0]:.1f}-{q[2]:.1f}){ratio}")
PY
}

echo "== docker run --rm busybox:local true, $RUNS runs each, alternating =="
# --network none on both: berthd has no bridge yet, and dockerd runs with --bridge=none.
alternate run --rm --network none busybox:local true

echo "== docker run -d busybox:local sleep 3600, $RUNS each, alternating =="
alternate run -d --network none busybox:local sleep 3600
for d in berth cold docker; do
	"$DOCKER" -H "unix://$tmp/$d.sock" rm -f $("$DOCKER" -H "unix://$tmp/$d.sock" ps -aq) >/dev/null
done

# The CLI's own share: the same commands against a stand-in that answers every request at once.
DOCKER=$DOCKER python3 "$(dirname "$0")/cli-floor.py" "$RUNS"

echo "== docker ps with $MANY running containers on berthd =="
s=$(date +%s%N)
for _ in $(seq "$MANY"); do "$DOCKER" -H "unix://$tmp/berth.sock" run -d --network none busybox:local sleep 3600 >/dev/null; done
e=$(date +%s%N)
awk -v a="$s" -v b="$e" -v n="$MANY" 'BEGIN{printf "  started %d in %.1f s (%.1f ms each, the last ones with %d already running)\n", n, (b - a) / 1e9, (b - a) / 1e6 / n, n - 1}'
hyperfine -N -w 2 -r 10 --export-json "$tmp/ps.json" -n ps "$DOCKER -H unix://$tmp/berth.sock ps" >/dev/null
printf '  docker ps: %.1f ms (median); berthd RSS with %d containers: %d kB\n' \
	"$(jq '.results[0].median * 1000' "$tmp/ps.json")" "$MANY" "$(rss_kb "$berthd_pid")"
