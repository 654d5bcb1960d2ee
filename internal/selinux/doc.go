// Package selinux answers "which SELinux label does this path get" from a
// policy's file contexts, in pure Go, exactly as libselinux 3.4's
// file backend (selabel_lookup_raw) answers it, and finds a tree's policy
// as libostree 2022.7's OstreeSePolicy does. It knows nothing of OSTree
// objects or registries: trees come as an io/fs.FS.
//
// # Lookups
//
// [LoadFileContexts] reads file_contexts and the files libselinux reads
// beside it (.homedirs, .local, .subs_dist, .subs); [LoadPolicy] finds them
// through the tree's selinux/config. [Policy.Lookup] takes an absolute path
// and an st_mode (only its S_IFMT bits count; none matches any type) and
// returns the label, or ok=false when no specification matches or the
// winning one says <<none>>. libselinux's rules, all kept:
//
//   - the path loses repeated slashes and one trailing slash ("." and ".."
//     stay), then the first matching .subs line (the last in the file)
//     rewrites a leading whole-component alias, then .subs_dist likewise;
//   - specifications whose text has no regex meta-character sort after the
//     others (base, .homedirs, .local order kept within each group) and the
//     last one that matches wins;
//   - a specification is tried only when its stem (text up to the second
//     "/", if free of meta-characters) is the path's, and its file type, if
//     any, is the path's;
//   - a pattern is PCRE2's, compiled as the text "^" + pattern + "$" in byte
//     mode with DOTALL and searched: the anchors bind to the first and
//     last alternative only ("/a|/b" labels "/x/b"), "$" also matches before
//     a final newline, and "." is one byte. A construct Go cannot express
//     exactly (backreferences, lookaround, possessive or huge repetitions,
//     "$" inside the pattern, \p, inline flags, ...) is an
//     ErrUnsupportedPattern; what PCRE2 refuses is an ErrSyntax; both come
//     as a *SyntaxError naming the file and line.
//
// Lookups try only the specifications whose literal prefix the path
// starts with (a radix index); plain patterns run as bit-parallel position
// automata, the others as Go regexps over a byte-preserving rune mapping.
// The tests compare every rule with the real libselinux.
//
// Deliberate differences from libselinux 3.4: only the text files are
// read (libselinux prefers a file_contexts.bin that is not older; it is
// compiled from the same text); a bad pattern fails the load (libselinux
// compiles lazily and fails the lookups that reach it); a path holding NUL
// is ErrInvalidPath (C would cut it); PCRE2's match limits (which turn a
// catastrophic backtrack into "no label") do not exist here.
//
// # The OSTree side (libostree 2022.7, as ostree-ext's merge commit uses it)
//
// ostree-ext labels a merge commit with the policy of the merged tree
// (OstreeSePolicy.new_at) when the image has derived layers, and only when
// that finds a policy ([LoadPolicy] returns nil otherwise); else with the
// base commit's (ostree_sepolicy_new_from_commit, which checks out only
// usr/etc/selinux, so an etc/selinux in the commit plays no part). The
// commit modifier then, for every directory, file and symbolic link:
//
//   - looks up "/" for the root and "/" + the path relative to the root for
//     everything else ("/usr/etc/shadow" stays /usr/etc/shadow: the
//     /usr/etc -> /etc mapping of later libostree needs labelling epoch 1,
//     which ostree-ext does not set), "/proc" as "/mnt" ([Policy.Label] is Lookup
//     with that case);
//   - passes the object's full st_mode (S_IFDIR, S_IFREG or S_IFLNK plus
//     permissions);
//   - with a label: drops any security.selinux xattr the object has and
//     appends (XattrName, [XattrValue](label)) — the label and a NUL — after
//     the others, unsorted;
//   - without one (no match or <<none>>): leaves the xattrs as they are,
//     an existing security.selinux included.
package selinux
