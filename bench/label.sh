#!/usr/bin/env bash
# Labels a synthetic OS tree of about 100,000 paths that ships Debian's
# SELinux policy (bench/importgen -policy, imported as a plain layer) with
# updatecache (bench/labelcommit: importer.RelabelCommit, which is what a
# labelled merge does to the merged tree) and with libostree (`ostree
# commit --tree=ref=X --selinux-policy=CHECKOUT`, which is what ostree-ext's
# merge amounts to), each on its own copy (hard links) of the repository
# holding the unlabelled commit X, interleaved. libostree's labelling alone
# is its labelled recommit less a plain `ostree commit --tree=ref=X` (which
# writes nothing but the commit object). Checks that both give the same root
# tree and that updatecache's repository passes `ostree fsck`, and prints a
# Markdown section with the medians.
#
#   bench/label.sh                                  # 100000 paths, archive, bare-user (and bare as root), 3 runs
#   PATHS=20000 RUNS=5 MODES=bare-user bench/label.sh
#   FS=/dev/shm bench/label.sh                      # repositories on tmpfs
#   UPDATE=BENCHMARKS.md bench/label.sh             # also replace this section of that file
#
# Run it on tmpfs or on a filesystem with a journal (see bench/encap.sh).
# Needs ostree, GNU time (/usr/bin/time) and the policy (selinux-policy-default).
set -euo pipefail
cd "$(dirname "$0")/.."

PATHS=${PATHS:-100000}
MODES=${MODES:-archive bare-user$([ "$(id -u)" != 0 ] || echo " bare")}
RUNS=${RUNS:-3}
POLICY=${POLICY:-/etc/selinux/default}
FS=${FS:-${TMPDIR:-/tmp}}
WORK=$(mktemp -d "$FS/updatecache-label-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

command -v ostree >/dev/null || { echo "ostree not found (install the ostree package)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time not found (install the time package)" >&2; exit 1; }
[ -f "$POLICY/contexts/files/file_contexts" ] || { echo "no policy at $POLICY (install selinux-policy-default)" >&2; exit 1; }

go build -o "$WORK/importgen" ./bench/importgen
go build -o "$WORK/importlayer" ./bench/importlayer
go build -o "$WORK/labelcommit" ./bench/labelcommit

digest=$("$WORK/importgen" -out "$WORK/layer.tar" -files "$PATHS" -big 0 -policy "$POLICY")
median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
range() { sort -n | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%.2f–%.2f", lo, hi}'; }
root() { ostree ls --repo="$1" -d -C "$2" / | awk '{print $5, $6}'; }
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

section() {
	cat <<HEAD
## SELinux labelling vs libostree (bench/label.sh)

A plain image's tree of $PATHS files and symbolic links (plus their directories) spread over the
directories Debian's policy labels differently (programs, some setuid, libraries, systemd units,
/etc, /var, home directories, /root, /opt, /srv), shipping that policy (\`selinux-policy-default\`)
under usr/etc/selinux, imported unlabelled as commit X. updatecache labels X with the policy the
tree ships (\`bench/labelcommit\`: \`importer.RelabelCommit\`, what a labelled merge does to the
merged tree); libostree runs \`ostree commit --tree=ref=X --selinux-policy=CHECKOUT\` (the policy
checked out beforehand), which is what ostree-ext's merge amounts to, less a plain \`ostree commit
--tree=ref=X\` (which only writes a commit object), so the comparison is of labelling alone. Each
run works on its own hard-linked copy of the repository, so every labelled object is written anew;
$RUNS runs each, interleaved; wall time of the process; repositories under $FS ($(df --output=fstype "$FS" | tail -1)). Every
object of X gets a label, so both rewrite every object: libostree reads and writes each whole (an
archive object is compressed again); updatecache copies an archive object's compressed stream as
it is. Both give the same root tree (checked), and updatecache's repository passes \`ostree fsck\`.
Measured by bench/label.sh on $(date -u '+%Y-%m-%d %H:%M UTC'); load average at the start: $load_start.

| repository | tool | median s | min–max s | peak RSS MiB |
| --- | --- | ---: | ---: | ---: |
HEAD
}

rows=""
ratios=""
for mode in $MODES; do
	repo="$WORK/$mode"
	ostree init --repo="$repo" --mode="$mode"
	x=$("$WORK/importlayer" -repo "$repo" -layer "$WORK/layer.tar" -digest "$digest" -allow-non-usr | awk '$1 == "commit" {print $2}')
	mkdir -p "$WORK/policy-$mode/usr/etc"
	ostree checkout --repo="$repo" -U --subpath=/usr/etc/selinux "$x" "$WORK/policy-$mode/usr/etc/selinux"
	echo "$mode: commit $x, $(find "$repo/objects" -type f | wc -l) objects" >&2
	for run in $(seq "$RUNS"); do
		for tool in ours theirs plain; do
			copy="$WORK/copy"
			cp -al "$repo" "$copy"
			case $tool in
			ours) cmd=("$WORK/labelcommit" -repo "$copy" -commit "$x") ;;
			theirs) cmd=(ostree commit --repo="$copy" --orphan --tree=ref="$x" --selinux-policy="$WORK/policy-$mode" --no-bindings --timestamp=@0 -s labelled) ;;
			plain) cmd=(ostree commit --repo="$copy" --orphan --tree=ref="$x" --no-bindings --timestamp=@0 -s plain) ;;
			esac
			/usr/bin/time -f '%e %M' -a -o "$WORK/$mode-$tool.times" "${cmd[@]}" >"$WORK/out"
			if [ "$run" = 1 ] && [ "$tool" = ours ]; then
				awk '$1 == "tree" {t = $2} $1 == "meta" {m = $2} END {print t, m}' "$WORK/out" >"$WORK/$mode-ours.root"
				ostree fsck --repo="$copy" >/dev/null
			fi
			if [ "$run" = 1 ] && [ "$tool" = theirs ]; then
				root "$copy" "$(cat "$WORK/out")" >"$WORK/$mode-theirs.root"
			fi
			rm -rf "$copy"
		done
	done
	if ! cmp -s "$WORK/$mode-ours.root" "$WORK/$mode-theirs.root"; then
		echo "FAIL: $mode: updatecache labelled to $(cat "$WORK/$mode-ours.root"), libostree to $(cat "$WORK/$mode-theirs.root")" >&2
		exit 1
	fi
	for tool in ours theirs plain; do
		cut -d' ' -f1 "$WORK/$mode-$tool.times" | median >"$WORK/$mode-$tool.median"
	done
	paste -d' ' <(cut -d' ' -f1 "$WORK/$mode-theirs.times") <(cut -d' ' -f1 "$WORK/$mode-plain.times") |
		awk '{print $1 - $2}' >"$WORK/$mode-labelling.times"
	row() { # tool label
		local rss
		rss=$(cut -d' ' -f2 "$WORK/$mode-$1.times" | sort -n | tail -1)
		printf '| %s | %s | %.2f | %s | %.1f |\n' "$mode" "$2" "$(cut -d' ' -f1 "$WORK/$mode-$1.times" | median)" \
			"$(cut -d' ' -f1 "$WORK/$mode-$1.times" | range)" "$(awk -v k="$rss" 'BEGIN {print k / 1024}')"
	}
	rows+=$(row ours "updatecache (labelcommit)")$'\n'
	rows+=$(row theirs "ostree commit --tree=ref= --selinux-policy=")$'\n'
	rows+=$(row plain "ostree commit --tree=ref= (plain)")$'\n'
	rows+=$(printf '| %s | libostree labelling alone (labelled − plain, per run) | %.2f | %s | |' "$mode" \
		"$(median <"$WORK/$mode-labelling.times")" "$(range <"$WORK/$mode-labelling.times")")$'\n'
	ratios+=$(awk -v a="$(cat "$WORK/$mode-ours.median")" -v b="$(median <"$WORK/$mode-labelling.times")" -v m="$mode" \
		'BEGIN {printf "- %s: updatecache takes %.2f× the time of libostree'"'"'s labelling alone.", m, a / b}')$'\n'
done

out=$(section; printf '%s\n%s\n' "$rows" "$ratios"; echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg).")
echo "$out"
if [ -n "${UPDATE:-}" ]; then
	# Replace this section of UPDATE (up to the next "## " heading), or append it.
	printf '%s\n' "$out" >"$WORK/section.md"
	awk -v sec="$WORK/section.md" '
		function emit() { while ((getline line < sec) > 0) print line; print ""; done = 1 }
		/^## SELinux labelling vs libostree/ { emit(); skip = 1; next }
		skip && /^## / { skip = 0 }
		!skip { print }
		END { if (!done) { print ""; emit() } }' "$UPDATE" >"$WORK/update.md"
	mv "$WORK/update.md" "$UPDATE"
	echo "bench/label.sh: updated $UPDATE" >&2
fi
