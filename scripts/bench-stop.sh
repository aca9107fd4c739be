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
if [[ "$(id -u)" -ne 0 ]]; then
	echo "error: the benchmark starts a private dockerd, so it needs root" >&2
	echo "help: sudo scripts/bench-stop.sh" >&2
	exit 1
fi
for program in dockerd docker; do
	if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$program" >/dev/null; then
		echo "error: $program is not installed" >&2
		echo "help: apt-get install docker.io busybox-static" >&2
		exit 1
	fi
done
busybox="$(command -v busybox || true)"
if [[ -z "$busybox" ]] || ! dpkg -s busybox-static >/dev/null 2>&1; then
	echo "error: busybox-static is not installed (the test image is built from it)" >&2
	echo "help: apt-get install busybox-static" >&2
	exit 1
fi

cargo build --release --quiet
cai="$PWD/target/release/cai"
root="$(mktemp -d /tmp/cai-bench-root.XXXXXX)"
socket="$root/var/run/containai-docker.sock"
mkdir -p "$root/var/run" "$root/var/lib/containai-docker" "$root/run"
docker_() { docker -H "unix://$socket" "$@"; }

PATH="$PATH:/usr/sbin:/sbin" dockerd --host "unix://$socket" --data-root "$root/var/lib/containai-docker" \
	--exec-root "$root/run/docker" --pidfile "$root/run/dockerd.pid" \
	--iptables=false --ip6tables=false --bridge=none >"$root/dockerd.log" 2>&1 &
dockerd_pid=$!
cleanup() {
	local ids
	mapfile -t ids < <(docker_ ps -aq 2>/dev/null)
	if [[ ${#ids[@]} -gt 0 ]]; then
		docker_ rm -f "${ids[@]}" >/dev/null 2>&1 || true
	fi
	kill "$dockerd_pid" 2>/dev/null || true
	wait "$dockerd_pid" 2>/dev/null || true
	rm -rf "$root"
}
trap cleanup EXIT
for _ in $(seq 100); do
	docker_ version >/dev/null 2>&1 && break
	sleep 0.2
done

# A busybox image: no registry is reachable here.
image="$root/image"
mkdir -p "$image/bin" "$image/etc"
cp "$busybox" "$image/bin/busybox"
ln -s busybox "$image/bin/sh"
ln -s busybox "$image/bin/sleep"
echo 'root:x:0:0:root:/root:/bin/sh' >"$image/etc/passwd"
tar -C "$image" -cf "$root/image.tar" .
docker_ import --change 'ENV PATH=/bin' "$root/image.tar" cai-bench:busybox >/dev/null

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
