#!/usr/bin/env bash
# Imports one large synthetic layer with updatecache's importer and with
# libostree (`ostree commit --tree=tar= --tar-autocreate-parents`, what
# ostree-ext runs) into fresh archive-z2 repositories, checks both made the
# same tree, and prints the times, their ratio and both peak RSS values.
#
#   bench/import.sh                 # 20000 small files + 3 x 50 MiB (~320 MiB)
#   FILES=5000 BIG=1 BIG_MIB=20 bench/import.sh
#   WORK=/var/tmp/bench KEEP=1 bench/import.sh
#
# Needs ostree and GNU time (/usr/bin/time). The layer is uncompressed so
# both sides read the same bytes; decompression is not what is measured.
set -euo pipefail
cd "$(dirname "$0")/.."

FILES=${FILES:-20000}
BIG=${BIG:-3}
BIG_MIB=${BIG_MIB:-50}
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/updatecache-import-bench.XXXXXX")}
mkdir -p "$WORK"
cleanup() { [ -n "${KEEP:-}" ] || rm -rf "$WORK"; }
trap cleanup EXIT

command -v ostree >/dev/null || { echo "ostree not found (install the ostree package)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time not found (install the time package)" >&2; exit 1; }

go build -o "$WORK/importgen" ./bench/importgen
go build -o "$WORK/importlayer" ./bench/importlayer

echo "generating a layer: $FILES small files, $BIG x $BIG_MIB MiB"
digest=$("$WORK/importgen" -out "$WORK/layer.tar" -files "$FILES" -big "$BIG" -big-mib "$BIG_MIB")
size=$(stat -c %s "$WORK/layer.tar")
echo "layer: $((size / 1048576)) MiB, $digest"

# Read the layer once so neither side pays for the first read from disk.
cat "$WORK/layer.tar" >/dev/null

ostree init --repo="$WORK/theirs" --mode=archive
/usr/bin/time -f '%e %M' -o "$WORK/theirs.time" \
	ostree commit --repo="$WORK/theirs" -b layer --tree=tar="$WORK/layer.tar" \
	--tar-autocreate-parents --no-bindings --timestamp=@0 -s layer >"$WORK/theirs.commit"

/usr/bin/time -f '%e %M' -o "$WORK/ours.time" \
	"$WORK/importlayer" -repo "$WORK/ours" -layer "$WORK/layer.tar" -digest "$digest" >"$WORK/ours.out"

ours_commit=$(awk '$1 == "commit" {print $2}' "$WORK/ours.out")
tree() { ostree ls --repo="$1" -d -C "$2" / | awk '{print $5, $6}'; }
if [ "$(tree "$WORK/theirs" "$(cat "$WORK/theirs.commit")")" != "$(tree "$WORK/ours" "$ours_commit")" ]; then
	echo "FAIL: the trees differ" >&2
	exit 1
fi
ostree fsck --repo="$WORK/ours" >/dev/null

read -r theirs_s theirs_kib <"$WORK/theirs.time"
read -r ours_s ours_kib <"$WORK/ours.time"
theirs_bytes=$(du -sb "$WORK/theirs/objects" | cut -f1)
ours_bytes=$(du -sb "$WORK/ours/objects" | cut -f1)
echo "same root tree and dirmeta; ostree fsck clean"
awk -v ts="$theirs_s" -v tk="$theirs_kib" -v tb="$theirs_bytes" -v os="$ours_s" -v ok="$ours_kib" -v ob="$ours_bytes" 'BEGIN {
	printf "%-10s %8s %14s %14s\n", "", "seconds", "peak RSS MiB", "objects MiB"
	printf "%-10s %8.2f %14.1f %14.1f\n", "libostree", ts, tk / 1024, tb / 1048576
	printf "%-10s %8.2f %14.1f %14.1f\n", "importer", os, ok / 1024, ob / 1048576
	printf "time ratio importer/libostree: %.2f\n", os / ts
}'
