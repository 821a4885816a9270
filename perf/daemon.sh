#!/usr/bin/env bash
# berthd side by side with dockerd 20.10 + containerd 1.6 (Debian's docker.io), in one run,
# both driven by the same docker CLI 28.2.2, both with a busybox image made by `docker import`.
#
#   cargo build --release --workspace --bins && perf/daemon.sh
#
# Measures: `docker run --rm busybox true` (RUNS each), `docker run -d busybox sleep` (RUNS
# each, then removed), idle daemon RSS (berthd vs dockerd + containerd), and `docker ps` with
# MANY running containers on berthd. Knobs: RUNS (default 20), MANY (default 500, the issue's
# figure).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
perf_need_root
perf_need_cmds hyperfine dockerd containerd jq
root=$(perf_repo_root)
BERTHD=$root/target/release/berthd
SHIM=$root/target/release/berth-shim
DOCKER=${DOCKER:-/usr/local/bin/docker}
RUNS=${RUNS:-20}
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
wait_sock "$tmp/docker.sock" dockerd
wait_sock "$tmp/berth.sock" berthd
containerd_pid=$(pgrep -f "containerd --root $tmp/ctd-root" | head -1)

for d in docker berth; do
	DOCKER_HOST=unix://$tmp/$d.sock "$DOCKER" import "$tmp/busybox.tar" busybox:local >/dev/null
done
sleep 2
echo "== idle memory (RSS) =="
b_rss=$(rss_kb "$berthd_pid"); d_rss=$(rss_kb "$dockerd_pid"); c_rss=$(rss_kb "$containerd_pid")
printf '  berthd %d kB; dockerd %d kB + containerd %d kB\n' "$b_rss" "$d_rss" "$c_rss"
echo "  (dockerd+containerd)/berthd $(ratio $((d_rss + c_rss)) "$b_rss")"

echo "== docker run --rm busybox:local true, $RUNS runs each =="
# --network none on both: berthd has no bridge yet, and dockerd runs with --bridge=none.
hyperfine -N -w 2 -r "$RUNS" --export-json "$tmp/run.json" \
	-n berthd "$DOCKER -H unix://$tmp/berth.sock run --rm --network none busybox:local true" \
	-n dockerd "$DOCKER -H unix://$tmp/docker.sock run --rm --network none busybox:local true" >/dev/null
b=$(jq '.results[] | select(.command=="berthd") | .median * 1000' "$tmp/run.json")
d=$(jq '.results[] | select(.command=="dockerd") | .median * 1000' "$tmp/run.json")
printf '  berthd %.1f ms, dockerd %.1f ms (medians)  dockerd/berthd %s\n' "$b" "$d" "$(ratio "$d" "$b")"

echo "== docker run -d busybox:local sleep 3600, $RUNS each =="
declare -A det
for d in berth docker; do
	s=$(date +%s%N)
	for _ in $(seq "$RUNS"); do "$DOCKER" -H "unix://$tmp/$d.sock" run -d --network none busybox:local sleep 3600 >/dev/null; done
	e=$(date +%s%N)
	det[$d]=$(awk -v a="$s" -v b="$e" -v n="$RUNS" 'BEGIN{printf "%.1f", (b - a) / 1e6 / n}')
	"$DOCKER" -H "unix://$tmp/$d.sock" rm -f $("$DOCKER" -H "unix://$tmp/$d.sock" ps -aq) >/dev/null
done
printf '  berthd %s ms, dockerd %s ms per container  dockerd/berthd %s\n' "${det[berth]}" "${det[docker]}" "$(ratio "${det[docker]}" "${det[berth]}")"

echo "== docker ps with $MANY running containers on berthd =="
s=$(date +%s%N)
for _ in $(seq "$MANY"); do "$DOCKER" -H "unix://$tmp/berth.sock" run -d --network none busybox:local sleep 3600 >/dev/null; done
e=$(date +%s%N)
awk -v a="$s" -v b="$e" -v n="$MANY" 'BEGIN{printf "  started %d in %.1f s (%.1f ms each, the last ones with %d already running)\n", n, (b - a) / 1e9, (b - a) / 1e6 / n, n - 1}'
hyperfine -N -w 2 -r 10 --export-json "$tmp/ps.json" -n ps "$DOCKER -H unix://$tmp/berth.sock ps" >/dev/null
printf '  docker ps: %.1f ms (median); berthd RSS with %d containers: %d kB\n' \
	"$(jq '.results[0].median * 1000' "$tmp/ps.json")" "$MANY" "$(rss_kb "$berthd_pid")"
