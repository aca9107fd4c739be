#!/usr/bin/env bash
# Runs the whole cai test suite on this machine, as CI does.
#
# The tests use real components: a private dockerd, busybox-static for the test image, sshd,
# systemd-analyze and dpkg-deb. This script installs the Debian packages that are missing, finds
# the Rust toolchain (also under sudo, which resets PATH), then runs `cargo test`. Extra arguments
# go to cargo test. It never skips a test: a component that is still missing makes tests fail
# with the command that installs it.
set -euo pipefail

cd "$(dirname "$0")/.."

if [[ "$(id -u)" -ne 0 ]]; then
	echo "error: the tests start a private dockerd and change file ownership, so they need root" >&2
	echo "help: sudo ./scripts/test.sh" >&2
	exit 1
fi

# program -> Debian package that provides it
declare -A needs=(
	[dockerd]=docker.io
	[sshd]=openssh-server
	[systemd-analyze]=systemd
	[dpkg-deb]=dpkg-dev
	[tar]=tar
	[git]=git
	[make]=make
)
missing=()
for program in "${!needs[@]}"; do
	if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$program" >/dev/null 2>&1; then
		missing+=("${needs[$program]}")
	fi
done
# busybox must be the static build: the test image has no libc.
if ! dpkg -s busybox-static >/dev/null 2>&1; then
	missing+=(busybox-static)
fi
if [[ ${#missing[@]} -gt 0 ]]; then
	echo "test.sh: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# sudo resets PATH; look for the invoking user's toolchain too.
if ! command -v cargo >/dev/null 2>&1; then
	for home in "${CARGO_HOME:-}" "$(getent passwd "${SUDO_USER:-root}" | cut -d: -f6)/.cargo" /root/.cargo; do
		if [[ -n "$home" && -x "$home/bin/cargo" ]]; then
			export CARGO_HOME="$home"
			export RUSTUP_HOME="${RUSTUP_HOME:-$(dirname "$home")/.rustup}"
			export PATH="$home/bin:$PATH"
			break
		fi
	done
fi
if ! command -v cargo >/dev/null 2>&1; then
	echo "error: cargo not found" >&2
	echo "help: install Rust with rustup (https://rustup.rs), then run sudo ./scripts/test.sh again" >&2
	exit 1
fi

export PATH="$PATH:/usr/sbin:/sbin"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --locked --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
# One closing line for the whole suite, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
