#!/usr/bin/env bash
# pin-release.sh: pins the sha256 of every artifact in cai's release manifest.
#
# Owns: downloading the `url` of every `[<component>.assets.<arch>]` table of the manifest
# (default stdlib/release.toml), hashing what arrived and writing the digest as that table's
# `sha256` line, so the checksums cai embeds come from the artifacts themselves and never from a
# hand edit. The release workflow runs it before `cargo build`, which embeds the file.
# Never: changes any other line, or leaves the manifest half-pinned: the file is rewritten only
# after every artifact was fetched.
set -euo pipefail

PROG="scripts/pin-release.sh"

usage() {
	cat <<EOF_USAGE
usage: $PROG [MANIFEST]

Download every artifact named in MANIFEST (default: stdlib/release.toml) and write its sha256
into the manifest. Needs curl and sha256sum.
EOF_USAGE
}

case "${1:-}" in
-h | --help)
	usage
	exit 0
	;;
-*)
	echo "error: unknown option $1" >&2
	echo "help: $PROG [MANIFEST]" >&2
	exit 2
	;;
esac
if [[ $# -gt 1 ]]; then
	echo "error: expected at most one manifest, got $#" >&2
	echo "help: $PROG [MANIFEST]" >&2
	exit 2
fi
manifest="${1:-stdlib/release.toml}"
if [[ ! -f "$manifest" ]]; then
	echo "error: release manifest $manifest does not exist" >&2
	echo "help: run from the repository root, or name the manifest: $PROG stdlib/release.toml" >&2
	exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
out="$work/manifest"
: >"$out"
table=""
tables=0
pinned=0
while IFS= read -r line || [[ -n "$line" ]]; do
	if [[ "$line" =~ ^[[:space:]]*\[([^]]+)\][[:space:]]*$ ]]; then
		table="${BASH_REMATCH[1]}"
		if [[ "$table" == *.assets.* ]]; then
			tables=$((tables + 1))
		fi
	fi
	if [[ "$table" == *.assets.* ]]; then
		# The old digest goes; the new one follows the url line.
		if [[ "$line" =~ ^[[:space:]]*sha256[[:space:]]*= ]]; then
			continue
		fi
		if [[ "$line" =~ ^[[:space:]]*url[[:space:]]*=[[:space:]]*\"([^\"]+)\"[[:space:]]*$ ]]; then
			url="${BASH_REMATCH[1]}"
			echo "$PROG: fetching $url" >&2
			if ! curl --fail --silent --show-error --location --retry 3 \
				--proto '=https,http,file' --output "$work/artifact" "$url"; then
				echo "error: cannot download $url ([$table] in $manifest); nothing was changed" >&2
				echo "help: check that the release is published, then run $PROG $manifest again" >&2
				exit 1
			fi
			sum="$(sha256sum "$work/artifact" | cut -d' ' -f1)"
			printf '%s\nsha256 = "%s"\n' "$line" "$sum" >>"$out"
			pinned=$((pinned + 1))
			continue
		fi
	fi
	printf '%s\n' "$line" >>"$out"
done <"$manifest"

if [[ "$tables" -eq 0 || "$pinned" -ne "$tables" ]]; then
	echo "error: $manifest has $tables asset tables but $pinned url lines in them; nothing was changed" >&2
	echo "help: give every [<component>.assets.<arch>] table one url = \"...\" line" >&2
	exit 1
fi
# In place, so the file keeps its owner and mode.
cat "$out" >"$manifest"
echo "$PROG: pinned $pinned artifacts in $manifest" >&2
