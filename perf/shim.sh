#!/usr/bin/env bash
# berth-shim side by side with conmon (Debian's 2.1.6, driving runc) and a plain host pipe, in
# one run.
#
#   cargo build --release -p berth-shim -p berth-runtime --bins && sudo perf/shim.sh
#
# Measures:
#   1. memory: N idle `sleep` containers under berth-shim, then N under conmon; PSS and RSS per
#      monitor from /proc/PID/smaps_rollup (mean over all, all of them alive at once).
#   2. relay: a container writes MIB MiB of 80-byte lines to stdout (busybox cat of a file);
#      berth-shim writes the json-file log and relays to one attached reader (a Python client
#      counting the frames' payload, which must be every byte); timed from the `start` request
#      until the reader has the last byte, and the shim's CPU time (utime + stime) over the
#      same span. Anchor: the same writer on the host into a pipe (`… | cat >/dev/null`).
#   3. read-back: `berth-shim --read-log` of that log (the text `docker logs` shows), wall and
#      CPU time, against `cat` of the same files (the disk/page-cache floor).
#   4. start-up: STARTS times `berth-shim` to ready (container created and started, socket
#      listening; posix_spawn to exit of its launching process), with the shim's own
#      accounting (`state.startup`: ready_us, runtime_us) of what the runtime library took
#      inside, beside /bin/true launched the same way (any process's floor); and
#      `berth-runtime create` + `start` as processes.
# Knobs: N (default 100), MIB (default 256), STARTS (default 30); SHIM and RUNTIME override the
# binaries (default target/release/…).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
perf_need_root
perf_need_cmds runc conmon socat jq python3 /usr/bin/time
root=$(perf_repo_root)
SHIM=${SHIM:-$root/target/release/berth-shim}
RUNTIME=${RUNTIME:-$root/target/release/berth-runtime}
N=${N:-100}
MIB=${MIB:-256}
STARTS=${STARTS:-30}
for b in "$SHIM" "$RUNTIME"; do [[ -x $b ]] || perf_die "missing $b (cargo build --release -p berth-shim -p berth-runtime --bins)"; done

out=$(perf_out_dir)/shim-$(date -u +%Y%m%dT%H%M%SZ).txt
exec > >(tee "$out")
perf_machine_facts
printf 'berth-shim: %s (%s bytes)\nconmon:     %s, runc %s\n' "$SHIM" "$(stat -c %s "$SHIM")" \
	"$(conmon --version | head -1)" "$(runc --version | head -1)"

tmp=$(mktemp -d /tmp/perf-shim.XXXXXX)
# Run-time state on tmpfs, as both monitors' callers keep it (/run).
run=$(mktemp -d /run/perf-shim.XXXXXX)
shim_dirs=()
conmon_ids=()
cleanup() {
	local d id
	for d in "${shim_dirs[@]}"; do
		[[ -S $d/shim.sock ]] && ctl "$d" '{"op":"shutdown"}' >/dev/null 2>&1 || true
	done
	for id in "${conmon_ids[@]}"; do
		runc --root "$run/runc" delete -f "$id" >/dev/null 2>&1 || true
		[[ -f $tmp/conmon/$id.pid ]] && kill "$(cat "$tmp/conmon/$id.pid")" 2>/dev/null || true
	done
	rm -rf "$tmp" "$run" 2>/dev/null || true
}
trap cleanup EXIT

# ctl STATE_DIR JSON: one request on the shim's control socket, its reply on stdout.
ctl() { printf '%s\n' "$2" | socat -t 600 - "UNIX-CONNECT:$1/shim.sock"; }
now_ns() { date +%s%N; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
# smaps KEY PID: the kB figure of KEY in /proc/PID/smaps_rollup.
smaps() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$2/smaps_rollup"; }

perf_busybox_rootfs "$tmp/rootfs"
# bundle DIR ARGS_JSON: runc's default spec on the shared rootfs, no terminal.
bundle() {
	mkdir -p "$1"
	(cd "$1" && runc spec)
	jq --arg r "$tmp/rootfs" --argjson a "$2" \
		'.root.path = $r | .root.readonly = false | .process.terminal = false | .process.args = $a' \
		"$1/config.json" >"$1/config.tmp"
	mv "$1/config.tmp" "$1/config.json"
}
bundle "$tmp/idle" '["sleep","3600"]'

# shim_start NAME BUNDLE [FLAGS…]: a berth-shim with its state dir under $run; prints the dir.
shim_start() {
	local name=$1 b=$2 d=$run/shim/$1
	shift 2
	mkdir -p "$d"
	"$SHIM" --id "$name" --bundle "$b" --state-dir "$d" --runtime-root "$run/berth" \
		--log "$d/ctr.log" "$@" </dev/null >/dev/null 2>"$d/start.err" ||
		perf_die "berth-shim $name: $(cat "$d/start.err")"
	printf '%s\n' "$d"
}

echo
echo "== 1. memory: $N idle sleep containers per monitor =="
shim_pids=()
for i in $(seq "$N"); do
	d=$(shim_start "idle$i" "$tmp/idle")
	shim_dirs+=("$d")
	shim_pids+=("$(ctl "$d" '{"op":"state"}' | jq -r .shim_pid)")
done
mkdir -p "$tmp/conmon" "$tmp/exit" "$tmp/sock"
conmon_pids=()
for i in $(seq "$N"); do
	id=cm$i
	conmon --api-version 1 -c "$id" -u "$id" -n "$id" -r "$(command -v runc)" -b "$tmp/idle" \
		-p "$tmp/conmon/$id.ctr.pid" -P "$tmp/conmon/$id.pid" -l "k8s-file:$tmp/conmon/$id.log" \
		--exit-dir "$tmp/exit" --socket-dir-path "$tmp/sock" --runtime-arg "--root=$run/runc" \
		--log-level error </dev/null >/dev/null 2>&1 || perf_die "conmon $id failed"
	conmon_ids+=("$id")
	# conmon's launching process returns before runc create has finished: wait for its pid file.
	for _ in $(seq 500); do [[ -s $tmp/conmon/$id.ctr.pid ]] && break; sleep 0.01; done
	runc --root "$run/runc" start "$id"
	conmon_pids+=("$(cat "$tmp/conmon/$id.pid")")
done
sleep 1
sum() { local k=$1 t=0 p; shift; for p in "$@"; do t=$((t + $(smaps "$k" "$p"))); done; echo "$t"; }
s_pss=$(sum Pss "${shim_pids[@]}")
s_rss=$(sum Rss "${shim_pids[@]}")
c_pss=$(sum Pss "${conmon_pids[@]}")
c_rss=$(sum Rss "${conmon_pids[@]}")
printf '%-12s %10s %10s   (per monitor, mean of %d, all alive at once)\n' monitor 'PSS kB' 'RSS kB' "$N"
printf '%-12s %10s %10s\n' berth-shim "$((s_pss / N))" "$((s_rss / N))"
printf '%-12s %10s %10s\n' conmon "$((c_pss / N))" "$((c_rss / N))"
printf 'PSS conmon / berth-shim: %sx\n' "$(ratio "$c_pss" "$s_pss")"
for d in "${shim_dirs[@]}"; do ctl "$d" '{"op":"shutdown"}' >/dev/null; done
shim_dirs=()
for id in "${conmon_ids[@]}"; do runc --root "$run/runc" delete -f "$id" >/dev/null 2>&1 || true; done
for p in "${conmon_pids[@]}"; do kill "$p" 2>/dev/null || true; done
conmon_ids=()

echo
echo "== 2. relay: $MIB MiB of 80-byte lines to stdout, json-file log + one attached reader =="
# The writer is busybox cat of a 1 MiB file of 80-byte lines, MIB times: big writes, so the
# figure is the relay's and not the generator's (busybox yes writes one line per syscall).
line=0123456789012345678901234567890123456789012345678901234567890123456789012345678
for _ in $(seq 13107); do printf '%s\n' "$line"; done >"$tmp/rootfs/lines"
bytes=$((MIB * $(stat -c %s "$tmp/rootfs/lines")))
writer="i=0; while [ \$i -lt $MIB ]; do cat /lines; i=\$((i+1)); done"
bundle "$tmp/loud" "[\"sh\",\"-c\",\"$writer\"]"
# The reader: attaches, says so on a fifo, then counts the payload of every frame until the
# shim closes the stream, and prints the count. A reader that falls ATTACH_BUFFER_LIMIT behind
# is dropped by design (the log keeps every line); then the run is not a relay figure, and is
# tried again (up to 3 times) and reported.
cat >"$tmp/reader.py" <<'EOF_READER'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(b'{"op":"attach","stdout":true,"stderr":true}\n')
reply = b""
while not reply.endswith(b"\n"):
    c = s.recv(1)
    if not c:
        sys.exit("no reply to attach")
    reply += c
if b'"attached"' not in reply:
    sys.exit("attach refused: " + reply.decode())
with open(sys.argv[2], "w") as f:
    f.write("attached\n")
buf = bytearray(1 << 20)
view = memoryview(buf)
payload = need = 0
hdr = b""
while True:
    n = s.recv_into(buf)
    if n == 0:
        break
    pos = 0
    while pos < n:
        if need == 0:
            take = min(8 - len(hdr), n - pos)
            hdr += bytes(view[pos:pos + take])
            pos += take
            if len(hdr) == 8:
                need = int.from_bytes(hdr[4:8], "big")
                hdr = b""
            continue
        take = min(need, n - pos)
        need -= take
        payload += take
        pos += take
print(payload)
EOF_READER
# cpu_ms PID: user + system CPU time of PID so far, in ms.
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%d", ($14 + $15) * 1000 / hz }' "/proc/$1/stat"; }
shim_ms=
for attempt in 1 2 3; do
	d=$(shim_start "loud$attempt" "$tmp/loud" --hold)
	shim_dirs+=("$d")
	pid=$(ctl "$d" '{"op":"state"}' | jq -r .shim_pid)
	rm -f "$tmp/attached"
	mkfifo "$tmp/attached"
	python3 "$tmp/reader.py" "$d/shim.sock" "$tmp/attached" >"$tmp/got" &
	reader=$!
	read -r _ <"$tmp/attached"
	c0=$(cpu_ms "$pid")
	t0=$(now_ns)
	ctl "$d" '{"op":"start"}' >/dev/null
	ctl "$d" '{"op":"wait"}' >"$tmp/wait.json"
	wait "$reader"
	t1=$(now_ns)
	c1=$(cpu_ms "$pid")
	[[ $(jq -r .exit_code "$tmp/wait.json") == 0 ]] || perf_die "relay container: $(cat "$tmp/wait.json")"
	logged=$("$SHIM" --read-log "$d/ctr.log" | wc -c)
	[[ $logged == "$bytes" ]] || perf_die "the log holds $logged bytes of text, wanted $bytes"
	got=$(cat "$tmp/got")
	if [[ $got == "$bytes" ]]; then
		shim_ms=$(((t1 - t0) / 1000000))
		shim_cpu=$((c1 - c0))
		break
	fi
	printf 'attempt %d: the reader was dropped after %s of %s bytes (fell %s behind); the log has every line\n' \
		"$attempt" "$got" "$bytes" 'ATTACH_BUFFER_LIMIT'
	ctl "$d" '{"op":"shutdown"}' >/dev/null
	shim_dirs=()
done
[[ -n $shim_ms ]] || perf_die "the attached reader was dropped in 3 attempts: no relay figure (machine too loaded?)"
t0=$(now_ns)
(cd "$tmp/rootfs" && ./bin/busybox sh -c \
	"i=0; while [ \$i -lt $MIB ]; do ./bin/cat lines; i=\$((i+1)); done | ./bin/cat >/dev/null")
t1=$(now_ns)
pipe_ms=$(((t1 - t0) / 1000000))
mbs() { awk -v b="$bytes" -v ms="$1" 'BEGIN{ printf "%.0f", b / 1e6 / (ms / 1000) }'; }
printf '%-34s %8s ms %8s MB/s   (shim CPU %s ms: %s MB/s per CPU-second)\n' \
	'berth-shim (log + attached reader)' "$shim_ms" "$(mbs "$shim_ms")" "$shim_cpu" "$(mbs "$shim_cpu")"
printf '%-34s %8s ms %8s MB/s\n' 'host pipe (same writer | cat)' "$pipe_ms" "$(mbs "$pipe_ms")"
printf 'time berth-shim / host pipe: %sx; log file %s bytes and the reader %s bytes, every line in both\n' \
	"$(ratio "$shim_ms" "$pipe_ms")" "$(stat -c %s "$d/ctr.log")" "$got"

echo
echo "== 3. read-back of that log =="
cat "$d/ctr.log" >/dev/null # warm the page cache for both
t0=$(now_ns)
/usr/bin/time -f '%U %S' -o "$tmp/read.time" "$SHIM" --read-log "$d/ctr.log" >/dev/null
t1=$(now_ns)
read_ms=$(((t1 - t0) / 1000000))
read_cpu=$(awk '{ printf "%d", ($1 + $2) * 1000 }' "$tmp/read.time")
t0=$(now_ns)
cat "$d/ctr.log" >/dev/null
t1=$(now_ns)
cat_ms=$(((t1 - t0) / 1000000))
printf '%-34s %8s ms %8s MB/s of text   (CPU %s ms: %s MB/s per CPU-second)\n' \
	'berth-shim --read-log' "$read_ms" "$(mbs "$read_ms")" "$read_cpu" "$(mbs "$read_cpu")"
printf '%-34s %8s ms (raw json bytes, the floor)\n' 'cat' "$cat_ms"
ctl "$d" '{"op":"shutdown"}' >/dev/null
shim_dirs=()

echo
echo "== 4. start-up: $STARTS containers each =="
bundle "$tmp/short" '["sleep","3600"]'
# Launches timed by a Python driver (posix_spawn + waitpid, as berthd starts a shim), each
# beside a launch of /bin/true from the same driver: the floor of starting any process here.
# The shim's launching process exits once the shim is ready, so wall - runtime_us is all the
# shim adds to a container start, its exec and daemonizing fork included.
mkdir -p "$run/shim"
python3 - "$SHIM" "$tmp/short" "$run" "$STARTS" >"$tmp/startup.txt" <<'EOF_STARTUP'
import json, os, socket, sys, time
shim, bundle, run, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def call(d, req):
    s = socket.socket(socket.AF_UNIX)
    s.connect(d + "/shim.sock")
    s.sendall(req + b"\n")
    r = b""
    while not r.endswith(b"\n"):
        c = s.recv(65536)
        if not c:
            break
        r += c
    s.close()
    return json.loads(r)
def spawn(argv):
    null = os.open("/dev/null", os.O_RDWR)
    t0 = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, os.environ,
                         file_actions=[(os.POSIX_SPAWN_DUP2, null, k) for k in (0, 1, 2)])
    _, status = os.waitpid(pid, 0)
    t1 = time.perf_counter_ns()
    os.close(null)
    if status != 0:
        sys.exit(f"{argv[0]} exited with {status}")
    return (t1 - t0) // 1000
wall = ready = rt = floor = 0
for i in range(n):
    d = f"{run}/shim/s{i}"
    os.makedirs(d)
    wall += spawn([shim, "--id", f"s{i}", "--bundle", bundle, "--state-dir", d,
                   "--runtime-root", f"{run}/berth", "--log", d + "/ctr.log"])
    st = call(d, b'{"op":"state"}')["startup"]
    ready += st["ready_us"]
    rt += st["runtime_us"]
    call(d, b'{"op":"shutdown"}')
    floor += spawn(["/bin/true"])
print(wall, ready, rt, floor)
EOF_STARTUP
read -r wall ready rt floor <"$tmp/startup.txt"
cli=0
for i in $(seq "$STARTS"); do
	t0=$(now_ns)
	"$RUNTIME" --root "$run/cli" create --bundle "$tmp/short" "c$i" </dev/null >/dev/null 2>&1
	"$RUNTIME" --root "$run/cli" start "c$i"
	t1=$(now_ns)
	cli=$((cli + (t1 - t0) / 1000))
	"$RUNTIME" --root "$run/cli" delete --force "c$i"
done
us() { awk -v t="$1" -v n="$STARTS" 'BEGIN{ printf "%.2f", t / n / 1000 }'; }
printf '%-52s %8s ms\n' 'berth-shim launch to ready (wall, mean)' "$(us "$wall")"
printf '%-52s %8s ms\n' '  of which in the shim: main() to ready' "$(us "$ready")"
printf '%-52s %8s ms\n' '  of which the runtime library: create + start' "$(us "$rt")"
printf '%-52s %8s ms\n' 'added by the shim in-process (ready - runtime)' "$(us $((ready - rt)))"
printf '%-52s %8s ms\n' 'added by the shim incl. its exec (wall - runtime)' "$(us $((wall - rt)))"
printf '%-52s %8s ms\n' '  launching /bin/true from the same driver' "$(us "$floor")"
printf '%-52s %8s ms\n' 'berth-runtime create + start as two processes' "$(us "$cli")"
echo
echo "raw output: $out"
