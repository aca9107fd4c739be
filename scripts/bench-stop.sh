#!/usr/bin/env bash
# Stop benchmark: how long the engine unit's stop hook (`cai system stop-containers`) takes to stop
# 8 managed containers whose PID 1 ignores SIGTERM (as systemd inside a container takes its time),
# against `docker stop -t 2 <ids>` on the same private engine, in the same run. Each container gets
# a 2 s stop timeout, so both are bound by it; the goal is a ratio of at most 1.05.
#
# Usage: sudo scripts/bench-stop.sh [ROUNDS]   (default 3; builds the release binary first)
# Needs root, dockerd, docker and busybox-static (sudo ./scripts/test.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

rounds="${1:-3}"
# shellcheck source=scripts/lib/private-engine.sh
. scripts/lib/private-engine.sh
private_engine_require bench-stop.sh

cargo build --release --quiet
cai="$PWD/target/release/cai"
private_engine_start

names=()
for i in $(seq 8); do
	names+=("agent-$i")
	docker_ run -d --network none --name "agent-$i" --label containai.managed=true \
		cai-bench:busybox sleep 600 >/dev/null
done

# median_ms CMD...: runs CMD once per round, restarting the containers before each, and prints
# the median wall time in ms. EPOCHREALTIME is a bash builtin, so the clock forks nothing.
median_ms() {
	local round start end
	local -a samples=()
	for ((round = 0; round < rounds; round++)); do
		docker_ start "${names[@]}" >/dev/null
		start=$EPOCHREALTIME
		"$@" >/dev/null 2>&1
		end=$EPOCHREALTIME
		samples+=($(((${end/./} - ${start/./}) / 1000)))
	done
	printf '%s\n' "${samples[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'
}

cai_ms="$(median_ms "$cai" --root "$root" system stop-containers --timeout 2)"
docker_ms="$(median_ms docker_ stop -t 2 "${names[@]}")"

printf '%-44s %10s\n' "8 containers ignoring SIGTERM, timeout 2 s" "median"
printf '%-44s %7s ms\n' "docker stop -t 2 <ids>" "$docker_ms"
printf '%-44s %7s ms\n' "cai system stop-containers --timeout 2" "$cai_ms"
awk -v a="$cai_ms" -v b="$docker_ms" 'BEGIN { printf "ratio cai / docker stop: %.2f (goal <= 1.05)\n", a / b }'
