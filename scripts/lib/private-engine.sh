# shellcheck shell=bash
# Shared by the benchmarks that need a private engine (sourced, not run): checks what they need,
# starts a private dockerd under a temporary root that is torn down on exit, and imports a busybox
# image `cai-bench:busybox` (no registry is reachable) with `root` and `agent` (1000:1000).
#
# After `private_engine_start`: `root` (the temporary root, for `cai --root`), `socket`, and
# `docker_` (the docker CLI on that engine).

# private_engine_require SCRIPT PROGRAM...: root, dockerd, docker, busybox-static and PROGRAMs.
private_engine_require() {
	local script=$1 program
	shift
	if [[ "$(id -u)" -ne 0 ]]; then
		echo "error: the benchmark starts a private dockerd, so it needs root" >&2
		echo "help: sudo scripts/$script" >&2
		exit 1
	fi
	for program in dockerd docker "$@"; do
		if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$program" >/dev/null; then
			echo "error: $program is not installed" >&2
			echo "help: apt-get install docker.io busybox-static $*" >&2
			exit 1
		fi
	done
	busybox="$(command -v busybox || true)"
	if [[ -z "$busybox" ]] || ! dpkg -s busybox-static >/dev/null 2>&1; then
		echo "error: busybox-static is not installed (the test image is built from it)" >&2
		echo "help: apt-get install busybox-static" >&2
		exit 1
	fi
}

docker_() { docker -H "unix://$socket" "$@"; }

private_engine_cleanup() {
	local ids
	mapfile -t ids < <(docker_ ps -aq 2>/dev/null)
	if [[ ${#ids[@]} -gt 0 ]]; then
		docker_ rm -f "${ids[@]}" >/dev/null 2>&1 || true
	fi
	kill "$dockerd_pid" 2>/dev/null || true
	wait "$dockerd_pid" 2>/dev/null || true
	rm -rf "$root"
}

private_engine_start() {
	root="$(mktemp -d /tmp/cai-bench-root.XXXXXX)"
	socket="$root/var/run/containai-docker.sock"
	mkdir -p "$root/var/run" "$root/var/lib/containai-docker" "$root/run" "$root/etc/containai"
	PATH="$PATH:/usr/sbin:/sbin" dockerd --host "unix://$socket" \
		--data-root "$root/var/lib/containai-docker" --exec-root "$root/run/docker" \
		--pidfile "$root/run/dockerd.pid" --iptables=false --ip6tables=false --bridge=none \
		>"$root/dockerd.log" 2>&1 &
	dockerd_pid=$!
	trap private_engine_cleanup EXIT
	local _
	for _ in $(seq 100); do
		docker_ version >/dev/null 2>&1 && break
		sleep 0.2
	done

	local image="$root/image" link
	mkdir -p "$image/bin" "$image/etc"
	cp "$busybox" "$image/bin/busybox"
	for link in sh sleep id; do ln -s busybox "$image/bin/$link"; done
	printf 'root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000::/home/agent:/bin/sh\n' >"$image/etc/passwd"
	printf 'root:x:0:\nagent:x:1000:\n' >"$image/etc/group"
	tar -C "$image" -cf "$root/image.tar" .
	docker_ import --change 'ENV PATH=/bin' "$root/image.tar" cai-bench:busybox >/dev/null
}
