# shellcheck shell=bash
# A real systemd to test `cai` under (sourced by benchmarks, run by the e2e test harness): a Debian
# tree built once with mmdebstrap, booted as a machine with systemd-nspawn, and the fixtures an
# update installs inside it. Nothing here touches the host beyond /var/tmp/cai-e2e, the cgroup
# directories a boot creates and the machine's own processes.
#
#   bash scripts/lib/nspawn.sh cache            # builds (once) and prints the cache directory
#   bash scripts/lib/nspawn.sh boot NAME CGROUP_DIR... -- NSPAWN_ARG...   # execs systemd-nspawn -b
#
# The cache directory, /var/tmp/cai-e2e/<key> (key: a hash of the suite, the package list and the
# recipe version below), holds
#   tree/                       the root file system: minbase + systemd, dbus, docker.io, busybox
#   fixtures/docker-<V>.tgz     a dockerd bundle in the layout of Docker's static tgz (docker/NAME),
#                               made from the tree's docker.io, containerd, runc and tini binaries
#   fixtures/docker-99.0.0.tgz  the same bundle with a dockerd that reports 99.0.0 (a newer bundle)
#   fixtures/docker.version     <V>, the version its dockerd reports (docker.io's without epoch
#                               and Debian revision)
#   fixtures/busybox.tar        a busybox root file system for `docker import` (root, agent:1000)
#   fixtures/sysbox-ce_<V>.linux_<arch>.deb   fake sysbox packages (see nspawn_sysbox_deb)
# It is built in a temporary directory and renamed into place, so concurrent runs never see half
# a tree; the tree is only ever the read-only lower layer of a boot (--volatile=overlay).
#
# Pitfalls this host taught (cgroup v1 "hybrid", PID 1 is not systemd), kept in the boot flags:
# - no host systemd to ask for a scope: --register=no --keep-unit, and the launcher moves itself
#   into its own cgroup first; nspawn then creates <cg>/payload and <cg>/supervisor there.
# - SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1: pure cgroup2 inside (hybrid mounts the v1 controllers
#   read-only, and runc fails creating /sys/fs/cgroup/cpuset/docker/...).
# - --system-call-filter="@keyring bpf": nspawn's seccomp blocks keyctl (runc's session keyring)
#   and bpf (runc's cgroup2 device filter). --private-network grants CAP_NET_ADMIN, which
#   BPF_PROG_QUERY needs.
# - overlay2 cannot sit on an overlayfs root: the engine's data root is bound from the host.
# - systemd-container and mmdebstrap are installed with --no-install-recommends: the recommended
#   libnss-mymachines rewrites the host's nsswitch.conf.

NSPAWN_BASE=${NSPAWN_BASE:-/var/tmp/cai-e2e}
NSPAWN_SUITE=${NSPAWN_SUITE:-bookworm}
# The tree's package sources are the host's own apt sources (the one Debian mirror it reaches):
# the deb822 file of a Debian 12 install, else the one-line list, else Debian's own mirror.
if [[ -z "${NSPAWN_SOURCES:-}" ]]; then
	for NSPAWN_SOURCES in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list \
		http://deb.debian.org/debian; do
		[[ "$NSPAWN_SOURCES" == http* || -s "$NSPAWN_SOURCES" ]] && break
	done
fi
NSPAWN_PACKAGES=systemd,systemd-sysv,dbus,docker.io,busybox-static,procps
# Bump when the tree's post-processing or the fixtures change: a new key builds a new cache.
NSPAWN_RECIPE=8
# The version of the newer dockerd bundle among the fixtures (fixtures/docker-<V>.tgz).
NSPAWN_NEWER_DOCKERD=99.0.0
# A bundle whose dockerd reports this version and otherwise exits 1 at once: an engine that
# never comes up, for the rollback tests.
NSPAWN_DEAD_DOCKERD=99.0.1
# The sysbox builds the tests and the benchmark install: an older and a newer ContainAI build.
NSPAWN_SYSBOX_VERSIONS="0.6.7+containai.20260127 0.6.7+containai.20260301"
# Broken sysbox builds, for the rollback tests (see nspawn_sysbox_deb): VERSION:FLAW.
NSPAWN_SYSBOX_BROKEN="0.6.7+containai.20260302:postinst-fails 0.6.7+containai.20260303:misreports 0.6.7+containai.20260304:refuses-marked"

nspawn_install_hint() {
	echo "apt-get install --no-install-recommends systemd-container mmdebstrap"
}

# nspawn_require: fails with the install command when a program is missing.
nspawn_require() {
	local program
	for program in systemd-nspawn mmdebstrap nsenter dpkg-deb; do
		if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$program" >/dev/null; then
			echo "error: $program is not installed" >&2
			echo "help: $(nspawn_install_hint)" >&2
			return 1
		fi
	done
}

nspawn_key() {
	printf '%s\n' "$NSPAWN_RECIPE" "$NSPAWN_SUITE" "$NSPAWN_PACKAGES" "$NSPAWN_SYSBOX_VERSIONS" "$NSPAWN_SYSBOX_BROKEN" \
		"$(dpkg --print-architecture)" | sha256sum | cut -c1-16
}

nspawn_cache_dir() {
	echo "$NSPAWN_BASE/$(nspawn_key)"
}

# tree_path ROOT PATH: PATH inside ROOT with every symlink resolved inside ROOT (an absolute
# link target names a path of the tree, not of the host).
tree_path() {
	local root=$1 path=$2 target i
	for ((i = 0; i < 40; i++)); do
		if [[ -L "$root$path" ]]; then
			target=$(readlink "$root$path")
			if [[ "$target" == /* ]]; then
				path=$target
			else
				path="$(dirname "$path")/$target"
			fi
		else
			echo "$root$path"
			return 0
		fi
	done
	return 1
}

# nspawn_sysbox_deb OUTDIR VERSION: a fake sysbox-ce package, built with dpkg-deb. Its sysbox-runc
# answers --version in the multi-line format and otherwise runs runc; sysbox-mgr and sysbox-fs are
# simple long-running services; the maintainer scripts start them on install and restart them on
# upgrade, as debhelper's --restart-after-upgrade makes the real package do. While
# /run/cai-e2e/hold-postinst exists, postinst waits (after creating /run/cai-e2e/in-postinst).
# FLAW (optional) makes a broken build: `postinst-fails` (configure exits 1, a dpkg error),
# `misreports` (sysbox-runc --version reports build 20260399 instead of VERSION), `refuses-marked`
# (sysbox-runc refuses to create a container whose OCI config holds CAI_E2E_REFUSE=1).
nspawn_sysbox_deb() {
	local out=$1 version=$2 flaw=${3:-} arch stage reports create_check=
	arch=$(dpkg --print-architecture)
	reports=$version
	[[ "$flaw" == misreports ]] && reports=${version%.*}.20260399
	if [[ "$flaw" == refuses-marked ]]; then
		# shellcheck disable=SC2016 # expanded by the package's sysbox-runc, not here
		create_check='for a in "$@"; do case $prev in --bundle|-b) grep -q CAI_E2E_REFUSE=1 "$a/config.json" 2>/dev/null && { echo "sysbox-runc: refusing a marked container (cai e2e)" >&2; exit 1; };; esac; prev=$a; done'
	fi
	stage=$(mktemp -d)
	mkdir -p "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system"
	cat >"$stage/DEBIAN/control" <<-EOF
		Package: sysbox-ce
		Version: $version-0
		Architecture: $arch
		Maintainer: cai tests <root@localhost>
		Section: admin
		Priority: optional
		Description: fake sysbox for the cai end-to-end tests
		 sysbox-runc reports $version and runs runc.
	EOF
	cat >"$stage/usr/bin/sysbox-runc" <<-EOF
		#!/bin/sh
		if [ "\$1" = --version ]; then
		  printf 'sysbox-runc\n\tedition: \tCommunity Edition (CE)\n\tversion: \t%s\n\tcommit: \tcai-e2e\n\tbuilt at: \tthe cai e2e harness\n\tbuilt by: \tdpkg-deb\n\toci-specs: \t1.0.2-dev\n' '$reports'
		  exit 0
		fi
		$create_check
		exec /usr/sbin/runc "\$@"
	EOF
	for daemon in sysbox-mgr sysbox-fs; do
		printf '#!/bin/sh\n# a stand-in for %s: it only has to stay up\nexec sleep infinity\n' \
			"$daemon" >"$stage/usr/bin/$daemon"
		cat >"$stage/lib/systemd/system/$daemon.service" <<-EOF
			[Unit]
			Description=fake $daemon (cai e2e)
			PartOf=sysbox.service
			[Service]
			Type=simple
			ExecStart=/usr/bin/$daemon
			[Install]
			WantedBy=sysbox.service
		EOF
	done
	cat >"$stage/lib/systemd/system/sysbox.service" <<-'EOF'
		[Unit]
		Description=fake sysbox (cai e2e)
		Wants=sysbox-mgr.service sysbox-fs.service
		After=sysbox-mgr.service sysbox-fs.service
		[Service]
		Type=oneshot
		RemainAfterExit=yes
		ExecStart=/bin/true
		[Install]
		WantedBy=multi-user.target
	EOF
	# debhelper's snippets with --restart-after-upgrade: start on install, restart on upgrade
	# ($2 is the version being replaced), stop only on removal.
	cat >"$stage/DEBIAN/postinst" <<-'EOF'
		#!/bin/sh
		set -e
		# A test holds the package here (the file exists) to interrupt cai mid-install.
		if [ -e /run/cai-e2e/hold-postinst ]; then
		  : > /run/cai-e2e/in-postinst
		  while [ -e /run/cai-e2e/hold-postinst ]; do sleep 0.1; done
		fi
		if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
		  systemctl --system daemon-reload >/dev/null || true
		  systemctl enable sysbox.service sysbox-mgr.service sysbox-fs.service >/dev/null 2>&1 || true
		  if [ -n "$2" ]; then action=restart; else action=start; fi
		  systemctl $action sysbox-fs.service sysbox-mgr.service sysbox.service >/dev/null || true
		fi
		exit 0
	EOF
	if [[ "$flaw" == postinst-fails ]]; then
		sed -i 's/^exit 0$/echo "sysbox-ce postinst: failing on purpose (cai e2e)" >\&2; exit 1/' "$stage/DEBIAN/postinst"
	fi
	cat >"$stage/DEBIAN/prerm" <<-'EOF'
		#!/bin/sh
		set -e
		if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
		  systemctl stop sysbox.service sysbox-mgr.service sysbox-fs.service >/dev/null || true
		fi
		exit 0
	EOF
	chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage"/usr/bin/*
	dpkg-deb --root-owner-group -Zgzip -z1 --build "$stage" "$out/sysbox-ce_${version}.linux_${arch}.deb" >/dev/null
	local status=$?
	rm -rf "$stage"
	return $status
}

# nspawn_fixtures TREE OUT: the dockerd bundle, the busybox image and the sysbox packages.
nspawn_fixtures() {
	local r=$1 out=$2 version name src
	version=$(dpkg-query --admindir="$r/var/lib/dpkg" -W -f '${Version}' docker.io)
	# What its dockerd --version reports (20.10.24+dfsg1): the version without epoch and Debian
	# revision, since cai checks the binary against the version it installs.
	version=${version#*:}
	version=${version%-*}
	local stage
	stage=$(mktemp -d)
	mkdir -p "$stage/docker"
	# Docker's static tgz: docker/NAME for each binary the engine runs.
	for name in dockerd:/usr/sbin/dockerd docker:/usr/bin/docker containerd:/usr/bin/containerd \
		containerd-shim-runc-v2:/usr/bin/containerd-shim-runc-v2 ctr:/usr/bin/ctr \
		runc:/usr/sbin/runc docker-init:/usr/bin/docker-init docker-proxy:/usr/sbin/docker-proxy; do
		src=$(tree_path "$r" "${name#*:}") || src=
		[[ -n "$src" && -f "$src" ]] || {
			echo "error: the tree has no ${name#*:} for the bundle" >&2
			rm -rf "$stage"
			return 1
		}
		install -m 0755 "$src" "$stage/docker/${name%%:*}"
	done
	tar -C "$stage" -cf - docker | gzip -1 >"$out/docker-$version.tgz" || return 1
	echo "$version" >"$out/docker.version"
	# A newer bundle for updates that only replace the bundle: the same binaries, with a dockerd
	# that reports $NSPAWN_NEWER_DOCKERD (cai checks what the binary says) and otherwise runs the
	# tree's own dockerd in its place.
	cat >"$stage/docker/dockerd" <<-EOF
		#!/bin/sh
		if [ "\$1" = --version ]; then echo "Docker version $NSPAWN_NEWER_DOCKERD, build 0ca1e2e"; exit 0; fi
		exec /usr/sbin/dockerd "\$@"
	EOF
	tar -C "$stage" -cf - docker | gzip -1 >"$out/docker-$NSPAWN_NEWER_DOCKERD.tgz" || return 1
	# A bundle whose engine never comes up: its dockerd answers --version and exits 1 otherwise.
	cat >"$stage/docker/dockerd" <<-EOF
		#!/bin/sh
		if [ "\$1" = --version ]; then echo "Docker version $NSPAWN_DEAD_DOCKERD, build 0ca1e2e"; exit 0; fi
		echo "dockerd: failing at once (cai e2e)" >&2
		exit 1
	EOF
	tar -C "$stage" -cf - docker | gzip -1 >"$out/docker-$NSPAWN_DEAD_DOCKERD.tgz" || return 1
	rm -rf "$stage"

	# The image's root: busybox and the links the tests use, root and agent (1000:1000).
	stage=$(mktemp -d)
	mkdir -p "$stage"/{bin,etc,tmp,home/agent}
	cp "$r/bin/busybox" "$stage/bin/busybox"
	for name in sh id sleep ls cat echo true kill ps; do
		ln -s busybox "$stage/bin/$name"
	done
	printf 'root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000:agent:/home/agent:/bin/sh\n' >"$stage/etc/passwd"
	printf 'root:x:0:\nagent:x:1000:\n' >"$stage/etc/group"
	tar -C "$stage" -cf "$out/busybox.tar" . || return 1
	rm -rf "$stage"

	for version in $NSPAWN_SYSBOX_VERSIONS; do
		nspawn_sysbox_deb "$out" "$version" || return 1
	done
	for version in $NSPAWN_SYSBOX_BROKEN; do
		nspawn_sysbox_deb "$out" "${version%%:*}" "${version#*:}" || return 1
	done
	chmod 0755 "$out"
	chmod 0644 "$out"/*
}

# nspawn_cache: builds the cache directory once (or waits for a concurrent build) and prints it.
nspawn_cache() {
	local dir tmp r u
	dir=$(nspawn_cache_dir)
	if [[ -e "$dir/.ready" ]]; then
		echo "$dir"
		return 0
	fi
	nspawn_require || return 1
	mkdir -p "$NSPAWN_BASE"
	tmp=$(mktemp -d "$dir.tmp.XXXXXX") && chmod 0755 "$tmp" || return 1
	r=$tmp/tree
	if ! mmdebstrap --variant=minbase --mode=root --include="$NSPAWN_PACKAGES" \
		"$NSPAWN_SUITE" "$r" "$NSPAWN_SOURCES" >"$tmp/build.log" 2>&1; then
		echo "error: mmdebstrap failed; its log:" >&2
		tail -n 30 "$tmp/build.log" >&2
		rm -rf "$tmp"
		return 1
	fi
	echo cai-e2e >"$r/etc/hostname"
	# No distro engine: only the unit cai installs runs one.
	for u in docker.service docker.socket containerd.service e2scrub_reap.service \
		e2scrub_all.timer apt-daily.timer apt-daily-upgrade.timer fstrim.timer; do
		ln -sf /dev/null "$r/etc/systemd/system/$u"
	done
	rm -f "$r"/etc/systemd/system/{multi-user,sockets}.target.wants/{docker,containerd,e2scrub_reap}.{service,socket}
	mkdir -p "$r/etc/systemd/journald.conf.d" "$r/srv/cai-e2e" "$r/var/lib/containai-docker" \
		"$r/var/lib/containai"
	printf '[Journal]\nStorage=volatile\n' >"$r/etc/systemd/journald.conf.d/volatile.conf"
	: >"$r/etc/machine-id"
	# The bind target for the cai under test.
	: >"$r/usr/local/bin/cai"
	mkdir -p "$tmp/fixtures"
	if ! nspawn_fixtures "$r" "$tmp/fixtures"; then
		rm -rf "$tmp"
		return 1
	fi
	touch "$tmp/.ready"
	# Atomic: a concurrent build that renamed first wins, and this one is dropped.
	if ! mv -T "$tmp" "$dir" 2>/dev/null; then
		rm -rf "$tmp"
		[[ -e "$dir/.ready" ]] || return 1
	fi
	echo "$dir"
}

# nspawn_boot_exec NAME CGROUP_DIR... -- NSPAWN_ARG...: moves this shell into the cgroup
# directories (created by the caller), then execs systemd-nspawn booting machine NAME with the
# flags this host needs. NSPAWN_ARGs name the root: `--directory=TREE --volatile=overlay` (a
# throw-away overlay over the cached tree), or `--directory=DIR` for a root the caller keeps. The
# caller owns the process and tears it down (SIGTERM: a clean poweroff).
nspawn_boot_exec() {
	local name=$1
	shift
	while [[ $# -gt 0 && "$1" != -- ]]; do
		echo $$ >"$1/cgroup.procs" || return 1
		shift
	done
	[[ "${1:-}" == -- ]] && shift
	SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 exec systemd-nspawn -b -M "$name" \
		--register=no --keep-unit --private-network \
		--system-call-filter="@keyring bpf" --console=passive "$@"
}

# nspawn_machine_start NAME CAI: boots machine NAME (volatile root over the cached tree, CAI bound
# at /usr/local/bin/cai, the fixtures at /srv/cai-e2e, the engine's data root and
# /var/lib/containai on the host) and waits until its systemd runs. Sets NSPAWN_PID (nspawn),
# NSPAWN_INIT (the machine's PID 1 on the host), NSPAWN_RUN and NSPAWN_CGROUPS for
# nspawn_machine_stop, which the caller must run (e.g. from an EXIT trap).
nspawn_machine_start() {
	local name=$1 cai=$2 cache h i state
	cache=$(nspawn_cache) || return 1
	NSPAWN_NAME=$name
	NSPAWN_RUN=$NSPAWN_BASE/runs/$name
	mkdir -p "$NSPAWN_RUN/data-root" "$NSPAWN_RUN/state"
	NSPAWN_CGROUPS=()
	if [[ "$(stat -fc %T /sys/fs/cgroup)" == cgroup2fs ]]; then
		NSPAWN_CGROUPS=("/sys/fs/cgroup/$name")
	else
		for h in systemd unified; do
			[[ -d /sys/fs/cgroup/$h ]] && NSPAWN_CGROUPS+=("/sys/fs/cgroup/$h/$name")
		done
	fi
	mkdir -p "${NSPAWN_CGROUPS[@]}"
	bash "${BASH_SOURCE[0]}" boot "$name" "${NSPAWN_CGROUPS[@]}" -- \
		--directory="$cache/tree" --volatile=overlay \
		--bind-ro="$cai:/usr/local/bin/cai" --bind-ro="$cache/fixtures:/srv/cai-e2e" \
		--bind="$NSPAWN_RUN/data-root:/var/lib/containai-docker" \
		--bind="$NSPAWN_RUN/state:/var/lib/containai" \
		>"$NSPAWN_RUN/nspawn.log" 2>&1 </dev/null &
	NSPAWN_PID=$!
	NSPAWN_INIT=
	for ((i = 0; i < 900; i++)); do
		NSPAWN_INIT=$(ps -o pid= --ppid "$NSPAWN_PID" | tr -d ' ' | head -1 || true)
		if [[ -n "$NSPAWN_INIT" ]]; then
			state=$(nsenter -t "$NSPAWN_INIT" -a systemctl is-system-running 2>/dev/null || true)
			[[ "$state" == running || "$state" == degraded ]] && return 0
		fi
		kill -0 "$NSPAWN_PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "error: machine $name did not boot; its log:" >&2
	cat "$NSPAWN_RUN/nspawn.log" >&2
	return 1
}

# nspawn_in CMD...: runs CMD inside the machine, in a clean environment.
nspawn_in() {
	nsenter -t "$NSPAWN_INIT" -a env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root LANG=C.UTF-8 "$@"
}

# nspawn_machine_stop: powers the machine off (SIGTERM to nspawn) and removes its cgroup and run
# directories. Safe to call twice.
nspawn_machine_stop() {
	# Also from an EXIT trap of a `set -e` script: every step runs, whatever the one before did.
	local - d i
	set +e
	if [[ -n "${NSPAWN_PID:-}" ]] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
		kill -TERM "$NSPAWN_PID"
		for ((i = 0; i < 900; i++)); do
			kill -0 "$NSPAWN_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$NSPAWN_PID" 2>/dev/null && kill -KILL "$NSPAWN_PID"
		wait "$NSPAWN_PID" 2>/dev/null
	fi
	NSPAWN_PID=
	for d in "${NSPAWN_CGROUPS[@]}"; do
		for ((i = 0; i < 50; i++)); do
			[[ -d "$d" ]] || break
			find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
			[[ -d "$d" ]] && sleep 0.1
		done
	done
	[[ -n "${NSPAWN_RUN:-}" ]] && rm -rf "$NSPAWN_RUN"
	# nspawn's own runtime directories, when empty (no host systemd owns them here).
	rmdir "$NSPAWN_BASE/runs" "/run/systemd/nspawn/propagate/${NSPAWN_NAME:-}" \
		/run/systemd/nspawn/{locks,propagate,unix-export} /run/systemd/nspawn 2>/dev/null
	return 0
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
	set -uo pipefail
	case "${1:-}" in
	cache) nspawn_cache ;;
	boot)
		shift
		nspawn_boot_exec "$@"
		;;
	*)
		echo "usage: $0 cache | boot NAME CGROUP_DIR... -- NSPAWN_ARG..." >&2
		exit 2
		;;
	esac
fi
