#!/usr/bin/env bash
# Run every perf/*.sh benchmark in turn (not this script, not lib.sh), each under a header.
# Keeps going when one fails or runs past PERF_TIMEOUT seconds (default 1800), and exits
# non-zero at the end if any did.
#
#   sudo perf/run-all.sh
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
limit=${PERF_TIMEOUT:-1800}
failed=()
for bench in "$here"/*.sh; do
	name=$(basename "$bench")
	case $name in run-all.sh | lib.sh) continue ;; esac
	printf '\n######## %s ########\n\n' "$name"
	if ! timeout "$limit" bash "$bench"; then
		failed+=("$name")
		printf '\n%s FAILED\n' "$name" >&2
	fi
done
if ((${#failed[@]})); then
	printf '\nfailed: %s\n' "${failed[*]}" >&2
	exit 1
fi
