#!/usr/bin/env bash
# `exec` latency, side by side in one run: berth-runtime, runc and crun each keep one busybox
# container running (`sleep`, created and started), then `RUNTIME exec ID /bin/true` is timed
# with hyperfine (-N, WARMUP warm-ups, RUNS runs each, all in one invocation), beside the kernel
# floor of entering the same container without a runtime (`nsenter -t PID -a /bin/true` into
# berth's container: its namespaces and root, no cgroup move, no capabilities dropped).
#
#   sudo perf/runtime-exec.sh       # needs root; does not build anything
#
# Prints medians (and mean ± stddev) per exec and the ratios runc/berth and crun/berth. All
# runtimes share one bundle (the config of runtime.sh, args ["sleep", "3600"]), each has its own
# --root; the containers and the state are removed at exit, also on error or Ctrl-C. crun's
# hybrid-cgroup workaround is runtime.sh's (see perf/README.md). Raw results go to perf/out/.
#
# Environment: BERTH_RUNTIME (default target/release/berth-runtime), RUNS (100), WARMUP (5).

set -euo pipefail

# shellcheck source=perf/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=${RUNS:-100}
WARMUP=${WARMUP:-5}

perf_need_root
perf_need_cmds hyperfine runc python3 jq nsenter
BERTH=$(perf_berth_runtime)

WORK=$(mktemp -d /tmp/berth-perf-exec.XXXXXX)
BUNDLE=$WORK/bundle
OUT=$(perf_out_dir)
STAMP=$(date -u +%Y%m%d-%H%M%S)
# One container id per runtime: a config without cgroupsPath puts the container in /ID in
# every hierarchy, and two runtimes must not share (and then kill through) one cgroup.
declare -A ID=([berth-runtime]=exec-berth [runc]=exec-runc [crun]=exec-crun)

perf_oci_runtimes "$BERTH" "$WORK/state"

cleanup() {
	local name
	for name in berth-runtime runc crun; do
		[[ -d $WORK/state/$name ]] || continue
		rt "$name" delete --force "${ID[$name]}" >/dev/null 2>&1 || true
		rt "$name" delete --force "probe-$name" >/dev/null 2>&1 || true
	done
	perf_oci_teardown "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# up NAME CID: create and start a container (its stdio on /dev/null), wait until it runs.
up() {
	local name=$1 cid=$2 i
	rt "$name" create --bundle "$BUNDLE" "$cid" </dev/null >/dev/null 2>"$WORK/$name.err" || return 1
	rt "$name" start "$cid" </dev/null >/dev/null 2>"$WORK/$name.err" || return 1
	for ((i = 0; i < 200; i++)); do
		[[ $(rt "$name" state "$cid" 2>/dev/null | jq -r .status) == running ]] && return 0
		sleep 0.01
	done
	echo "container $cid not running" >"$WORK/$name.err"
	return 1
}

# probe NAME: can NAME start the container and exec in it? (crun's hybrid-cgroup check)
probe() {
	local rc=0
	{ up "$1" "probe-$1" && rt "$1" exec "probe-$1" /bin/true </dev/null; } || rc=$?
	rt "$1" delete --force "probe-$1" >/dev/null 2>&1 || true
	[[ $rc == 0 ]] || cat "$WORK/$1.err" >&2
	return "$rc"
}

# ---------------------------------------------------------------------------------------------
perf_runtime_bundle "$BUNDLE" sleep 3600

perf_crun_usable probe crun
CRUN_NOTE=$PERF_CRUN_NOTE
[[ -z $CRUN_NOTE ]] || ORDER=(berth-runtime runc)

for name in "${ORDER[@]}"; do
	up "$name" "${ID[$name]}" || perf_die "$name cannot start the container: $(cat "$WORK/$name.err")"
	rt "$name" exec "${ID[$name]}" /bin/true </dev/null ||
		perf_die "$name cannot exec /bin/true in its container"
done
BERTH_PID=$(rt berth-runtime state "${ID[berth-runtime]}" | jq -r .pid)

echo "== OCI runtime exec: RUNTIME exec ID /bin/true into a running busybox container"
perf_machine_facts
perf_runtime_versions
perf_cgroup_facts
echo

HF_JSON=$OUT/runtime-exec-$STAMP.json
hf_args=()
for name in "${ORDER[@]}"; do
	hf_args+=(-n "$name" "${RT[$name]} exec ${ID[$name]} /bin/true")
done
hf_args+=(-n floor "nsenter -t $BERTH_PID -a /bin/true")
hyperfine -N --style basic --warmup "$WARMUP" --runs "$RUNS" --export-json "$HF_JSON" \
	"${hf_args[@]}"
echo

PYTHONPATH=$(dirname "${BASH_SOURCE[0]}") python3 - "$HF_JSON" "$CRUN_NOTE" <<'EOF'
import sys
import hftable

hf_path, crun_note = sys.argv[1:]
res = hftable.load(hf_path)
hftable.print_table(res, "exec by", crun_note)
med = {name: r["median"] for name, r in res.items()}
print("ratios of medians:")
for num, den in (("runc", "berth-runtime"), ("crun", "berth-runtime"), ("berth-runtime", "floor")):
    label = f"{num.split('-')[0]}/{den.split('-')[0]}"
    if num in med and den in med:
        print(f"  {label:<12} {med[num] / med[den]:6.2f}")
    else:
        print(f"  {label:<12} n/a")
EOF
echo
echo "raw: $HF_JSON"
