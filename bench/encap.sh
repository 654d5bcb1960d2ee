#!/usr/bin/env bash
# Imports an encapsulated ("chunked") OS image of about 20,000 objects with
# updatecache's importer (chunk layers, commit layer, merge commit) and
# copies the same commit between repositories of the same mode with
# `ostree pull-local`, interleaved, and prints times, ratios and peak RSS.
# pull-local runs four ways. Only --untrusted from a source on another
# filesystem does the import's work (read, verify and write every
# object); without --untrusted it does not verify, and from the same
# filesystem it hard-links the objects instead of writing them (even
# with --untrusted, which then verifies and links).
#
#   bench/encap.sh                        # 20000 small files + 3 x 32 MiB, bare-user, 5 runs
#   MODE=archive FILES=5000 RUNS=3 bench/encap.sh
#   FS=/mnt/scratch bench/encap.sh        # repositories there (OTHER_FS: the copy source, default /dev/shm)
#
# Run it on a filesystem with a journal: on ext4 without one, inode
# allocation scans recently deleted inodes, and the figures then say more
# about earlier runs' deletions than about either importer.
#
# Needs ostree and GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/.."

FILES=${FILES:-20000}
BIG=${BIG:-3}
BIG_MIB=${BIG_MIB:-32}
MODE=${MODE:-bare-user}
RUNS=${RUNS:-5}
CHUNKS=${CHUNKS:-8}
COMPRESSION=${COMPRESSION:-none}
FS=${FS:-${TMPDIR:-/tmp}}
WORK=$(mktemp -d "$FS/updatecache-encap-bench.XXXXXX")
OTHER=$(mktemp -d "${OTHER_FS:-/dev/shm}/updatecache-encap-src.XXXXXX")
trap 'rm -rf "$WORK" "$OTHER"' EXIT

command -v ostree >/dev/null || { echo "ostree not found (install the ostree package)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time not found (install the time package)" >&2; exit 1; }

go build -o "$WORK/importgen" ./bench/importgen
go build -o "$WORK/encapgen" ./bench/encapgen
go build -o "$WORK/encapimport" ./bench/encapimport

echo "filesystem of the repositories: $(findmnt -n -o FSTYPE,OPTIONS -T "$FS") ($FS)"
echo "generating: $FILES small files, $BIG x $BIG_MIB MiB, $CHUNKS chunk layers, $MODE source, layers $COMPRESSION"
digest=$("$WORK/importgen" -out "$WORK/layer.tar" -files "$FILES" -big "$BIG" -big-mib "$BIG_MIB")
commit=$("$WORK/encapgen" -layer "$WORK/layer.tar" -digest "$digest" -repo "$WORK/src" -mode "$MODE" \
	-out "$WORK/layout" -chunks "$CHUNKS" -compression "$COMPRESSION")
rm "$WORK/layer.tar"
cp -a "$WORK/src" "$OTHER/src"
objects=$(find "$WORK/src/objects" -type f | wc -l)
echo "commit $commit: $objects objects, image $(du -sm "$WORK/layout" | cut -f1) MiB"
# Read everything once so no side pays for the first read from disk.
cat "$WORK"/layout/blobs/sha256/* "$WORK"/src/objects/*/* >/dev/null 2>&1 || true

run() { # name, command...: runs the command with a new repository path appended, under GNU time
	local name=$1
	shift
	local dst
	dst=$(mktemp -d "$WORK/dst.XXXXXX")
	/usr/bin/time -f '%e %M' -a -o "$WORK/$name.times" "$@" "$dst/repo" >/dev/null
	rm -rf "$dst"
}
# pull.sh SOURCE OPTIONS DESTINATION: pull-local into a new repository.
printf '#!/bin/sh\nostree init --repo="$3" --mode=%s && exec ostree pull-local $2 --repo="$3" "$1" %s\n' \
	"$MODE" "$commit" >"$WORK/pull.sh"
chmod +x "$WORK/pull.sh"

# Check once that the import is right: the commit, fsck clean.
check=$(mktemp -d "$WORK/check.XXXXXX")
"$WORK/encapimport" -layout "$WORK/layout" -mode "$MODE" -repo "$check/repo" >"$check/out"
grep -q "^commit $commit\$" "$check/out" || { echo "FAIL: the import gave $(head -1 "$check/out")" >&2; exit 1; }
ostree fsck --repo="$check/repo" >/dev/null
rm -rf "$check"
echo "import checked: commit $commit, ostree fsck clean"

load=$(cut -d' ' -f1-3 /proc/loadavg)
for _ in $(seq "$RUNS"); do
	run import "$WORK/encapimport" -layout "$WORK/layout" -mode "$MODE" -repo
	run untrusted "$WORK/pull.sh" "$OTHER/src" --untrusted
	run copying "$WORK/pull.sh" "$OTHER/src" ""
	run verifylinking "$WORK/pull.sh" "$WORK/src" --untrusted
	run linking "$WORK/pull.sh" "$WORK/src" ""
done

median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
printf '%-44s %10s %14s\n' "$RUNS runs each, interleaved" "median s" "peak RSS MiB"
echo "load at the start: $load"
for name in import untrusted copying verifylinking linking; do
	s=$(cut -d' ' -f1 "$WORK/$name.times" | median)
	kib=$(cut -d' ' -f2 "$WORK/$name.times" | sort -n | tail -1)
	label=$(case $name in
		import) echo "updatecache import (image -> $MODE)" ;;
		untrusted) echo "pull-local --untrusted, other fs: copies" ;;
		copying) echo "pull-local, other fs: copies, no verify" ;;
		verifylinking) echo "pull-local --untrusted, same fs: links" ;;
		linking) echo "pull-local, same fs: links, no verify" ;;
	esac)
	printf '%-44s %10.2f %14.1f\n' "$label" "$s" "$(awk -v k="$kib" 'BEGIN {print k / 1024}')"
	echo "$s" >"$WORK/$name.median"
done
for name in untrusted copying verifylinking linking; do
	awk -v a="$(cat "$WORK/import.median")" -v b="$(cat "$WORK/$name.median")" -v n="$name" \
		'BEGIN {printf "ratio import / pull-local %s: %.2f\n", n, a / b}'
done
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
