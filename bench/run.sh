#!/usr/bin/env bash
# Runs every benchmark of updatecache against its peers and rewrites
# BENCHMARKS.md from the measurements:
#   1. requests and bytes per update check: updatecache check, skopeo inspect
#      (default, --no-tags, --raw) and a model of ostree-ext's requests, at the
#      real registry (docker-registry) behind a counting proxy (bench/peers);
#   2. check latency with a delay added to every request (bench/peers);
#   3. QueryCachedUpdate (go test -bench in the root package) beside its floor;
#   4. updatecache pull vs skopeo copy (bench/peers), and a layer import vs
#      `ostree commit --tree=tar=` (bench/import.sh);
#   5. a fleet of N machines checking at once, straight to the origin and
#      through a pull-through cache (docker-registry in proxy mode) named as
#      a mirror in registries.conf (bench/peers);
#   6. importing an encapsulated OS image (a commit of ~20,000 objects in
#      chunk layers) vs `ostree pull-local` of the same commit (bench/encap.sh);
#   7. SELinux labelling of a 100,000-path tree vs libostree's
#      `ostree commit --tree=ref= --selinux-policy=` (bench/label.sh, which
#      also runs alone: UPDATE=BENCHMARKS.md bench/label.sh).
#
#   bench/run.sh                          # about 5 minutes on 2 cores, and 10 more for the fleet
#   RUNS=5 PULL_RUNS=2 COUNT=2 IMPORT_FILES=2000 IMPORT_BIG=1 FLEET_SIZES=1,100 bench/run.sh   # quick
#   SECTIONS=fleet bench/run.sh           # only these sections (of: peers query import fleet encap label); the
#                                         # others stay as the last run left them in BENCHMARKS.md
#   LOAD_WAIT_MIN=20 bench/run.sh         # first wait (up to 20 min) for a 1-min load below LOAD_MAX
#
# Needs go, skopeo, docker-registry, ostree, GNU time and selinux-policy-default; installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-20}                 # runs of each check for the latency table
DELAY=${DELAY:-50ms}             # delay added to every request for the latency table, and at the fleet's origin
PULL_RUNS=${PULL_RUNS:-5}        # runs of each pull
PULL_MIB=${PULL_MIB:-48}         # size of the pulled image's files (half random, half text)
COUNT=${COUNT:-5}                # go test -count for the query benchmark
IMPORT_FILES=${IMPORT_FILES:-20000}
IMPORT_BIG=${IMPORT_BIG:-3}
IMPORT_BIG_MIB=${IMPORT_BIG_MIB:-50}
FLEET_SIZES=${FLEET_SIZES:-1,100,1000} # machines checking at once
FLEET_PROCS=${FLEET_PROCS:-100}  # most check processes running at once
FLEET_AUTH=${FLEET_AUTH:-token}  # the fleet's origin: token (anonymous pull tokens) or none
ENCAP_FILES=${ENCAP_FILES:-20000} # small files of the encapsulated image's commit
ENCAP_RUNS=${ENCAP_RUNS:-5}      # runs of each side, interleaved
# ENCAP_FS: where the encap section's repositories go (default TMPDIR); use a
# filesystem with a journal: ext4 without one makes file creation scan
# recently deleted inodes, which says more about earlier runs than either side.

LABEL_PATHS=${LABEL_PATHS:-100000}
LABEL_RUNS=${LABEL_RUNS:-3}
SECTIONS=${SECTIONS:-peers query import fleet encap label}
LOAD_WAIT_MIN=${LOAD_WAIT_MIN:-0} # minutes to wait for a quiet machine; 0: do not wait
LOAD_MAX=${LOAD_MAX:-1.0}
OUT=${OUT:-BENCHMARKS.md}

ALL_SECTIONS="peers query import fleet encap label"
has() { case " $SECTIONS " in *" $1 "*) return 0 ;; esac; return 1; }
partial=
for s in $SECTIONS; do
	case " $ALL_SECTIONS " in *" $s "*) ;; *) echo "bench/run.sh: unknown section $s (of: $ALL_SECTIONS)" >&2; exit 2 ;; esac
done
for s in $ALL_SECTIONS; do has "$s" || partial=1; done
if [ -n "$partial" ] && [ ! -f "$OUT" ]; then
	echo "bench/run.sh: SECTIONS=\"$SECTIONS\" updates $OUT, which does not exist: run every section first" >&2
	exit 2
fi

need() { # command, Debian package
	command -v "$1" >/dev/null || { echo "bench/run.sh: $1 not found (install the $2 package)" >&2; exit 1; }
}
need go golang-go
need skopeo skopeo
need docker-registry docker-registry
need ostree ostree
[ -x /usr/bin/time ] || { echo "bench/run.sh: /usr/bin/time not found (install the time package)" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/updatecache-bench.XXXXXX")
trap 'rm -rf "$WORK" "$OUT.tmp"' EXIT

load1() { cut -d' ' -f1 /proc/loadavg; }
quiet() { awk -v l="$(load1)" -v m="$LOAD_MAX" 'BEGIN { exit !(l < m) }'; }
waited=0
while ! quiet && [ "$waited" -lt "$LOAD_WAIT_MIN" ]; do
	echo "bench/run.sh: 1-minute load $(load1) >= $LOAD_MAX; waiting ($waited of $LOAD_WAIT_MIN min)" >&2
	sleep 60
	waited=$((waited + 1))
done

echo "bench/run.sh: building" >&2
go build -o "$WORK/updatecache" ./cmd/updatecache
go build -o "$WORK/peers" ./bench/peers

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u '+%Y-%m-%d %H:%M UTC')
load_peers=- load_query=- load_import=-

if has peers; then
	echo "bench/run.sh: peers (requests, latency, pull)" >&2
	"$WORK/peers" -updatecache "$WORK/updatecache" -sections requests,latency,pull -runs "$RUNS" -delay "$DELAY" \
		-pull-runs "$PULL_RUNS" -pull-mib "$PULL_MIB" -work "$WORK/peers-work" >"$WORK/peers.md"
	load_peers=$(cut -d' ' -f1-3 /proc/loadavg)
fi

if has query; then
	echo "bench/run.sh: QueryCachedUpdate benchmark" >&2
	go test -run='^$' -bench='^BenchmarkQueryCachedUpdate$' -benchmem -count="$COUNT" . >"$WORK/query.txt"
	load_query=$(cut -d' ' -f1-3 /proc/loadavg)
fi

if has import; then
	echo "bench/run.sh: layer import (bench/import.sh)" >&2
	FILES=$IMPORT_FILES BIG=$IMPORT_BIG BIG_MIB=$IMPORT_BIG_MIB bash bench/import.sh >"$WORK/import.txt"
	load_import=$(cut -d' ' -f1-3 /proc/loadavg)
fi

if has fleet; then
	echo "bench/run.sh: fleet (N machines checking at once)" >&2
	load_fleet_start=$(cut -d' ' -f1-3 /proc/loadavg)
	fleet_started=$(date +%s)
	"$WORK/peers" -updatecache "$WORK/updatecache" -sections fleet -delay "$DELAY" \
		-fleet-sizes "$FLEET_SIZES" -fleet-procs "$FLEET_PROCS" -fleet-auth "$FLEET_AUTH" -work "$WORK/fleet-work" >"$WORK/fleet.md"
	fleet_s=$(($(date +%s) - fleet_started))
	load_fleet_end=$(cut -d' ' -f1-3 /proc/loadavg)
fi
if has encap; then
	echo "bench/run.sh: encapsulated image import (bench/encap.sh)" >&2
	FILES=$ENCAP_FILES RUNS=$ENCAP_RUNS FS=${ENCAP_FS:-${TMPDIR:-/tmp}} bash bench/encap.sh >"$WORK/encap.txt"
fi
if has label; then
	echo "bench/run.sh: SELinux labelling (bench/label.sh)" >&2
	PATHS=$LABEL_PATHS RUNS=$LABEL_RUNS bash bench/label.sh >"$WORK/label.md"
fi
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# The median of each benchmark's runs, and its ratio to the floor.
query_table() {
	awk '
	/^Benchmark/ {
		name = $1; sub(/-[0-9]+$/, "", name); sub(/^BenchmarkQueryCachedUpdate\//, "", name)
		if (!(name in n)) order[++names] = name
		k = ++n[name]; ns[name, k] = $3
		for (i = 4; i < NF; i++) { if ($(i+1) == "B/op") bop[name] = $i; if ($(i+1) == "allocs/op") aop[name] = $i }
	}
	function median(name,   k, i, j, t, v) {
		k = n[name]
		for (i = 1; i <= k; i++) v[i] = ns[name, i]
		for (i = 2; i <= k; i++) for (j = i; j > 1 && v[j-1] > v[j]; j--) { t = v[j]; v[j] = v[j-1]; v[j-1] = t }
		lo[name] = v[1]; hi[name] = v[k]
		return k % 2 ? v[(k+1)/2] : (v[k/2] + v[k/2+1]) / 2
	}
	END {
		for (i = 1; i <= names; i++) { m[order[i]] = median(order[i]); if (order[i] ~ /^floor/) floor = m[order[i]] }
		print "| benchmark | median µs/op | min–max µs/op | B/op | allocs/op | × floor |"
		print "| --- | ---: | ---: | ---: | ---: | ---: |"
		for (i = 1; i <= names; i++) {
			x = order[i]
			printf "| %s | %.0f | %.0f–%.0f | %s | %s | %.2f |\n", x, m[x] / 1000, lo[x] / 1000, hi[x] / 1000, bop[x], aop[x], m[x] / floor
		}
	}' "$WORK/query.txt"
}

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
skopeo_v="$(skopeo --version | awk '{ print $3 }') (built with $(go version "$(command -v skopeo)" | awk '{ print $2 }'))"
registry_v=$(docker-registry --version | awk '{ print $3 }')
updatecache_go=$(go version "$WORK/updatecache" | awk '{ print $2 }')
ostree_v=$(ostree --version | awk -F"'" '/Version/ { print $2 }')

# Each section of the file starts with a marker line, so that a run of some
# sections can replace theirs and leave the others as they are.
marker() { echo "<!-- bench/run.sh section: $1 -->"; }

header() {
	cat <<EOF
# Benchmarks

Generated by \`bench/run.sh\` on $started; every number below was measured by that run. Do not edit
by hand: rerun the script. Loopback networking, so the network itself costs nothing; what differs
between the tools is requests, bytes, round trips and work on the machine.

## Machine

| | |
| --- | --- |
| CPUs (\`nproc\`) | $(nproc) |
| CPU | $cpu |
| memory | $mem |
| kernel | $(uname -r) |
| Go | $(go env GOVERSION) (updatecache built with $updatecache_go) |
| skopeo | $skopeo_v |
| docker-registry | $registry_v |
| ostree | $ostree_v |
| load average (1, 5, 15 min) | start $load_start; after the peer runs $load_peers; after the Go benchmark $load_query; after the import $load_import; end $load_end (the fleet section has its own) |

The machine is shared with other work, so timings carry its noise: the load averages above say how
much. Request and byte counts do not depend on load.

Settings: RUNS=$RUNS DELAY=$DELAY PULL_RUNS=$PULL_RUNS PULL_MIB=$PULL_MIB COUNT=$COUNT
IMPORT_FILES=$IMPORT_FILES IMPORT_BIG=$IMPORT_BIG IMPORT_BIG_MIB=$IMPORT_BIG_MIB FLEET_SIZES=$FLEET_SIZES FLEET_PROCS=$FLEET_PROCS FLEET_AUTH=$FLEET_AUTH LABEL_PATHS=$LABEL_PATHS LABEL_RUNS=$LABEL_RUNS.

EOF
}

section_peers() {
	marker peers
	cat <<EOF
How to read the check tables:

- \`updatecache check\` is the CLI over \`Prepare\`, with an OSTree repository holding the deployed
  image (v1). "no update": the tag still points to v1. "new update": the tag moved to v2 and the
  repository has no cached update. "repeated check": the same again, with v2 cached by the check before.
- \`skopeo inspect\` is what a script would run to see what a tag points to; by default it also lists the
  repository's tags (the "other" request), which \`--no-tags\` skips; \`--raw\` only fetches the top
  manifest, without resolving an index or reading the config. skopeo keeps no state, so its three
  cases cost the same.
- The anchor model replays with plain HTTP the requests that ostree-ext's \`prepare()\` makes as
  described in the project's ostree-ext notes: ping, GET the tag's manifest (and the platform's
  manifest for an index), GET the config unless the manifest or the config is the deployed one. It
  is a model of ostree-ext's requests, not ostree-ext: its bytes to the registry reflect Go's lean
  request headers, and it leaves out the TLS probe that containers/image makes on such a registry.
- A TLS probe is the HTTPS attempt containers/image makes before falling back to plain HTTP on a
  registry whose TLS is not verified (\`--tls-verify=false\`); it happens on loopback test set-ups,
  not against a real HTTPS registry, so its bytes are shown apart. Go 1.26's TLS client offers a
  post-quantum key share, hence updatecache's larger ClientHello than skopeo's (see the Go versions above).
- Docker Hub counts manifest GETs against pull limits; HEADs are free.

EOF
	cat "$WORK/peers.md"
}

section_query() {
	marker query
	cat <<EOF
## QueryCachedUpdate (offline read of the cached update)

\`go test -run='^\$' -bench='^BenchmarkQueryCachedUpdate\$' -benchmem -count=$COUNT .\` (query_bench_test.go):
a deployed 40-layer image with a cached 40-layer update, in a repository holding only that image
(\`repo=image-only\`), then with 10,000 other commits, a tenth of them under
refs (\`repo=10000-other-commits\`). The floor reads the same two files (commit object and
\`.commitmeta\`) with \`os.ReadFile\` and decodes the four JSON documents with \`encoding/json\` into
minimal structs, found at offsets located beforehand: no ref lookup, checksum verification,
GVariant decoding, validation or layer diff, which QueryCachedUpdate does. Median over $COUNT runs.

EOF
	query_table
	cat <<EOF

<details><summary>go test output</summary>

\`\`\`
$(cat "$WORK/query.txt")
\`\`\`
</details>

EOF
}

section_import() {
	marker import
	cat <<EOF
## Layer import vs \`ostree commit --tree=tar=\` (bench/import.sh)

One uncompressed layer imported by updatecache's importer and by libostree (\`ostree commit
--tree=tar= --tar-autocreate-parents\`, the code path ostree-ext uses), each into a new archive
repository; the script checks both produce the same tree.

\`\`\`
$(cat "$WORK/import.txt")
\`\`\`
EOF
}

section_fleet() {
	marker fleet
	cat "$WORK/fleet.md"
}
section_encap() {
	marker encap
	cat <<EOF2
## Encapsulated OS image import vs \`ostree pull-local\` (bench/encap.sh)

An OSTree commit of $ENCAP_FILES small files and 3 large ones, encapsulated as ostree-ext does (commit
layer and 8 chunk layers, uncompressed), imported by updatecache's importer (chunks, commit layer,
merge commit) into a new bare-user repository, beside libostree copying the same commit into a new
repository of the same mode with \`ostree pull-local\`, interleaved. Only \`--untrusted\` from
another filesystem does the same work as the import (read, verify and write every object); the
other rows copy without verifying, or hard-link. The script first checks that the import gives the
commit and that \`ostree fsck\` is clean.

\`\`\`
$(cat "$WORK/encap.txt")
\`\`\`
EOF2
}

section_label() {
	marker label
	cat "$WORK/label.md"
}

# The note a section gets below its first heading: when and under what load
# it was measured, if not with the rest of the file, and for the fleet
# always (it is a long run of its own).
note() {
	local n=""
	if [ -n "$partial" ]; then
		n="Measured by \`SECTIONS=\"$SECTIONS\" bench/run.sh\` on $started (load average $load_start at the start, $load_end at the end; skopeo $skopeo_v, docker-registry $registry_v, Go $updatecache_go), apart from the rest of this file, which an earlier run wrote."
	fi
	if [ "$1" = fleet ]; then
		local load="; load average (1, 5, 15 min) $load_fleet_start at their start, $load_fleet_end at their end"
		[ -z "$partial" ] || load=
		n="${n:+$n }The fleet runs took $fleet_s s$load. Settings: FLEET_SIZES=$FLEET_SIZES FLEET_PROCS=$FLEET_PROCS FLEET_AUTH=$FLEET_AUTH DELAY=$DELAY."
	fi
	awk -v note="$n" '{ print } note != "" && !done && /^## / { print ""; print note; done = 1 }'
}

section() { "section_$1" | note "$1"; }

if [ -z "$partial" ]; then
	{
		header
		for s in $ALL_SECTIONS; do section "$s"; done
	} >"$OUT.tmp"
else
	for s in $SECTIONS; do section "$s" >"$WORK/section-$s.md"; done
	# Replace the blocks of the sections run; a section the file lacks
	# goes at its end.
	awk -v dir="$WORK" -v sections="$SECTIONS" '
	function emit(name,   line, f) {
		f = dir "/section-" name ".md"
		while ((getline line < f) > 0) print line
		close(f)
		done[name] = 1
	}
	BEGIN { n = split(sections, s, " "); for (i = 1; i <= n; i++) want[s[i]] = 1 }
	/^<!-- bench\/run.sh section: [a-z]+ -->$/ {
		skip = $4 in want
		if (skip) emit($4)
	}
	!skip { print }
	END { for (i = 1; i <= n; i++) if (!(s[i] in done)) emit(s[i]) }' "$OUT" >"$OUT.tmp"
fi
mv "$OUT.tmp" "$OUT"
echo "bench/run.sh: wrote $OUT" >&2
