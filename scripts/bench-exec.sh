#!/usr/bin/env bash
# Benchmark of `cai exec`: prints, in one run against the same sshd, the time of 20 x
# `cai exec NAME -- true` against 20 x `ssh` with the same options and a ControlMaster (what
# `cai exec` wraps; goal: ratio <= 1.2), 20 x bare `ssh` (a new connection each time) and
# 20 x `docker exec NAME true` on the same engine. `cai` and the multiplexed `ssh` start cold
# (no connection left from an earlier run): the first command of each makes the connection that
# the next ones reuse.
#
# Sets up what the test suite uses: a real sshd on a free loopback port serving the local user
# `agent` (created when missing) and a private dockerd under a temporary root with one labelled
# container whose containai.ssh-port label points at that sshd. Needs root, docker.io,
# openssh-server, openssh-client and busybox-static (sudo ./scripts/test.sh installs them).
# Extra arguments: the number of runs (default 20).
set -euo pipefail

cd "$(dirname "$0")/.."
runs="${1:-20}"

if [[ "$(id -u)" -ne 0 ]]; then
	echo "error: the benchmark starts sshd and a private dockerd, so it needs root" >&2
	echo "help: sudo ./scripts/bench-exec.sh" >&2
	exit 1
fi
export PATH="$PATH:/usr/sbin:/sbin"
for program in sshd ssh ssh-keygen dockerd docker busybox python3; do
	if ! command -v "$program" >/dev/null 2>&1; then
		echo "error: $program is missing" >&2
		echo "help: apt-get install openssh-server openssh-client docker.io busybox-static python3" >&2
		exit 1
	fi
done

cargo build --release --locked --quiet
cai="$PWD/target/release/cai"

work="$(mktemp -d /tmp/cai-bench-exec.XXXXXX)"
chmod 755 "$work"
sshd_pid=""
dockerd_pid=""
cleanup() {
	if [[ -n "$dockerd_pid" ]]; then
		docker -H "unix://$work/root/var/run/containai-docker.sock" rm -f bench-agent >/dev/null 2>&1 || true
		kill "$dockerd_pid" 2>/dev/null || true
		wait "$dockerd_pid" 2>/dev/null || true
	fi
	if [[ -n "$sshd_pid" ]]; then
		# The per-connection processes (two levels below the listener) hold the connection
		# `cai` keeps open; ending them ends it and its ssh process.
		for child in $(pgrep -P "$sshd_pid" || true); do
			pkill -KILL -P "$child" 2>/dev/null || true
			kill -KILL "$child" 2>/dev/null || true
		done
		kill "$sshd_pid" 2>/dev/null || true
		wait "$sshd_pid" 2>/dev/null || true
	fi
	if [[ -n "${mux_opts+x}" ]]; then
		ssh "${mux_opts[@]}" "${ssh_opts[@]}" -O exit >/dev/null 2>&1 || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

# The user and workspace the containers' SSH servers serve.
flock /run/lock/cai-test-agent.lock sh -c '
	id -u agent >/dev/null 2>&1 || useradd -m -s /bin/bash -p "*" agent
	if grep -q "^agent:!" /etc/shadow; then usermod -p "*" agent; fi
	mkdir -p /home/agent/workspace /run/sshd
	chown agent:agent /home/agent/workspace
'

ssh-keygen -q -t ed25519 -N '' -f "$work/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$work/client_key"
install -m 0644 "$work/client_key.pub" "$work/authorized_keys"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cat >"$work/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $work/host_key
PidFile none
AuthorizedKeysFile $work/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowUsers agent
PrintMotd no
PrintLastLog no
EOF
"$(command -v sshd)" -D -e -f "$work/sshd_config" 2>"$work/sshd.log" &
sshd_pid=$!

root="$work/root"
mkdir -p "$root/var/run" "$root/var/lib/containai-docker" "$root/run"
dockerd --host "unix://$root/var/run/containai-docker.sock" --data-root "$root/var/lib/containai-docker" \
	--exec-root "$root/run/docker" --pidfile "$root/run/dockerd.pid" \
	--iptables=false --ip6tables=false --bridge=none >"$work/dockerd.log" 2>&1 &
dockerd_pid=$!
docker=(docker -H "unix://$root/var/run/containai-docker.sock")
for _ in $(seq 600); do
	"${docker[@]}" version >/dev/null 2>&1 && break
	sleep 0.1
done
mkdir -p "$work/image/bin"
cp "$(command -v busybox)" "$work/image/bin/busybox"
ln -s busybox "$work/image/bin/sleep"
ln -s busybox "$work/image/bin/true"
tar -C "$work/image" -cf "$work/image.tar" .
"${docker[@]}" import --change 'ENV PATH=/bin' "$work/image.tar" cai-bench:busybox >/dev/null
"${docker[@]}" run -d --network none --name bench-agent --label containai.managed=true \
	--label "containai.ssh-port=$port" cai-bench:busybox sleep 3600 >/dev/null

home="$work/home"
mkdir -p "$home/.config/containai"
install -m 0600 "$work/client_key" "$home/.config/containai/id_containai"
echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$work/host_key.pub")" >"$home/.config/containai/known_hosts"

# The options cai gives ssh, without its connection reuse.
ssh_opts=(-F /dev/null
	-o "IdentityFile=$home/.config/containai/id_containai" -o IdentitiesOnly=yes -o IdentityAgent=none
	-o "UserKnownHostsFile=$home/.config/containai/known_hosts" -o GlobalKnownHostsFile=/dev/null
	-o StrictHostKeyChecking=yes -o "HostKeyAlias=[127.0.0.1]:$port" -o CheckHostIP=no
	-o UpdateHostKeys=no -o VerifyHostKeyDNS=no -o BatchMode=yes -o PasswordAuthentication=no
	-o KbdInteractiveAuthentication=no -o PubkeyAuthentication=yes -o LogLevel=ERROR
	-o ConnectTimeout=5 -o ServerAliveInterval=15 -o ServerAliveCountMax=4 -o ForwardAgent=no
	-o ForwardX11=no -o ClearAllForwardings=yes -o EscapeChar=none -o User=agent -o "Port=$port"
	-T 127.0.0.1)
# The same command line cai sends, so both sides run the same remote work.
remote="exec bash -lc 'cd /home/agent/workspace || exit 1
exec \"\$@\"' bash 'true'"

# The same options with a connection kept, as cai keeps one: its own master socket.
mux_opts=(-o ControlMaster=auto -o "ControlPath=$work/mux-%C" -o ControlPersist=60)

cai_exec() {
	HOME="$home" XDG_RUNTIME_DIR="$home" "$cai" --root "$root" exec bench-agent -- true </dev/null
}
bare_ssh() {
	# The remote command is built here on purpose: the same string cai sends.
	# shellcheck disable=SC2029
	ssh "${ssh_opts[@]}" "$remote" </dev/null
}

mux_ssh() {
	# shellcheck disable=SC2029
	ssh "${mux_opts[@]}" "${ssh_opts[@]}" "$remote" </dev/null
}
docker_exec() {
	"${docker[@]}" exec bench-agent true </dev/null
}

# Each must work before they are timed; binaries and pages warm, no connection kept.
bare_ssh
docker_exec
"$cai" exec --help >/dev/null

# Interleaved, one command of each per round, so a load that comes and goes on the machine
# weighs on all four alike. Microseconds from bash's clock, no process per reading.
cai_us=0 mux_us=0 ssh_us=0 docker_us=0
for _ in $(seq "$runs"); do
	start=${EPOCHREALTIME/./}
	cai_exec
	cai_us=$((cai_us + ${EPOCHREALTIME/./} - start))
	start=${EPOCHREALTIME/./}
	mux_ssh
	mux_us=$((mux_us + ${EPOCHREALTIME/./} - start))
	start=${EPOCHREALTIME/./}
	bare_ssh
	ssh_us=$((ssh_us + ${EPOCHREALTIME/./} - start))
	start=${EPOCHREALTIME/./}
	docker_exec
	docker_us=$((docker_us + ${EPOCHREALTIME/./} - start))
done
cai_ns=$((cai_us * 1000)) mux_ns=$((mux_us * 1000)) ssh_ns=$((ssh_us * 1000)) docker_ns=$((docker_us * 1000))

awk -v c="$cai_ns" -v m="$mux_ns" -v s="$ssh_ns" -v d="$docker_ns" -v n="$runs" 'BEGIN {
	printf "%d x cai exec NAME -- true:             %8.1f ms (%.1f ms each)\n", n, c / 1e6, c / 1e6 / n
	printf "%d x ssh, same options, ControlMaster:  %8.1f ms (%.1f ms each)\n", n, m / 1e6, m / 1e6 / n
	printf "%d x bare ssh, same options:            %8.1f ms (%.1f ms each)\n", n, s / 1e6, s / 1e6 / n
	printf "%d x docker exec NAME true:             %8.1f ms (%.1f ms each)\n", n, d / 1e6, d / 1e6 / n
	printf "ratio cai / multiplexed ssh: %.2f (goal <= 1.2)\n", c / m
	printf "ratio cai / bare ssh:        %.2f\n", c / s
	printf "ratio cai / docker exec:     %.2f\n", c / d
}'
