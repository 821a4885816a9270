#!/usr/bin/env bash
# The start-up cost of seccomp with Docker's default profile, side by side in one run:
# berth-runtime, runc and crun each `run` a busybox /bin/true container with and without
# `linux.seccomp`, and the penalty per container is the difference of the medians. Target:
# berth's penalty < 1 ms.
#
#   sudo perf/runtime-seccomp.sh    # needs root; does not build anything
#
# The profile is the one dockerd (Debian's docker.io) writes into config.json for
# `docker run busybox true` on this machine (default capabilities, x86_64 + x86 + x32),
# captured once through a private dockerd and cached in perf/out/ (perf_docker_seccomp in
# lib.sh). Both bundles share the rest of their config (runtime.sh's: runc's default spec,
# terminal false, args ["/bin/true"]) and one rootfs.
#
# A difference of ~1 ms between runs of ~6 ms needs its two sides measured at the same moment:
# the runs are interleaved, round by round (every variant once per round, in an order that
# rotates), timed by a small Python driver (posix_spawn + wait4), so a load that comes and goes
# on a shared machine lands on both sides alike. Prints per runtime, in wall time and in CPU
# time (wait4's rusage: the runtime and every process it reaped, the container included), the
# median ms without and with the filter, the penalty (difference of medians) and the median of
# the per-round differences. Raw samples ([wall, cpu] ms) go to perf/out/.
#
# crun's hybrid-cgroup workaround is runtime.sh's (see perf/README.md).
#
# berth-runtime keeps compiled programs under its --root (runtime/src/seccomp/cache.rs): its
# "seccomp" runs find the program there, as every container but the first does on a host. The
# row "berth-runtime cold" removes that cache before each of its runs (untimed), so it pays
# the compilation, as the first container with a new profile does.
#
# Environment: BERTH_RUNTIME (default target/release/berth-runtime), BERTH_BEFORE (another
# berth-runtime binary, e.g. a build from before a change: measured as one more runtime in the
# same rounds), RUNTIMES (default "berth-runtime runc crun"; leave crun out to keep the cgroup
# layout untouched), ROUNDS (100), WARMUP (5 rounds, not counted).

set -euo pipefail

# shellcheck source=perf/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=${ROUNDS:-100}
WARMUP=${WARMUP:-5}
TARGET_MS=1.0

perf_need_root
perf_need_cmds runc python3 jq
BERTH=$(perf_berth_runtime)

WORK=$(mktemp -d /tmp/berth-perf-seccomp.XXXXXX)
PLAIN=$WORK/plain
FILTERED=$WORK/seccomp
OUT=$(perf_out_dir)
STAMP=$(date -u +%Y%m%d-%H%M%S)

perf_oci_runtimes "$BERTH" "$WORK/state"
if [[ -n ${BERTH_BEFORE:-} ]]; then
	[[ -x $BERTH_BEFORE ]] || perf_die "BERTH_BEFORE=$BERTH_BEFORE is not an executable"
	RT[berth-before]="$BERTH_BEFORE --root $WORK/state/berth-before"
fi
read -ra ORDER <<<"${RUNTIMES:-berth-runtime runc crun}"
[[ -z ${BERTH_BEFORE:-} ]] || ORDER=(berth-before "${ORDER[@]}")
for name in "${ORDER[@]}"; do
	[[ -n ${RT[$name]:-} ]] || perf_die "RUNTIMES: unknown runtime $name (berth-runtime, runc, crun)"
done

cleanup() {
	local name id
	for name in "${!RT[@]}"; do
		[[ -d $WORK/state/$name ]] || continue
		for id in "plain-$name" "seccomp-$name" "probe-$name" cold-plain cold-seccomp; do
			rt "$name" delete --force "$id" >/dev/null 2>&1 || true
		done
	done
	perf_oci_teardown "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# probe NAME BUNDLE: one full `run`.
probe() { rt "$1" run --bundle "$2" "probe-$1"; }

# ---------------------------------------------------------------------------------------------
perf_runtime_bundle "$PLAIN" /bin/true
perf_docker_seccomp "$WORK/docker-seccomp.json"
mkdir "$FILTERED"
jq --arg root "$PLAIN/rootfs" --slurpfile sc "$WORK/docker-seccomp.json" \
	'.root.path = $root | .linux.seccomp = $sc[0]' "$PLAIN/config.json" >"$FILTERED/config.json"

CRUN_NOTE=""
if [[ " ${ORDER[*]} " == *" crun "* ]]; then
	perf_crun_usable probe crun "$FILTERED"
	CRUN_NOTE=$PERF_CRUN_NOTE
	[[ -z $CRUN_NOTE ]] || read -ra ORDER <<<"${ORDER[*]/crun/}"
fi
for name in "${ORDER[@]}"; do
	for b in "$PLAIN" "$FILTERED"; do
		err=$(probe "$name" "$b" 2>&1 </dev/null >/dev/null) ||
			perf_die "$name cannot run $b: $err"
	done
done

echo "== seccomp start-up cost: RUNTIME run of busybox /bin/true, without and with Docker's default profile"
perf_machine_facts
perf_runtime_versions
perf_cgroup_facts
echo "profile: dockerd $(dockerd --version | awk '{ gsub(",", "", $3); print $3 }')'s default for this machine:" \
	"$(jq -r '"defaultAction \(.defaultAction), \(.architectures | length) architectures, \(.syscalls | length) rules naming \([.syscalls[].names[]] | length) syscalls"' \
		"$WORK/docker-seccomp.json")"
echo "         (noNewPrivileges true, as in runc's default spec: the filter is loaded last, just before exec)"
echo "method:  $ROUNDS interleaved rounds after $WARMUP warm-up rounds, each variant once per round"
echo

RAW=$OUT/runtime-seccomp-$STAMP.json
variants=()
for name in "${ORDER[@]}"; do
	# shellcheck disable=SC2206 # RT values are word lists
	variants+=("$name" "plain" "${RT[$name]} run --bundle $PLAIN plain-$name" -)
	variants+=("$name" "seccomp" "${RT[$name]} run --bundle $FILTERED seccomp-$name" -)
	if [[ $name == berth-runtime ]]; then
		variants+=("$name cold" "plain" "${RT[$name]} run --bundle $PLAIN cold-plain" -)
		variants+=("$name cold" "seccomp" "${RT[$name]} run --bundle $FILTERED cold-seccomp" \
			"$WORK/state/$name/.seccomp-cache")
	fi
done

python3 - "$ROUNDS" "$WARMUP" "$TARGET_MS" "$RAW" "$CRUN_NOTE" "${variants[@]}" <<'EOF'
import json, os, shutil, statistics, sys, time

rounds, warmup, target, raw, crun_note, *flat = sys.argv[1:]
rounds, warmup, target = int(rounds), int(warmup), float(target)
# name, variant, command line, directory to remove (untimed) before each run or "-".
variants = [(flat[i], flat[i + 1], flat[i + 2].split(), flat[i + 3]) for i in range(0, len(flat), 4)]
devnull = os.open(os.devnull, os.O_RDWR)
actions = [(os.POSIX_SPAWN_DUP2, devnull, fd) for fd in (0, 1, 2)]

def once(argv):
    """Wall ms and CPU ms (user + system of the runtime and every process it reaped)."""
    t0 = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0] if argv[0].startswith("/") else
                         next(os.path.join(d, argv[0]) for d in os.environ["PATH"].split(":")
                              if os.access(os.path.join(d, argv[0]), os.X_OK)),
                         argv, os.environ, file_actions=actions)
    _, status, ru = os.wait4(pid, 0)
    t1 = time.perf_counter_ns()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(argv)}")
    return (t1 - t0) / 1e6, (ru.ru_utime + ru.ru_stime) * 1e3

samples = {(n, v): [] for n, v, _, _ in variants}
for r in range(warmup + rounds):
    k = r % len(variants)
    for name, variant, argv, clear in variants[k:] + variants[:k]:
        if clear != "-":
            shutil.rmtree(clear, ignore_errors=True)
        wall_cpu = once(argv)
        if r >= warmup:
            samples[(name, variant)].append(wall_cpu)

json.dump({f"{n}/{v}": s for (n, v), s in samples.items()}, open(raw, "w"))
names = list(dict.fromkeys(n for n, _, _, _ in variants))
med = statistics.median
def col(n, v, i):
    return [x[i] for x in samples[(n, v)]]
def penalty(n, i):
    return med(col(n, "seccomp", i)) - med(col(n, "plain", i))

for i, what in ((0, "wall time"), (1, "CPU time (user + system, the runtime and what it reaped)")):
    print(f"{what}, median ms per container:")
    print(f"  {'runtime':<18} {'plain':>7} {'seccomp':>8} {'penalty':>8} {'per-round':>10}")
    for n in names:
        p, s = col(n, "plain", i), col(n, "seccomp", i)
        paired = med(b - a for a, b in zip(p, s))
        print(f"  {n:<18} {med(p):>7.2f} {med(s):>8.2f} {penalty(n, i):>+8.2f} {paired:>+10.2f}")
    if crun_note:
        print(f"  {'crun':<18} unavailable ({crun_note})")
    print()
print(f"{rounds} runs of each; penalty = median(seccomp) - median(plain); per-round = median of")
print("the differences within a round. CPU time is the steadier figure on a busy machine; on a")
print("quiet one the wall-time penalty follows it (the added work is serial).")
for n in ("berth-runtime", "berth-runtime cold"):
    if (n, "plain") not in samples:
        continue
    b, c = penalty(n, 0), penalty(n, 1)
    print(f"{n} penalty {b:.2f} ms wall, {c:.2f} ms CPU per container: target < {target:g} ms"
          f" {'met' if b < target else 'NOT met'}")
EOF
echo
echo "raw: $RAW"
