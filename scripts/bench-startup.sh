#!/usr/bin/env bash
# Start-up benchmark: how long `cai --version` and `cai scripts check` (compile and API-check every
# bundled script) take, as a median over many runs and as a ratio to `/bin/true` measured in the
# same run. Goals: `cai scripts check` under 20 ms, `cai --version` under 5 ms.
#
# Usage: scripts/bench-startup.sh [RUNS] [BASELINE]   (default 200 runs; builds the release
# binary first). BASELINE is another `cai` binary (e.g. a release build of an earlier commit),
# measured in the same run so the two sets of ratios can be compared.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${1:-200}"
baseline="${2:-}"
cargo build --release --quiet
cai="$PWD/target/release/cai"
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT

# median_us CMD...: runs CMD $runs times (after 10 warm-up runs) and prints the median in µs.
# EPOCHREALTIME is a bash builtin, so the clock itself forks nothing.
median_us() {
	local i start end
	local -a samples=()
	for ((i = 0; i < 10; i++)); do "$@" >/dev/null 2>&1 || true; done
	for ((i = 0; i < runs; i++)); do
		start=$EPOCHREALTIME
		"$@" >/dev/null 2>&1 || true
		end=$EPOCHREALTIME
		samples+=($((${end/./} - ${start/./})))
	done
	printf '%s\n' "${samples[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'
}

# The check must succeed, or the numbers mean nothing.
"$cai" --root "$root" scripts check >/dev/null

true_us="$(median_us /bin/true)"
version_us="$(median_us "$cai" --version)"
check_us="$(median_us "$cai" --root "$root" scripts check)"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }
ratio2() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
ms() { awk -v a="$1" 'BEGIN { printf "%.2f ms", a / 1000 }'; }

printf '%-28s %12s %14s %s\n' "command ($runs runs)" "median" "x /bin/true" "goal"
printf '%-28s %12s %14s %s\n' "/bin/true" "$(ms "$true_us")" "1.0" "-"
printf '%-28s %12s %14s %s\n' "cai --version" "$(ms "$version_us")" "$(ratio "$version_us" "$true_us")" "< 5 ms"
printf '%-28s %12s %14s %s\n' "cai scripts check" "$(ms "$check_us")" "$(ratio "$check_us" "$true_us")" "< 20 ms"
if [[ -n "$baseline" ]]; then
	"$baseline" --root "$root" scripts check >/dev/null
	base_version_us="$(median_us "$baseline" --version)"
	base_check_us="$(median_us "$baseline" --root "$root" scripts check)"
	printf '%-28s %12s %14s %s\n' "baseline --version" "$(ms "$base_version_us")" "$(ratio "$base_version_us" "$true_us")" "this / baseline: $(ratio2 "$version_us" "$base_version_us")"
	printf '%-28s %12s %14s %s\n' "baseline scripts check" "$(ms "$base_check_us")" "$(ratio "$base_check_us" "$true_us")" "this / baseline: $(ratio2 "$check_us" "$base_check_us")"
fi
