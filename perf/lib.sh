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
