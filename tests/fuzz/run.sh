#!/bin/bash
# Runs every fuzz target of a -DFDH_FUZZ=ON build for SECONDS each, as many
# at once as there are CPUs, starting from the checked-in seeds.  Fails when
# any target finds a crash, a sanitizer report, a leak or a hang; the input
# that did it is left as BUILD/fuzz-out/artifacts/TARGET-crash-* (or -leak-,
# -timeout-), and the target's log is printed.
#	tests/fuzz/run.sh BUILD_DIR [SECONDS] [TARGET...]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=$(cd "${1:?usage: run.sh BUILD_DIR [SECONDS] [TARGET...]}" && pwd)
seconds=${2:-60}
shift $(($# < 2 ? $# : 2))
if [ $# -gt 0 ]; then
	targets=("$@")
else
	targets=()
	for d in "$here"/corpus/*/; do
		targets+=("$(basename "$d")")
	done
fi
out=$build/fuzz-out
mkdir -p "$out/artifacts"

# One target: new inputs go to its work directory, the seeds stay as they are.
# Its exit status goes to a file: the throttle below reaps jobs as they end.
run_one() {
	local t=$1 rc=0
	mkdir -p "$out/work/$t"
	"$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
		-artifact_prefix="$out/artifacts/$t-" "$out/work/$t" "$here/corpus/$t" \
		>"$out/$t.log" 2>&1 || rc=$?
	echo "$rc" >"$out/$t.rc"
}

for t in "${targets[@]}"; do
	if [ ! -x "$build/tests/fuzz/fuzz_$t" ]; then
		echo "run.sh: no fuzz_$t in $build/tests/fuzz (configure with -DFDH_FUZZ=ON)" >&2
		exit 1
	fi
	rm -f "$out/$t.rc"
done
for t in "${targets[@]}"; do
	while [ "$(jobs -rp | wc -l)" -ge "$(nproc)" ]; do
		wait -n || true
	done
	echo "fuzz_$t: ${seconds}s"
	run_one "$t" &
done
wait
failed=()
for t in "${targets[@]}"; do
	if [ "$(cat "$out/$t.rc" 2>/dev/null || echo missing)" != 0 ]; then
		failed+=("$t")
	fi
done
for t in "${targets[@]}"; do
	grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)' "$out/$t.log" |
		sed "s/^/fuzz_$t: /" || true
done
if [ ${#failed[@]} -gt 0 ]; then
	for t in "${failed[@]}"; do
		echo "== fuzz_$t failed; its log:" >&2
		grep -v '^"' "$out/$t.log" | tail -n 60 >&2
	done
	ls -l "$out/artifacts" >&2
	exit 1
fi
