#!/usr/bin/env bash
# Runs what CI runs, on this machine: `cargo fmt --check`, `cargo clippy --all-targets -D warnings`,
# `cargo check` and `cargo clippy` of both macOS targets (type-checked here, so a Linux-only call
# cannot land), and the whole cai test suite.
#
# The tests use real components: a private dockerd, busybox-static for the test image, sshd,
# systemd-analyze, dpkg-deb, and a machine booted with systemd-nspawn from a tree mmdebstrap
# builds. This script installs the Debian packages that are missing, finds
# the Rust toolchain (also under sudo, which resets PATH) with rustfmt and clippy, checks
# formatting and lints, then runs `cargo test`. Extra arguments go to cargo test. It never skips a
# test: a component that is still missing makes tests fail with the command that installs it.
#
# A failed format or lint check is reported and remembered, and the tests still run, so one run
# shows everything that is wrong. The last line is `N passed, N failed`, which CI reads: it counts
# every test, plus the format and lint checks as one each, so it never says `0 failed` for a run
# that failed.
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
	[ssh]=openssh-client
	[systemd-analyze]=systemd
	[dpkg-deb]=dpkg-dev
	[tar]=tar
	[git]=git
	[make]=make
	# The loopback HTTP server that serves artifacts to the fetch tests (tests/support).
	[python3]=python3
	# The end-to-end tests boot a machine with systemd as PID 1 (tests/e2e_systemd.rs).
	[systemd-nspawn]=systemd-container
	[mmdebstrap]=mmdebstrap
	# The Ansible collection's tests (tests/ansible.rs).
	[ansible-playbook]=ansible-core
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
# The --json schemas are checked with the system python3's jsonschema (tests/ansible.rs).
if ! /usr/bin/python3 -c 'import jsonschema' >/dev/null 2>&1; then
	missing+=(python3-jsonschema)
fi
if [[ ${#missing[@]} -gt 0 ]]; then
	# --no-install-recommends matters: systemd-container recommends libnss-mymachines, which
	# rewrites this machine's nsswitch.conf.
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

# The format and lint checks need these components; a rustup toolchain can add them.
# cargo subcommand -> rustup component that provides it
declare -A components=([fmt]=rustfmt [clippy]=clippy)
for subcommand in "${!components[@]}"; do
	component="${components[$subcommand]}"
	if ! cargo "$subcommand" --version >/dev/null 2>&1 && command -v rustup >/dev/null 2>&1; then
		echo "test.sh: adding the $component component" >&2
		rustup component add "$component" >&2
	fi
	if ! cargo "$subcommand" --version >/dev/null 2>&1; then
		echo "error: cargo $subcommand is not available, and CI runs it" >&2
		echo "help: rustup component add $component, then run sudo ./scripts/test.sh again" >&2
		exit 1
	fi
done

# macOS is type-checked here: the standard libraries of both Apple targets (no Apple C compiler
# is needed: no dependency builds C for macOS).
macos_targets=(aarch64-apple-darwin x86_64-apple-darwin)
if command -v rustup >/dev/null 2>&1; then
	installed_targets="$(rustup target list --installed)"
	for target in "${macos_targets[@]}"; do
		if ! grep -qx "$target" <<<"$installed_targets"; then
			echo "test.sh: adding the $target target" >&2
			rustup target add "$target" >&2
		fi
	done
fi

export PATH="$PATH:/usr/sbin:/sbin"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
checks_passed=0
checks_failed=()

if cargo fmt --check; then
	checks_passed=$((checks_passed + 1))
else
	echo "error: cargo fmt --check found unformatted code (the diff is above)" >&2
	echo "help: cargo fmt" >&2
	checks_failed+=("cargo fmt --check|cargo fmt")
fi
if cargo clippy --all-targets --locked -- -D warnings; then
	checks_passed=$((checks_passed + 1))
else
	echo "error: cargo clippy found warnings or errors (listed above)" >&2
	echo "help: fix them, then cargo clippy --all-targets --locked -- -D warnings" >&2
	checks_failed+=("cargo clippy|cargo clippy --all-targets --locked -- -D warnings")
fi
for target in "${macos_targets[@]}"; do
	if cargo check --all-targets --locked --target "$target" &&
		cargo clippy --all-targets --locked --target "$target" -- -D warnings; then
		checks_passed=$((checks_passed + 1))
	else
		echo "error: cai does not build cleanly for $target (listed above)" >&2
		echo "help: keep Linux-only calls behind #[cfg(target_os = \"linux\")], then cargo clippy --all-targets --locked --target $target -- -D warnings" >&2
		checks_failed+=("cargo check/clippy --target $target|rustup target add $target; cargo clippy --all-targets --locked --target $target -- -D warnings")
	fi
done

# The machine's tree for tests/e2e_systemd.rs, built once and cached under /var/tmp/cai-e2e
# (about 30 s the first time); a failure here shows again, with its cause, in those tests.
if ! bash scripts/lib/nspawn.sh cache >/dev/null; then
	echo "warning: building the systemd test machine's tree failed; tests/e2e_systemd.rs will fail" >&2
fi

cargo test --locked --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?

# Repeated here because the test output buries them.
for check in "${checks_failed[@]}"; do
	echo "error: ${check%%|*} failed (its output is above the tests)" >&2
	echo "help: ${check#*|}" >&2
done
if [[ ${#checks_failed[@]} -gt 0 ]]; then
	status=1
fi
# One closing line for the whole run, summed over every test binary. A cargo test that failed
# without a failing test (a build error) counts as one failure.
awk -v cp="$checks_passed" -v cf="${#checks_failed[@]}" -v status="$status" '
	/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
	END { if (status != 0 && f + cf == 0) f = 1; printf "%d passed, %d failed\n", p + cp, f + cf }' "$log"
exit "$status"
