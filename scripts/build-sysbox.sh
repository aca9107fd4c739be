#!/usr/bin/env bash
# build-sysbox.sh: builds the ContainAI sysbox-ce .deb from a sysbox checkout and its
# sysbox-pkgr submodule, with the binary package depending on fuse3 and never on fuse.
#
# Owns: fetching the sources, stamping the version, running the packaging, checking the result.
# Never: edits control files itself. The fuse -> fuse3 patch lives once, in Rust, behind
# `cai packaging patch-control DIR`; this script only calls it, so the build, the CI workflow and
# the tests all exercise the same code.
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd -- "$SCRIPT_DIR/.." && pwd)"
PROG="scripts/build-sysbox.sh"

usage() {
	cat <<EOF
usage: $PROG [OPTIONS]
       $PROG --patch-only DIR
       $PROG --verify-deb DEB...

Build the ContainAI sysbox-ce .deb: clone sysbox with its sysbox-pkgr submodule, patch every
deb/*/control so the binary package depends on fuse3 and not on fuse, stamp the version with a
ContainAI suffix, run the packaging (needs docker, git, make) and check the package.

Options (environment variable in brackets):
  --repo URL          sysbox repository to clone [SYSBOX_REPO]
                      (default: https://github.com/nestybox/sysbox.git)
  --branch NAME       branch or tag to build [SYSBOX_BRANCH] (default: master)
  --suffix SUFFIX     version suffix [SYSBOX_VERSION_SUFFIX] (default: +containai.YYYYMMDD, UTC)
  --source DIR        build this existing checkout instead of cloning [SYSBOX_SOURCE]
  --workdir DIR       where to clone [SYSBOX_WORKDIR] (default: $REPO_ROOT/target/sysbox-build)
  --out DIR           where to copy the .deb [SYSBOX_OUT] (default: $REPO_ROOT/dist)
  --patch-only DIR    only patch every deb/*/control under DIR, verify, and exit
  --verify-deb DEB... only check that each package's Depends lists fuse3 and not fuse
  -h, --help          show this help

The patch runs as \`cai packaging patch-control DIR\`: \$CAI if set, else cai on PATH, else
cai built from this repository with cargo.

Exit status: 0 on success, 1 on any failure, 2 on a usage error.
EOF
}

die() {
	# die MESSAGE [HELP]: one-line error, optional next step, exit 1.
	printf 'error: %s\n' "$1" >&2
	if [[ $# -gt 1 ]]; then
		printf 'help: %s\n' "$2" >&2
	fi
	exit 1
}

usage_error() {
	printf 'error: %s\n' "$1" >&2
	printf 'help: run %s --help\n' "$PROG" >&2
	exit 2
}

note() {
	printf '%s: %s\n' "$PROG" "$1" >&2
}

need_tool() {
	command -v "$1" >/dev/null 2>&1 || die "$1 not found on PATH, the sysbox build needs it" "$2"
}

# Prints the cai command to use. A cai on PATH is trusted as is; building from this repository
# is the fallback so that a fresh checkout works without an install step.
find_cai() {
	if [[ -n "${CAI:-}" ]]; then
		[[ -x "$CAI" ]] || die "CAI is set to $CAI, which is not an executable file" \
			"unset CAI or point it at a built cai binary"
		printf '%s\n' "$CAI"
		return
	fi
	if command -v cai >/dev/null 2>&1; then
		command -v cai
		return
	fi
	command -v cargo >/dev/null 2>&1 ||
		die "no cai to run: CAI is unset, cai is not on PATH and cargo is missing" \
			"install Rust (cargo), or set CAI=/path/to/cai"
	note "building cai with cargo (set CAI to skip this)"
	cargo build --release --quiet --manifest-path "$REPO_ROOT/Cargo.toml" >&2 ||
		die "cargo build of cai failed" "run cargo build --release in $REPO_ROOT to see why"
	local built="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/cai"
	[[ -x "$built" ]] || die "cargo build finished but $built is missing"
	printf '%s\n' "$built"
}

patch_tree() {
	local dir=$1 cai
	[[ -d "$dir" ]] || die "$dir is not a directory" "pass a directory holding deb/<package>/control files"
	# Checked explicitly: callers may run this under `||`, where set -e does not apply.
	cai="$(find_cai)" || exit 1
	# cai prints one line per file and names the file, package and field on failure.
	"$cai" packaging patch-control "$dir"
}

# Sets REL_NAME to the package name an alternative starts with (empty for ${substvars}).
relation_name() {
	# The name ends where an arch qualifier, version, arch list or profile starts.
	local re='^[[:space:]]*([a-z0-9][a-z0-9+.-]*)([[:space:]:([<]|$)'
	REL_NAME=""
	if [[ "$1" =~ $re ]]; then
		REL_NAME="${BASH_REMATCH[1]}"
	fi
}

# Checks one built package. The check is per relation and per alternative, on exact names, so
# neither fuse3 nor fuse-overlayfs can pass for fuse, and fuse3 only counts as a relation of its
# own (inside `fuse3 | x` it would not guarantee fusermount3).
verify_deb() {
	local deb=$1 depends rel alt has_fuse3=0
	local -a rels alts
	[[ -f "$deb" ]] || die "$deb: no such package file"
	need_tool dpkg-deb "apt-get install dpkg-dev"
	depends="$(dpkg-deb -f "$deb" Depends)" || die "$deb: dpkg-deb cannot read its control fields"
	depends="${depends//$'\n'/ }"
	IFS=',' read -r -a rels <<<"$depends"
	for rel in "${rels[@]}"; do
		IFS='|' read -r -a alts <<<"$rel"
		for alt in "${alts[@]}"; do
			relation_name "$alt"
			if [[ "$REL_NAME" == fuse ]]; then
				die "$deb: Depends still lists fuse: $depends"
			fi
		done
		if [[ ${#alts[@]} -eq 1 ]]; then
			relation_name "${alts[0]}"
			if [[ "$REL_NAME" == fuse3 ]]; then
				has_fuse3=1
			fi
		fi
	done
	[[ $has_fuse3 -eq 1 ]] || die "$deb: Depends still lacks fuse3: $depends"
	printf 'ok %s: Depends: %s\n' "$deb" "$depends"
}

# Stamps VERSION with the suffix. The packaging takes the version from VERSION only for an
# "unreleased" top entry of CHANGELOG.md, so one is added when the top entry is a release.
stamp_version() {
	local src=$1 suffix=$2 base full
	[[ -f "$src/VERSION" ]] || die "$src/VERSION is missing, is $src a sysbox checkout?"
	base="$(tr -d '[:space:]' <"$src/VERSION")"
	[[ -n "$base" ]] || die "$src/VERSION is empty"
	# A rebuild of the same checkout must not stack suffixes.
	base="${base%"$suffix"}"
	full="$base$suffix"
	printf '%s\n' "$full" >"$src/VERSION"
	if [[ -f "$src/CHANGELOG.md" ]] && ! grep -m1 '^## ' "$src/CHANGELOG.md" | grep -q unreleased; then
		local tmp
		tmp="$(mktemp "$src/CHANGELOG.md.XXXXXX")"
		awk -v version="$full" '
			!done && /^## / {
				print "## [" version "] - unreleased"
				print "### Changed"
				print " * ContainAI build: the package depends on fuse3 instead of fuse."
				print ""
				done = 1
			}
			{ print }
		' "$src/CHANGELOG.md" >"$tmp"
		mv -- "$tmp" "$src/CHANGELOG.md"
	fi
	note "version $full"
}

build() {
	local repo=$1 branch=$2 suffix=$3 source=$4 workdir=$5 out=$6 src pkgr
	[[ "$suffix" =~ ^[A-Za-z0-9.+~-]*$ ]] ||
		usage_error "--suffix $suffix has characters a Debian version cannot hold (allowed: A-Z a-z 0-9 . + ~ -)"
	need_tool git "apt-get install git"
	need_tool make "apt-get install make"
	need_tool docker "install Docker Engine; the packaging builds inside containers"
	docker info >/dev/null 2>&1 || die "docker is installed but the daemon is not reachable" \
		"start it (systemctl start docker) or run as a user in the docker group"
	# The packaging mounts ~/.gitconfig into its build container and takes the changelog author
	# from it; without the file, docker would create a directory in its place.
	[[ -f "$HOME/.gitconfig" ]] || die "$HOME/.gitconfig is missing, the package changelog takes its author from it" \
		"git config --global user.name 'Your Name' && git config --global user.email you@example.com"

	if [[ -n "$source" ]]; then
		src="$(cd -- "$source" && pwd)" || die "--source $source is not a directory"
	else
		src="$workdir/sysbox"
		[[ ! -e "$src" ]] || die "$src already exists" \
			"remove it (rm -rf $src), pass another --workdir, or build it with --source $src"
		mkdir -p -- "$workdir"
		note "cloning $repo ($branch) into $src"
		# Submodules may be declared with ssh URLs; https works without keys.
		git -c "url.https://github.com/.insteadOf=git@github.com:" \
			clone --recursive --branch "$branch" -- "$repo" "$src" ||
			die "git clone of $repo ($branch) failed" "check --repo and --branch"
	fi
	pkgr="$src/sysbox-pkgr"
	[[ -d "$pkgr/deb" ]] || die "$pkgr/deb is missing, the checkout lacks its sysbox-pkgr submodule" \
		"git -C $src submodule update --init --recursive"

	patch_tree "$pkgr" || die "patching the control files under $pkgr failed (see above)"
	stamp_version "$src" "$suffix"

	# The packaging reads the sources through sources/sysbox; point it at this checkout.
	mkdir -p -- "$pkgr/sources"
	ln -sfn -- "$src" "$pkgr/sources/sysbox"
	# The deb/ Makefile is driven directly: `clean` first so no earlier package can be picked up
	# below, then `generic`, the distribution-independent package. Two runs, because a single
	# run would not notice that clean removed the sources it already checked.
	note "running make clean generic in $pkgr/deb"
	make -C "$pkgr/deb" EDITION=ce clean || die "make clean in $pkgr/deb failed (see make output above)"
	make -C "$pkgr/deb" EDITION=ce generic || die "the sysbox packaging failed (see make output above)"

	local -a debs
	mapfile -t debs < <(find "$pkgr/deb/build" -type f -name 'sysbox-ce_*.deb' 2>/dev/null | sort)
	[[ ${#debs[@]} -gt 0 ]] || die "the packaging finished but left no sysbox-ce_*.deb under $pkgr/deb/build"
	mkdir -p -- "$out"
	local deb
	for deb in "${debs[@]}"; do
		cp -- "$deb" "$out/"
		verify_deb "$out/$(basename -- "$deb")"
	done
}

main() {
	local repo="${SYSBOX_REPO:-https://github.com/nestybox/sysbox.git}"
	local branch="${SYSBOX_BRANCH:-master}"
	local suffix="${SYSBOX_VERSION_SUFFIX:-+containai.$(date -u +%Y%m%d)}"
	local source="${SYSBOX_SOURCE:-}"
	local workdir="${SYSBOX_WORKDIR:-$REPO_ROOT/target/sysbox-build}"
	local out="${SYSBOX_OUT:-$REPO_ROOT/dist}"
	local patch_only="" verify=0
	local -a debs=()

	while [[ $# -gt 0 ]]; do
		case "$1" in
		-h | --help)
			usage
			exit 0
			;;
		--repo | --branch | --suffix | --source | --workdir | --out | --patch-only)
			[[ $# -ge 2 ]] || usage_error "$1 needs a value"
			case "$1" in
			--repo) repo=$2 ;;
			--branch) branch=$2 ;;
			--suffix) suffix=$2 ;;
			--source) source=$2 ;;
			--workdir) workdir=$2 ;;
			--out) out=$2 ;;
			--patch-only) patch_only=$2 ;;
			esac
			shift 2
			;;
		--verify-deb)
			verify=1
			shift
			debs=("$@")
			break
			;;
		*)
			usage_error "unknown argument $1"
			;;
		esac
	done

	if [[ $verify -eq 1 ]]; then
		[[ ${#debs[@]} -gt 0 ]] || usage_error "--verify-deb needs at least one .deb"
		local deb
		for deb in "${debs[@]}"; do
			verify_deb "$deb"
		done
		return
	fi
	if [[ -n "$patch_only" ]]; then
		patch_tree "$patch_only"
		return
	fi
	build "$repo" "$branch" "$suffix" "$source" "$workdir" "$out"
}

main "$@"
