#!/usr/bin/env bash
# OCI runtime lifecycle, side by side in one run: berth-runtime, runc and crun each run a
# busybox container whose process is /bin/true (`RUNTIME run --bundle B id`: create, start,
# wait, delete), against the kernel floor of the same namespaces without a runtime
# (`unshare -f -p -m -n -u -i --mount-proc chroot ROOTFS /bin/true`).
#
#   sudo perf/runtime.sh            # needs root; does not build anything
#
# Whole-process wall time is measured with hyperfine (-N, 5 warm-ups, 50 runs) and reported as
# median (and mean ± stddev) per container, with the ratios that are the claim: crun/berth
# (target >= 2.0), berth/floor (target <= 1.5), runc/berth. Then the create / start / delete
# split of each runtime, timed separately over 50 sequential lifecycles. Raw results go to
# perf/out/ (gitignored).
#
# All runtimes share one bundle (runc's default spec, terminal false, args ["/bin/true"]); each
# has its own --root state directory under a temporary directory that is removed at exit.
#
# crun 1.8.1 refuses hybrid cgroups while cgroup2 holds any controller (here: hugetlb). Only if
# crun fails on the untouched layout, hugetlb is bound to a v1 hierarchy at
# /sys/fs/cgroup/hugetlb for the duration of the run (and the output says so); that is undone at
# exit, also on error or Ctrl-C. If crun still cannot run it is reported unavailable.
#
# Environment: BERTH_RUNTIME (default target/release/berth-runtime), RUNS (50), WARMUP (5),
# PHASE_RUNS (50).

set -euo pipefail

# shellcheck source=perf/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=${RUNS:-50}
WARMUP=${WARMUP:-5}
PHASE_RUNS=${PHASE_RUNS:-50}
PHASE_WARMUP=3

perf_need_root
perf_need_cmds hyperfine runc python3 jq unshare chroot
BERTH=$(perf_berth_runtime)

WORK=$(mktemp -d /tmp/berth-perf-runtime.XXXXXX)
BUNDLE=$WORK/bundle
ROOTFS=$BUNDLE/rootfs
OUT=$(perf_out_dir)
STAMP=$(date -u +%Y%m%d-%H%M%S)

perf_oci_runtimes "$BERTH" "$WORK/state"
# Every container id this script may create, for the clean-up.
IDS=(bench1 bench2 bench3 probe phase)

cleanup() {
	local name id
	for name in "${ORDER[@]}"; do
		[[ -d $WORK/state/$name ]] || continue
		for id in "${IDS[@]}"; do
			rt "$name" delete --force "$id" >/dev/null 2>&1 || true
		done
	done
	perf_oci_teardown "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# probe NAME: one full `run`.
probe() { rt "$1" run --bundle "$BUNDLE" probe; }

# ---------------------------------------------------------------------------------------------
perf_runtime_bundle "$BUNDLE" /bin/true

err=$(probe berth-runtime 2>&1 </dev/null >/dev/null) || perf_die "berth-runtime cannot run the bundle: $err"
err=$(probe runc 2>&1 </dev/null >/dev/null) || perf_die "runc cannot run the bundle: $err"
perf_crun_usable probe crun
CRUN_NOTE=$PERF_CRUN_NOTE
[[ -z $CRUN_NOTE ]] || ORDER=(berth-runtime runc)

# ---------------------------------------------------------------------------------------------
echo "== OCI runtime lifecycle: RUNTIME run --bundle B id, args [/bin/true], busybox rootfs"
perf_machine_facts
perf_runtime_versions
perf_cgroup_facts
echo

HF_JSON=$OUT/runtime-$STAMP.json
hf_args=()
n=0
for name in "${ORDER[@]}"; do
	n=$((n + 1))
	hf_args+=(-n "$name" "${RT[$name]} run --bundle $BUNDLE bench$n")
done
hf_args+=(-n floor "unshare -f -p -m -n -u -i --mount-proc chroot $ROOTFS /bin/true")
hyperfine -N --style basic --warmup "$WARMUP" --runs "$RUNS" --export-json "$HF_JSON" \
	"${hf_args[@]}"
echo

# ---------------------------------------------------------------------------------------------
# Phases: create, start (then wait by polling state until "stopped", untimed), delete.
us_between() { echo $((${2/./} - ${1/./})); }

wait_stopped() {
	local name=$1 i status
	for ((i = 0; i < 1000; i++)); do
		status=$(rt "$name" state phase 2>/dev/null | jq -r .status) || status=""
		[[ $status == stopped ]] && return 0
		sleep 0.005
	done
	perf_log "$name: container 'phase' not stopped after 1000 polls (last: ${status:-?})"
	return 1
}

# measure_phases NAME: PHASE_RUNS lines "create_us start_us delete_us" into $WORK/phases-NAME.
measure_phases() {
	local name=$1 i t0 t1 t2 t3 t4 err=$WORK/phase-$1.err
	local out=$WORK/phases-$name
	: >"$out"
	for ((i = 0; i < PHASE_WARMUP + PHASE_RUNS; i++)); do
		t0=$EPOCHREALTIME
		rt "$name" create --bundle "$BUNDLE" phase </dev/null >/dev/null 2>"$err" || return 1
		t1=$EPOCHREALTIME
		rt "$name" start phase </dev/null >/dev/null 2>"$err" || return 1
		t2=$EPOCHREALTIME
		wait_stopped "$name" || return 1
		t3=$EPOCHREALTIME
		rt "$name" delete phase </dev/null >/dev/null 2>"$err" || return 1
		t4=$EPOCHREALTIME
		((i < PHASE_WARMUP)) && continue
		echo "$(us_between "$t0" "$t1") $(us_between "$t1" "$t2") $(us_between "$t3" "$t4")" >>"$out"
	done
}

PHASES_JSON=$OUT/runtime-phases-$STAMP.json
phase_files=()
for name in "${ORDER[@]}"; do
	if measure_phases "$name"; then
		phase_files+=("$name=$WORK/phases-$name")
	else
		perf_log "$name: phase split failed: $(cat "$WORK/phase-$name.err" 2>/dev/null)"
		rt "$name" delete --force phase >/dev/null 2>&1 || true
	fi
done

# ---------------------------------------------------------------------------------------------
PYTHONPATH=$(dirname "${BASH_SOURCE[0]}") python3 - "$HF_JSON" "$PHASES_JSON" "$PHASE_RUNS" "$CRUN_NOTE" "${phase_files[@]}" <<'EOF'
import json, statistics, sys
import hftable

hf_path, phases_path, phase_runs, crun_note, *phase_args = sys.argv[1:]
res = hftable.load(hf_path)
hftable.print_table(res, "runtime", crun_note)

med = {name: r["median"] for name, r in res.items()}
def ratio(label, num, den, target=None, higher_is_better=True):
    if num not in med or den not in med:
        print(f"  {label:<12} n/a ({num if num not in med else den} not measured)")
        return
    v = med[num] / med[den]
    verdict = ""
    if target is not None:
        ok = v >= target if higher_is_better else v <= target
        verdict = f"  target {'>=' if higher_is_better else '<='} {target}: {'met' if ok else 'NOT met'}"
    print(f"  {label:<12} {v:6.2f}{verdict}")

print("ratios of medians:")
ratio("crun/berth", "crun", "berth-runtime", 2.0, True)
ratio("berth/floor", "berth-runtime", "floor", 1.5, False)
ratio("runc/berth", "runc", "berth-runtime")
print()

phases = {}
for arg in phase_args:
    name, path = arg.split("=", 1)
    rows = [list(map(int, line.split())) for line in open(path) if line.strip()]
    cols = list(zip(*rows))
    phases[name] = {
        phase: {"median_ms": statistics.median(c) / 1000, "mean_ms": statistics.fmean(c) / 1000,
                "samples_us": list(c)}
        for phase, c in zip(("create", "start", "delete"), cols)
    }
print(f"phases, median ms of {phase_runs} sequential lifecycles (wait for 'stopped' untimed):")
print(f"  {'runtime':<15} {'create':>8} {'start':>8} {'delete':>8}")
for name, p in phases.items():
    print(f"  {name:<15} {p['create']['median_ms']:>8.2f} {p['start']['median_ms']:>8.2f}"
          f" {p['delete']['median_ms']:>8.2f}")
print(f"  {'(anchor runc)':<15} {29.5:>8.2f} {4.6:>8.2f} {5.8:>8.2f}   ANCHORS.md, another run")
print(f"  {'(anchor crun)':<15} {8.9:>8.2f} {3.7:>8.2f} {5.8:>8.2f}   ANCHORS.md, another run")
print("  note: create includes joining v1 cgroups; a cgroup.procs write costs an RCU grace period")
print("  (~6 ms here) unless another came just before, so a create after the untimed wait costs")
print("  more than the same step inside back-to-back `run`s. See perf/README.md.")
json.dump(phases, open(phases_path, "w"), indent=1)
EOF
echo
echo "raw: $HF_JSON"
echo "     $PHASES_JSON"
