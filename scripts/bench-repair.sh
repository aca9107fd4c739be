#!/usr/bin/env bash
# Repair benchmark: `cai doctor --repair` on a managed volume holding 200,000 files owned by
# 65534:65534, against GNU `chown -R --from=65534:65534 1000:1000` on an identical tree on the same
# file system, in the same run (median of ROUNDS). Also the same ratio for an already healthy tree
# (nothing to change: both only scan), and cai's peak RSS. Every safety rule of the walk is in
# force. Goals: repair ratio <= 0.7, healthy-scan ratio <= 1.0, peak RSS <= 32 MB.
#
# Usage: sudo scripts/bench-repair.sh [ROUNDS] [FILES]   (defaults 3 and 200000; builds the
# release binary first). Needs root, dockerd, docker, busybox-static and GNU time
# (sudo ./scripts/test.sh installs the first three; apt-get install time for /usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/.."

rounds="${1:-3}"
files="${2:-200000}"
# shellcheck source=scripts/lib/private-engine.sh
. scripts/lib/private-engine.sh
private_engine_require bench-repair.sh python3
if [[ ! -x /usr/bin/time ]]; then
	echo "error: GNU time (/usr/bin/time) is not installed; it measures the peak RSS" >&2
	echo "help: apt-get install time" >&2
	exit 1
fi

cargo build --release --quiet
cai="$PWD/target/release/cai"
private_engine_start
docker_ run -d --network none --name bench --label containai.managed=true -v bench:/data \
	cai-bench:busybox sleep 600 >/dev/null

volume="$root/var/lib/containai-docker/volumes/bench/_data"
plain="$root/var/lib/containai-docker/plain"
# FILES files in 20 x 10 directories, owned by 65534:65534, once in the volume and once beside it.
python3 - "$volume" "$plain" "$files" <<'PY'
import os, sys
volume, plain, files = sys.argv[1], sys.argv[2], int(sys.argv[3])
dirs = [(a, b) for a in range(20) for b in range(10)]
per = files // len(dirs)
for top in (volume, plain):
    os.makedirs(top, exist_ok=True)
    for a, b in dirs:
        d = os.path.join(top, f"d{a}", f"e{b}")
        os.makedirs(d, exist_ok=True)
        for i in range(per):
            with open(os.path.join(d, f"f{i}"), "w") as f:
                f.write("x")
PY
break_owners() { chown -R 65534:65534 "$volume" "$plain"; }

# ms CMD...: wall time of one run of CMD in ms (EPOCHREALTIME forks nothing).
ms() {
	local start end
	start=$EPOCHREALTIME
	"$@" >/dev/null 2>&1
	end=$EPOCHREALTIME
	echo $(((${end/./} - ${start/./}) / 1000))
}
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

cai_repair() { "$cai" --root "$root" doctor --repair --container bench; }
gnu_chown() { chown -R --from=65534:65534 1000:1000 "$plain"; }

# Each timed run starts from a synced file system, and the order alternates per round, so neither
# pays for the other's writeback.
repair_cai=() repair_gnu=() healthy_cai=() healthy_gnu=()
for ((round = 0; round < rounds; round++)); do
	break_owners
	sync
	if ((round % 2 == 0)); then
		repair_gnu+=("$(ms gnu_chown)")
		sync
		repair_cai+=("$(ms cai_repair)")
	else
		repair_cai+=("$(ms cai_repair)")
		sync
		repair_gnu+=("$(ms gnu_chown)")
	fi
	sync
	# Both trees are healthy now: nothing to change, only the scan.
	healthy_gnu+=("$(ms gnu_chown)")
	healthy_cai+=("$(ms cai_repair)")
done
if [[ "$(stat -c %u:%g "$volume/d19/e9/f0")" != "1000:1000" ]]; then
	echo "error: the repair did not change the volume" >&2
	exit 1
fi
rg="$(printf '%s\n' "${repair_gnu[@]}" | median)"
rc="$(printf '%s\n' "${repair_cai[@]}" | median)"
hg="$(printf '%s\n' "${healthy_gnu[@]}" | median)"
hc="$(printf '%s\n' "${healthy_cai[@]}" | median)"

break_owners
rss_kb="$(/usr/bin/time -f '%M' "$cai" --root "$root" doctor --repair --container bench 2>&1 >/dev/null | tail -n 1)"

printf '%s files, %s rounds (median), %s cores\n' "$files" "$rounds" "$(nproc)"
printf '%-52s %7s ms\n' "chown -R --from=65534:65534 1000:1000 (repair)" "$rg"
printf '%-52s %7s ms\n' "cai doctor --repair --container bench (repair)" "$rc"
printf '%-52s %7s ms\n' "chown -R --from=65534:65534 1000:1000 (healthy)" "$hg"
printf '%-52s %7s ms\n' "cai doctor --repair --container bench (healthy)" "$hc"
awk -v a="$rc" -v b="$rg" 'BEGIN { printf "repair ratio cai / chown -R: %.2f (goal <= 0.7)\n", a / b }'
awk -v a="$hc" -v b="$hg" 'BEGIN { printf "healthy-scan ratio cai / chown -R: %.2f (goal <= 1.0)\n", a / b }'
awk -v k="$rss_kb" 'BEGIN { printf "cai peak RSS: %.1f MB (goal <= 32 MB)\n", k / 1024 }'
