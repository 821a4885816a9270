# shellcheck shell=bash
# Helpers shared by the perf/*.sh benchmarks. Source it; it defines functions only.

# Print a message to stderr.
perf_log() { printf '%s\n' "$*" >&2; }

# Print a message to stderr and exit non-zero.
perf_die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

perf_need_root() {
	[[ $(id -u) -eq 0 ]] || perf_die "needs root: run it as 'sudo $0'"
}

# Fail with a clear message unless every named program is on PATH.
perf_need_cmds() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null || perf_die "'$c' is not installed"
	done
}

# The repository's top directory (perf/..).
perf_repo_root() { cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd; }

# Where raw results go (gitignored); created on demand.
perf_out_dir() {
	local d
	d="$(perf_repo_root)/perf/out"
	mkdir -p "$d"
	printf '%s\n' "$d"
}

# The facts a ratio should be quoted with.
perf_machine_facts() {
	printf 'machine: %s cores, %s GiB, kernel %s, %s\n' \
		"$(nproc)" \
		"$(awk '/^MemTotal:/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)" \
		"$(uname -r)" \
		"$(. /etc/os-release 2>/dev/null && printf '%s' "${PRETTY_NAME:-unknown OS}")"
	printf 'date:    %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	printf 'load:    %s (1, 5, 15 min; anything near or above 1 makes this run noisy)\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
}

# perf_busybox_rootfs DIR: a minimal rootfs from busybox-static: DIR/bin/busybox, one symlink
# per applet (but none named busybox), and the usual empty mount points.
perf_busybox_rootfs() {
	local root=$1 busybox=${BUSYBOX:-/bin/busybox} applet
	[[ -x $busybox ]] || perf_die "$busybox not found: apt-get install busybox-static"
	if command -v file >/dev/null && file -L "$busybox" | grep -q 'dynamically linked'; then
		perf_die "$busybox is dynamically linked: install busybox-static"
	fi
	mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev" "$root/etc" "$root/tmp"
	cp "$busybox" "$root/bin/busybox"
	while read -r applet; do
		[[ $applet == busybox ]] && continue
		ln -s busybox "$root/bin/$applet"
	done < <("$busybox" --list)
}

# perf_docker_seccomp FILE: write to FILE the `linux.seccomp` that dockerd (Debian's docker.io)
# puts in config.json for a default container (`docker run busybox true`: default
# capabilities, no --privileged, no --security-opt), exactly as dockerd renders it for this
# kernel and architecture. Captured, not converted: a private dockerd + containerd pair (own
# sockets, roots and state, no bridge, no iptables) runs one container through a wrapper
# runtime that copies the bundle's config.json and then execs runc. The result is cached in
# perf/out/ per dockerd version and kernel; nothing of it is committed.
perf_docker_seccomp() {
	local dest=$1 cache ver tmp run rc=0
	perf_need_cmds dockerd containerd runc jq
	ver=$(dockerd --version | awk '{ gsub(",", "", $3); print $3 }')
	cache="$(perf_out_dir)/docker-seccomp-$ver-$(uname -r)-$(uname -m).json"
	if [[ ! -s $cache ]]; then
		perf_log "capturing dockerd $ver's default seccomp profile (private dockerd, one container) ..."
		tmp=$(mktemp -d /tmp/berth-perf-seccomp.XXXXXX)
		# containerd's shim sockets live under the state dir: keep its path short, on tmpfs.
		run=$(mktemp -d /run/berth-perf-seccomp.XXXXXX)
		(_perf_capture_docker_seccomp "$tmp" "$run" "$cache") || rc=$?
		rm -rf "$tmp" "$run" 2>/dev/null || true
		((rc == 0)) || { rm -f "$cache"; return "$rc"; }
	fi
	cp "$cache" "$dest"
}

# The capture itself, in a subshell of perf_docker_seccomp. Its state is global, not local:
# the EXIT trap that stops the daemons runs after the function has returned, and the subshell
# keeps it from leaking.
_perf_capture_docker_seccomp() {
	_pc_tmp=$1 _pc_run=$2 _pc_pids=()
	local cache=$3 docker=${DOCKER:-docker} i tmp=$1 run=$2
	trap _perf_capture_stop EXIT
	set -e
	cat >"$tmp/capture-runc" <<-WRAPPER
		#!/bin/sh
		# Copy the bundle's config.json on create, then be runc.
		prev=
		for a in "\$@"; do
		    case \$prev in --bundle | -b) cp "\$a/config.json" "$tmp/config.json" ;; esac
		    case \$a in --bundle=*) cp "\${a#--bundle=}/config.json" "$tmp/config.json" ;; esac
		    prev=\$a
		done
		exec runc "\$@"
	WRAPPER
	chmod 755 "$tmp/capture-runc"
	perf_busybox_rootfs "$tmp/rootfs"
	tar -C "$tmp/rootfs" -cf "$tmp/busybox.tar" .
	containerd --root "$tmp/ctd-root" --state "$run/ctd" --address "$run/ctd.sock" \
		>"$tmp/containerd.log" 2>&1 &
	_pc_pids+=($!)
	for ((i = 0; i < 100; i++)); do [[ -S $run/ctd.sock ]] && break; sleep 0.1; done
	dockerd --containerd "$run/ctd.sock" -H "unix://$run/docker.sock" --data-root "$tmp/root" \
		--exec-root "$run/exec" --pidfile "$run/dockerd.pid" --iptables=false --ip-masq=false \
		--bridge=none --add-runtime "capture=$tmp/capture-runc" >"$tmp/dockerd.log" 2>&1 &
	_pc_pids+=($!)
	for ((i = 0; i < 300; i++)); do
		"$docker" -H "unix://$run/docker.sock" version >/dev/null 2>&1 && break
		sleep 0.1
	done
	export DOCKER_HOST=unix://$run/docker.sock
	"$docker" import "$tmp/busybox.tar" busybox:capture >/dev/null
	"$docker" run --rm --runtime capture --network none busybox:capture true ||
		perf_die "dockerd could not run a container; its log: $(tail -5 "$tmp/dockerd.log")"
	[[ -s $tmp/config.json ]] || perf_die "the wrapper runtime saw no config.json"
	jq -e '.linux.seccomp | select(.defaultAction != null)' "$tmp/config.json" >"$cache" ||
		perf_die "dockerd's config.json has no linux.seccomp (seccomp disabled in dockerd?)"
}

_perf_capture_stop() {
	local p
	for p in "${_pc_pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${_pc_pids[@]}"; do wait "$p" 2>/dev/null || true; done
	grep -o " ${_pc_tmp}[^ ]*\| ${_pc_run}[^ ]*" /proc/self/mountinfo | sort -r |
		xargs -r -n1 umount -l 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------
# OCI runtimes side by side (runtime*.sh).

# perf_berth_runtime: print the berth-runtime binary to measure (BERTH_RUNTIME, default
# target/release/berth-runtime). cargo may be rewriting it: wait a bounded while for it.
perf_berth_runtime() {
	local bin=${BERTH_RUNTIME:-$(perf_repo_root)/target/release/berth-runtime} i
	for ((i = 0; i < 30; i++)); do
		[[ -x $bin ]] && "$bin" --version >/dev/null 2>&1 && break
		((i == 0)) && perf_log "waiting for $bin (missing or not runnable) ..."
		sleep 2
	done
	{ [[ -x $bin ]] && "$bin" --version >/dev/null 2>&1; } || perf_die "$bin is missing or broken; build it first:
  cargo build --release -p berth-runtime"
	printf '%s\n' "$bin"
}

# perf_oci_runtimes BERTH STATE: the global RT (name -> command line with its own --root under
# STATE; split on spaces, so no path may hold one) and ORDER (berth first).
perf_oci_runtimes() {
	perf_state_tmpfs "$2"
	PERF_STATE_ROOT=$2
	declare -gA RT=(
		[berth-runtime]="$1 --root $2/berth-runtime"
		[runc]="runc --root $2/runc"
		[crun]="crun --root $2/crun"
	)
	ORDER=(berth-runtime runc crun)
}

# perf_state_tmpfs DIR: DIR (the runtimes' state roots) on a tmpfs of its own. Each runtime's
# default root (/run/runc, /run/crun, /run/berth-runtime) is on a tmpfs where /run is one, as
# on most hosts; on these machines /run and /tmp are on the root ext4, which has no journal and
# skips recently freed inodes one by one when it makes a new one (46-300 us each after a build
# or a benchmark freed thousands): 0.4 ms of a berth run, the same for runc and crun, and
# nothing for the floor, which keeps no state. Undone by perf_oci_teardown.
perf_state_tmpfs() {
	mkdir -p "$1"
	[[ $(stat -f -c %T "$1") == tmpfs ]] || mount -t tmpfs -o mode=0711 tmpfs "$1"
}

# perf_oci_teardown WORK: for a clean-up trap after the containers are deleted: hugetlb back on
# cgroup2 if it was bound for crun, the state roots' tmpfs unmounted (lazily: a runtime's
# leftover mounts below go with it), WORK removed.
perf_oci_teardown() {
	perf_unbind_hugetlb
	local state=${PERF_STATE_ROOT:-}
	if [[ -n $state && -d $state && $(stat -f -c %T "$state") == tmpfs ]]; then
		umount -l "$state" 2>/dev/null || true
	fi
	rm -rf "$1"
}

# rt NAME ARGS...: run runtime NAME (from RT) with its own state root.
rt() {
	local name=$1
	shift
	# shellcheck disable=SC2086 # RT values are word lists
	${RT[$name]} "$@"
}

# perf_runtime_versions: one line naming the runtimes in ORDER and their versions.
perf_runtime_versions() {
	local name v line=""
	for name in "${ORDER[@]}"; do
		case $name in
		berth-*) v="$name $(rt "$name" --version | awk '{ print $NF }')" ;;
		*) v=$(rt "$name" --version | head -1) ;;
		esac
		line+="${line:+, }$v"
	done
	echo "runtimes: $line"
}

# perf_crun_usable PROBE...: run the command PROBE (one crun container); crun 1.8.1 refuses a
# hybrid cgroup layout while cgroup2 holds any controller (here: hugetlb), so if it fails,
# bind hugetlb to a v1 hierarchy at /sys/fs/cgroup/hugetlb and try again. Sets PERF_CRUN_NOTE
# (empty when crun works) and PERF_HUGETLB_BOUND; call perf_unbind_hugetlb at exit.
perf_crun_usable() {
	local dir=/sys/fs/cgroup/hugetlb err
	PERF_CRUN_NOTE="" PERF_HUGETLB_BOUND=${PERF_HUGETLB_BOUND:-0}
	if ! command -v crun >/dev/null; then
		PERF_CRUN_NOTE="crun is not installed"
	elif ! err=$("$@" 2>&1 >/dev/null </dev/null); then
		perf_log "crun fails on the untouched cgroup layout: $err"
		if ((PERF_HUGETLB_BOUND)); then
			PERF_CRUN_NOTE="crun: $err (with hugetlb on v1)"
		elif [[ -e $dir ]]; then
			PERF_CRUN_NOTE="crun: $err ($dir already exists; not touching it)"
		else
			perf_log ">>> binding hugetlb to a v1 hierarchy at $dir for this benchmark only"
			perf_log ">>> (mount -t cgroup -o hugetlb); it is unmounted again at exit"
			mkdir "$dir"
			# A controller enabled for cgroup2's children (runtimes enable it to set limits)
			# cannot move: disable it for the run; perf_unbind_hugetlb enables it again.
			PERF_HUGETLB_SUBTREE=0
			if grep -qw hugetlb /sys/fs/cgroup/unified/cgroup.subtree_control 2>/dev/null &&
				echo -hugetlb >/sys/fs/cgroup/unified/cgroup.subtree_control 2>/dev/null; then
				PERF_HUGETLB_SUBTREE=1
			fi
			if err2=$(mount -t cgroup -o hugetlb cgroup "$dir" 2>&1); then
				PERF_HUGETLB_BOUND=1
				if ! err=$("$@" 2>&1 >/dev/null </dev/null); then
					PERF_CRUN_NOTE="crun still fails with hugetlb on v1: $err"
					perf_unbind_hugetlb
				fi
			else
				# hugetlb can be bound to one hierarchy at a time: EBUSY while cgroup2 uses it.
				PERF_CRUN_NOTE="crun: $err; binding hugetlb to v1 failed: $err2"
				rmdir "$dir"
			fi
		fi
	fi
	[[ -z $PERF_CRUN_NOTE ]] || perf_log "crun unavailable: $PERF_CRUN_NOTE"
}

# perf_unbind_hugetlb: undo perf_crun_usable's binding, if it made one, and wait (bounded) for
# hugetlb to be back in cgroup2.
perf_unbind_hugetlb() {
	local dir=/sys/fs/cgroup/hugetlb ctrls=/sys/fs/cgroup/unified/cgroup.controllers i tmp left
	((${PERF_HUGETLB_BOUND:-0})) || return 0
	PERF_HUGETLB_BOUND=0
	# Empty cgroups left below the hierarchy's root (by a runtime's delete racing exit) would
	# keep it alive after the unmount: remove them first, deepest first.
	find "$dir" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null || true
	if ! { umount "$dir" && rmdir "$dir"; }; then
		perf_log "WARNING: could not unmount/remove $dir; undo it by hand"
		return 0
	fi
	# The kernel frees an unmounted v1 hierarchy asynchronously; only then does hugetlb go
	# back to cgroup2. Wait for it (bounded) so the next user sees the untouched layout; seen
	# here: sometimes it only lets go after one more mount/unmount cycle.
	for ((i = 0; i < 60; i++)); do
		grep -qw hugetlb "$ctrls" 2>/dev/null && break
		if ((i == 10)); then
			tmp=$(mktemp -d /tmp/berth-hugetlb.XXXXXX)
			if mount -t cgroup -o hugetlb cgroup "$tmp" 2>/dev/null; then
				find "$tmp" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null || true
				umount "$tmp"
			fi
			rmdir "$tmp"
		fi
		sleep 0.5
	done
	if grep -qw hugetlb "$ctrls" 2>/dev/null; then
		if ((${PERF_HUGETLB_SUBTREE:-0})); then
			echo +hugetlb >/sys/fs/cgroup/unified/cgroup.subtree_control 2>/dev/null || true
		fi
		perf_log "cgroups: hugetlb unbound from v1 and back in cgroup2 (layout restored)"
	else
		# /proc/cgroups: subsys_name hierarchy num_cgroups enabled
		left=$(awk '$1 == "hugetlb" { print $3 - 1 }' /proc/cgroups)
		perf_log "WARNING: hugetlb is not back in cgroup2 after 30 s: its unmounted v1 hierarchy"
		perf_log "  still holds ${left:-?} cgroup(s) below its root (containers created while it was"
		perf_log "  bound, by anyone). Their runtimes cannot remove those any more (the mount is gone):"
		perf_log "  once the containers are gone, mount the hierarchy somewhere, rmdir the empty"
		perf_log "  cgroups deepest first, unmount (twice if need be), and hugetlb returns to cgroup2."
	fi
}

# perf_cgroup_facts: which controllers are where, and whether this script moved hugetlb.
perf_cgroup_facts() {
	local ctrls=/sys/fs/cgroup/unified/cgroup.controllers v2
	v2=$(cat "$ctrls" 2>/dev/null || echo "no $ctrls")
	echo "cgroups: cgroup2 controllers: ${v2:-none}; v1:" \
		"$(awk 'NR > 1 && $2 != 0 { printf "%s ", $1 }' /proc/cgroups)"
	if ((${PERF_HUGETLB_BOUND:-0})); then
		echo "         hugetlb bound to v1 at /sys/fs/cgroup/hugetlb by this script for crun (undone at exit)"
	elif ! grep -qw hugetlb "$ctrls" 2>/dev/null; then
		echo "         hugetlb is not on cgroup2 (not this script's doing: left by an earlier run?)"
	fi
}

# perf_runtime_bundle BUNDLE ARGS...: a bundle with a busybox rootfs and the config every
# runtime*.sh shares: berth's default spec (runc's), terminal false, process ARGS.
perf_runtime_bundle() {
	local bundle=$1 berth
	shift
	berth=$(perf_berth_runtime)
	perf_busybox_rootfs "$bundle/rootfs"
	"$berth" spec --bundle "$bundle"
	jq --args '.process.terminal = false | .process.args = $ARGS.positional' "$@" \
		<"$bundle/config.json" >"$bundle/config.json.new"
	mv "$bundle/config.json.new" "$bundle/config.json"
}
