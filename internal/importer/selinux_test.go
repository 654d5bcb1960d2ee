package importer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/osimage/updatecache/internal/gvariant"
	"github.com/osimage/updatecache/internal/ostree"
	"github.com/osimage/updatecache/internal/selinux"
	"github.com/osimage/updatecache/internal/testtool"
	"github.com/osimage/updatecache/updatecachetest"
)

// debianPolicy is where selinux-policy-default installs the policy type
// "default" that /etc/selinux/config names.
const debianPolicy = "/etc/selinux/default"

// policyEntries are tar entries that ship Debian's policy as an image
// does: etc/selinux/config naming it, the text file contexts and the
// binary policy (the compiled .bin files left out, as the selinux package
// reads only text).
func policyEntries(t testing.TB) []ent {
	t.Helper()
	testtool.NeedFile(t, filepath.Join(debianPolicy, "contexts/files/file_contexts"), "selinux-policy-default")
	entries := []ent{
		dir("etc/", 0o755), dir("etc/selinux/", 0o755),
		reg("etc/selinux/config", 0o644, "SELINUX=enforcing\nSELINUXTYPE=default\n"),
	}
	err := filepath.WalkDir(debianPolicy, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := "etc/selinux/default" + strings.TrimPrefix(p, debianPolicy)
		switch {
		case d.IsDir():
			entries = append(entries, dir(rel+"/", 0o755))
		case d.Type().IsRegular() && !strings.HasSuffix(p, ".bin"):
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			entries = append(entries, reg(rel, 0o644, string(data)))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

// labelLayers returns the two layers of a plain image of about n files
// spread over the directories the Debian policy labels differently:
// programs (some setuid), systemd units and generators, libexec, /etc
// (shadow, ssh, the policy itself), /var (moved under
// usr/share/factory), home directories, /root, /opt, /srv, /boot,
// <<none>> paths (/usr/tmp, lost+found), symbolic and hard links, odd
// names (spaces, a trailing newline, UTF-8), files already carrying a
// security.selinux xattr (kept where the policy says <<none>>, replaced
// elsewhere) and, unless bare, one carrying a user xattr (which then
// precedes the label). The second layer replaces, deletes (whiteouts,
// an opaque directory) and adds. Devices and /tmp content are dropped by
// the importer.
func labelLayers(t testing.TB, n int, withUserXattr bool) [][]ent {
	t.Helper()
	rng := rand.New(rand.NewPCG(11, uint64(n)))
	dirs := []string{
		"usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "usr/lib/systemd/system", "usr/lib/systemd/system-generators",
		"usr/lib/systemd/user", "usr/libexec", "usr/libexec/openssh", "usr/share/doc/pkg", "usr/share/man/man1",
		"usr/local/bin", "usr/src/kernels", "usr/tmp", "usr/lost+found", "usr/lib/modules/6.1.0/kernel",
		"etc/ssh", "etc/systemd/system", "etc/cron.d", "etc/pam.d", "etc/sudoers.d", "etc/NetworkManager",
		"var/lib/dpkg", "var/log/journal", "var/spool/cron/crontabs", "var/cache/apt", "var/www/html",
		"home/alice", "home/alice/.ssh", "home/bob/public_html", "root", "root/.ssh", "opt/app/bin",
		"srv/data", "boot/grub", "run", "tmp", "mnt", "media",
	}
	base := policyEntries(t)
	made := map[string]bool{}
	mkdirs := func(entries *[]ent, p string) {
		parts := strings.Split(p, "/")
		for i := range parts {
			d := strings.Join(parts[:i+1], "/")
			if !made[d] {
				made[d] = true
				mode := int64(0o755)
				if strings.HasSuffix(d, ".ssh") || d == "root" {
					mode = 0o700
				}
				*entries = append(*entries, dir(d+"/", mode))
			}
		}
	}
	for _, d := range dirs {
		mkdirs(&base, d)
	}
	modes := []int64{0o644, 0o755, 0o600, 0o4755, 0o2755, 0o444}
	var files []string
	for i := range n {
		d := dirs[rng.IntN(len(dirs))]
		name := fmt.Sprintf("%s/f%05d", d, i)
		switch i % 97 {
		case 1:
			name += " with spaces"
		case 2:
			name += "\n"
		case 3:
			name += "-é"
		}
		e := reg(name, modes[rng.IntN(len(modes))], fmt.Sprintf("content %d\n", i%3000))
		switch i % 50 {
		case 7:
			e.xattrs = map[string]string{selinux.XattrName: "system_u:object_r:old_t:s0\x00"}
		case 8:
			e = symlink(name, "../bin/f00001")
		case 9:
			e = symlink(name, "/usr/lib/f00002")
		}
		base = append(base, e)
		files = append(files, name)
	}
	for _, d := range []string{"usr/tmp", "usr/lost+found", "var/log/journal"} {
		base = append(base, ent{name: d + "/labelled", mode: 0o644, body: "x", xattrs: map[string]string{selinux.XattrName: "system_u:object_r:kept_t:s0\x00"}})
	}
	base = append(base,
		hardlink("usr/bin/hardlink", files[0]),
		ent{name: "dev/null", typ: tar.TypeChar, mode: 0o666, body: ""},
		reg("tmp/dropped", 0o644, "dropped"),
		reg("usr/etc-not-etc", 0o644, "x"),
	)
	if withUserXattr {
		base = append(base, ent{name: "usr/bin/with-user-xattr", mode: 0o755, body: "u", xattrs: map[string]string{"user.zz": "1", "security.ima": "sig"}})
	}
	upper := []ent{
		dir("usr/", 0o755), dir("usr/bin/", 0o711), // a directory's metadata changed (the lower one's is kept)
		reg("usr/bin/.wh."+filepath.Base(files[1]), 0o644, ""),
		reg("usr/lib/systemd/system/.wh..wh..opq", 0o644, ""),
		reg("usr/lib/systemd/system/new.service", 0o644, "[Unit]\n"),
		reg("usr/bin/new-tool", 0o755, "new\n"),
		reg(files[3], 0o755, "replaced\n"),
	}
	return [][]ent{base, upper}
}

// importPlainImage imports layers (AllowNonUsr, as ostree-ext for plain
// images) and returns their results.
func importPlainImage(t testing.TB, r *ostree.Repo, layers [][]ent) []*LayerResult {
	t.Helper()
	var res []*LayerResult
	for _, entries := range layers {
		l := compressLayer(t, makeTar(t, entries), mediaTar)
		opts := l.options()
		opts.AllowNonUsr = true
		lr, err := ImportLayer(context.Background(), r, bytes.NewReader(l.blob), opts)
		if err != nil {
			t.Fatal(err)
		}
		res = append(res, lr)
	}
	return res
}

// policyCheckout checks out usr/etc/selinux of rev with the real tool, as
// the policy root `ostree commit --selinux-policy=` takes.
func policyCheckout(t testing.TB, r *ostree.Repo, rev string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "usr/etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	testtool.RunOstree(t, "checkout", "--repo="+r.Path(), "-U", "--subpath=/usr/etc/selinux", rev, filepath.Join(root, "usr/etc/selinux"))
	return root
}

// ostreeRelabel relabels rev with the real tool, as ostree-ext's
// relabelling amounts to, and returns the new commit's root dirtree and
// dirmeta.
func ostreeRelabel(t testing.TB, r *ostree.Repo, rev, policyRoot string) (tree, meta string) {
	t.Helper()
	return rootOf(t, r, ostreeRelabelCommit(t, r, rev, policyRoot))
}

// ostreeRelabelCommit is `ostree commit --tree=ref=REV --selinux-policy=`.
func ostreeRelabelCommit(t testing.TB, r *ostree.Repo, rev, policyRoot string) string {
	t.Helper()
	return strings.TrimSpace(testtool.RunOstree(t, "commit", "--repo="+r.Path(), "--orphan", "--tree=ref="+rev,
		"--selinux-policy="+policyRoot, "--no-bindings", "--timestamp=@0", "-s", "oracle"))
}

// rootOf returns rev's root dirtree and dirmeta.
func rootOf(t testing.TB, r *ostree.Repo, rev string) (tree, meta string) {
	t.Helper()
	sum, err := r.ResolveRef(rev)
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.ReadCommit(sum)
	if err != nil {
		t.Fatal(err)
	}
	return c.RootTree, c.RootMeta
}

// labelModes are the repository modes labelling is proven in; bare needs
// root.
func labelModes(t *testing.T) []ostree.Mode {
	if os.Geteuid() == 0 {
		return []ostree.Mode{ostree.ModeArchive, ostree.ModeBareUser, ostree.ModeBare}
	}
	t.Log("not root: bare repositories are not tested")
	return []ostree.Mode{ostree.ModeArchive, ostree.ModeBareUser}
}

// TestLabelPlainImage merges a plain image of about 10,000 files that
// ships Debian's policy, with labelling, in each mode, and compares with
// libostree: the merge commit's root tree must be what `ostree commit
// --tree=ref=<the merge without labels> --selinux-policy=<its policy>`
// makes of it, each layer's blob ref must have moved to a commit whose
// root is libostree's relabelling of the original layer commit (metadata
// and timestamp kept), and the repository must pass `ostree fsck`.
func TestLabelPlainImage(t *testing.T) {
	testtool.Ostree(t)
	ctx := context.Background()
	for _, mode := range labelModes(t) {
		t.Run(string(mode), func(t *testing.T) {
			r := newRepo(t, mode)
			layers := importPlainImage(t, r, labelLayers(t, 10000, mode != ostree.ModeBare))
			refs := []string{layers[0].Ref, layers[1].Ref}
			plain, err := WriteImageMergeCommit(ctx, r, "plain", ImageMergeOptions{Layers: refs, NoSELinux: true})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			merge, err := WriteImageMergeCommit(ctx, r, "labelled", ImageMergeOptions{Layers: refs})
			if err != nil {
				t.Fatal(err)
			}
			ours := time.Since(start)
			policy := policyCheckout(t, r, plain)
			testtool.RunOstree(t, "fsck", "--repo="+r.Path())
			gotTree, gotMeta := rootOf(t, r, merge)
			start = time.Now()
			wantTree, wantMeta := ostreeRelabel(t, r, plain, policy)
			t.Logf("labelled merge (merged tree and %d layers): %v; libostree relabelling the merged tree: %v", len(layers), ours, time.Since(start))
			if gotTree != wantTree || gotMeta != wantMeta {
				t.Errorf("merge commit root %s %s, libostree's relabelling %s %s", gotTree, gotMeta, wantTree, wantMeta)
				diffTrees(t, r, merge, plain, policy)
			}
			for _, l := range layers {
				moved, err := r.ResolveRef(l.Ref)
				if err != nil || moved == l.Commit {
					t.Fatalf("layer ref %s: %s, %v; want it moved from %s", l.Ref, moved, err, l.Commit)
				}
				old, err := r.ReadCommit(l.Commit)
				if err != nil {
					t.Fatal(err)
				}
				c, err := r.ReadCommit(moved)
				if err != nil {
					t.Fatal(err)
				}
				wantTree, wantMeta := ostreeRelabel(t, r, l.Commit, policy)
				if c.RootTree != wantTree || c.RootMeta != wantMeta {
					t.Errorf("layer %s relabelled to root %s %s, libostree %s %s", l.Ref, c.RootTree, c.RootMeta, wantTree, wantMeta)
				}
				if !c.Timestamp.Equal(old.Timestamp) || !equalMetadata(t, c.Metadata, old.Metadata) || c.Parent != "" {
					t.Errorf("layer %s: relabelled commit's time %v, parent %q, metadata %v; the original's %v, %v", l.Ref, c.Timestamp, c.Parent, c.Metadata, old.Timestamp, old.Metadata)
				}
			}
		})
	}
}

// diffTrees reports the paths whose objects differ between our labelled
// commit and libostree's relabelling of plain, with both metadata.
func diffTrees(t *testing.T, r *ostree.Repo, ours, plain, policy string) {
	t.Helper()
	theirs := ostreeRelabelCommit(t, r, plain, policy)
	n := 0
	describe := func(sum string, meta bool) string {
		if meta {
			data, err := r.ReadMetadataObject(sum, ostree.ObjectDirMeta)
			if err != nil {
				return err.Error()
			}
			uid, gid, mode, x, err := ostree.DecodeDirMeta(data)
			return fmt.Sprintf("%d:%d %o %q %v", uid, gid, mode, x, err)
		}
		obj, err := r.OpenContent(sum)
		if err != nil {
			return err.Error()
		}
		obj.Close()
		return fmt.Sprintf("%d:%d %o %q %q", obj.Meta.UID, obj.Meta.GID, obj.Meta.Mode, obj.Meta.Symlink, obj.Meta.Xattrs)
	}
	var walk func(path, a, b string)
	walk = func(path, a, b string) {
		read := func(tree string) ([]ostree.DirTreeFile, []ostree.DirTreeDir) {
			data, err := r.ReadMetadataObject(tree, ostree.ObjectDirTree)
			if err != nil {
				t.Fatal(err)
			}
			files, dirs, err := ostree.DecodeDirTree(data)
			if err != nil {
				t.Fatal(err)
			}
			return files, dirs
		}
		fa, da := read(a)
		fb, db := read(b)
		theirFiles := map[string]string{}
		for _, f := range fb {
			theirFiles[f.Name] = f.Checksum
		}
		for _, f := range fa {
			if theirFiles[f.Name] != f.Checksum {
				if n++; n <= 20 {
					t.Errorf("%q: ours %s, libostree %s", childPath(path, f.Name), describe(f.Checksum, false), describe(theirFiles[f.Name], false))
				}
			}
		}
		theirDirs := map[string]ostree.DirTreeDir{}
		for _, d := range db {
			theirDirs[d.Name] = d
		}
		for _, d := range da {
			o := theirDirs[d.Name]
			if d.MetaChecksum != o.MetaChecksum {
				if n++; n <= 20 {
					t.Errorf("%q/: ours %s, libostree %s", childPath(path, d.Name), describe(d.MetaChecksum, true), describe(o.MetaChecksum, true))
				}
			}
			if d.TreeChecksum != o.TreeChecksum && o.TreeChecksum != "" {
				walk(childPath(path, d.Name), d.TreeChecksum, o.TreeChecksum)
			}
		}
	}
	a, _ := rootOf(t, r, ours)
	b, _ := rootOf(t, r, theirs)
	walk("/", a, b)
}

// TestLabelNoPolicy: a plain image without a policy, or with SELinux
// disabled in its config, and NoSELinux merges all give the commit the
// merge made before labelling existed, byte for byte; no layer ref moves.
func TestLabelNoPolicy(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t, ostree.ModeArchive)
	entries := []ent{dir("usr/", 0o755), dir("usr/bin/", 0o755), reg("usr/bin/x", 0o755, "x")}
	disabled := append(append([]ent{}, policyEntries(t)...), entries...)
	disabled[2] = reg("etc/selinux/config", 0o644, "SELINUX=disabled\nSELINUXTYPE=default\n")
	for name, layers := range map[string][][]ent{"no policy": {entries}, "disabled": {disabled}, "NoSELinux": {append(policyEntries(t), entries...)}} {
		res := importPlainImage(t, r, layers)
		ref := res[0].Ref
		st, err := r.BeginStage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		root, err := newMerger(ctx, r).stack(nil, []string{ref})
		if err != nil {
			t.Fatal(err)
		}
		tree, err := st.WriteTree(ctx, root)
		meta := root.MetaChecksum()
		st.Commit(ctx)
		st.Close()
		if err != nil {
			t.Fatal(err)
		}
		merge, err := WriteImageMergeCommit(ctx, r, "image", ImageMergeOptions{Layers: []string{ref}, NoSELinux: name == "NoSELinux"})
		if err != nil {
			t.Fatal(err)
		}
		if gotTree, gotMeta := rootOf(t, r, merge); gotTree != tree || gotMeta != meta {
			t.Errorf("%s: root %s %s, the plain merge %s %s", name, gotTree, gotMeta, tree, meta)
		}
		if moved, err := r.ResolveRef(ref); err != nil || moved != res[0].Commit {
			t.Errorf("%s: layer ref %s moved to %s (%v)", name, ref, moved, err)
		}
	}
}

// TestLabelPolicyErrors: a config naming a missing policy type, a
// malformed file_contexts, a pattern Go cannot match exactly, and a
// missing binary policy are errors wrapping ErrSELinuxPolicy (so
// ErrInvalidLayer) and the selinux package's sentinel; no ref moves and
// no object is left behind. Layers given as commits are refused
// when the merge would relabel them.
func TestLabelPolicyErrors(t *testing.T) {
	ctx := context.Background()
	policy := func(config, fileContexts string, binary bool) []ent {
		e := []ent{
			dir("etc/", 0o755), dir("etc/selinux/", 0o755), reg("etc/selinux/config", 0o644, config),
			dir("etc/selinux/t/", 0o755), dir("etc/selinux/t/contexts/", 0o755), dir("etc/selinux/t/contexts/files/", 0o755),
			reg("etc/selinux/t/contexts/files/file_contexts", 0o644, fileContexts),
			dir("usr/", 0o755), reg("usr/x", 0o644, "x"),
		}
		if binary {
			e = append(e, dir("etc/selinux/t/policy/", 0o755), reg("etc/selinux/t/policy/policy.33", 0o644, "binary"))
		}
		return e
	}
	good := "/.*\tsystem_u:object_r:usr_t:s0\n/\tsystem_u:object_r:root_t:s0\n"
	for _, tc := range []struct {
		name   string
		layer  []ent
		commit bool // pass the layer's commit, not its ref
		want   error
	}{
		{"missing type", policy("SELINUX=enforcing\nSELINUXTYPE=other\n", good, true), false, selinux.ErrPolicyNotFound},
		{"no type", policy("SELINUX=enforcing\n", good, true), false, selinux.ErrBadConfig},
		{"malformed", policy("SELINUX=enforcing\nSELINUXTYPE=t\n", good+"/x\n", true), false, selinux.ErrSyntax},
		{"unsupported", policy("SELINUX=enforcing\nSELINUXTYPE=t\n", good+"/(a)\\1\tsystem_u:object_r:x_t:s0\n", true), false, selinux.ErrUnsupportedPattern},
		{"no binary policy", policy("SELINUX=enforcing\nSELINUXTYPE=t\n", good, false), false, selinux.ErrPolicyNotFound},
		{"commit, not ref", policy("SELINUX=enforcing\nSELINUXTYPE=t\n", good, true), true, ErrInvalidOptions},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRepo(t, ostree.ModeArchive)
			res := importPlainImage(t, r, [][]ent{tc.layer})
			before := objectFiles(t, r)
			layer := res[0].Ref
			if tc.commit {
				layer = res[0].Commit
			}
			_, err := WriteImageMergeCommit(ctx, r, "image", ImageMergeOptions{Layers: []string{layer}})
			if !errors.Is(err, tc.want) || tc.want != ErrInvalidOptions && !errors.Is(err, ErrSELinuxPolicy) || tc.want != ErrInvalidOptions && !errors.Is(err, ErrInvalidLayer) {
				t.Fatalf("%v; want %v and ErrSELinuxPolicy", err, tc.want)
			}
			if _, err := r.ResolveRef("image"); !errors.Is(err, ostree.ErrRefNotFound) {
				t.Errorf("image ref set: %v", err)
			}
			if moved, _ := r.ResolveRef(res[0].Ref); moved != res[0].Commit {
				t.Errorf("layer ref moved to %s", moved)
			}
			after := objectFiles(t, r)
			for p := range after {
				if _, ok := before[p]; !ok {
					t.Errorf("object %s left behind", p)
				}
			}
		})
	}
}

func equalMetadata(t testing.TB, a, b gvariant.VarDict) bool {
	t.Helper()
	da, err := a.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	db, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(da, db)
}

// policyCommitEntries ship Debian's policy in an OSTree commit, under
// usr/etc/selinux as rpm-ostree composes them.
func policyCommitEntries(t testing.TB) []updatecachetest.CommitEntry {
	t.Helper()
	var entries []updatecachetest.CommitEntry
	for _, e := range policyEntries(t) {
		if e.typ == tar.TypeDir {
			continue // made as parents
		}
		entries = append(entries, updatecachetest.CommitEntry{Path: "usr/" + e.name, Mode: fs.FileMode(e.mode), Content: []byte(e.body)})
	}
	return entries
}

// TestLabelEncapsulated imports an encapsulated image of the sample commit
// with Debian's policy added, in each mode. With derived layers, the merge
// commit is labelled from the merged tree's policy, as libostree labels
// the unlabelled merge (the sample's own labels are not the policy's, so
// the base's objects are relabelled too), and the layer refs move to
// libostree's relabelling of each layer; without derived layers the merge
// commit has the base commit's tree as it is.
func TestLabelEncapsulated(t *testing.T) {
	testtool.Ostree(t)
	ctx := context.Background()
	src := newRepo(t, ostree.ModeArchive)
	spec := updatecachetest.SampleCommit("41.1")
	spec.Entries = append(spec.Entries, policyCommitEntries(t)...)
	commit, err := updatecachetest.WriteCommit(ctx, src.Path(), spec)
	if err != nil {
		t.Fatal(err)
	}
	img := encapsulate(t, src, commit, updatecachetest.EncapsulateSpec{Chunks: sampleChunks, Derived: derivedLayers})
	baseTree, baseMeta := rootOf(t, src, commit)
	for _, mode := range labelModes(t) {
		t.Run(string(mode), func(t *testing.T) {
			r := newRepo(t, mode)
			got := importImage(t, r, img, commit, len(sampleChunks))
			base, err := WriteImageMergeCommit(ctx, r, "base-only", ImageMergeOptions{Base: commit})
			if err != nil {
				t.Fatal(err)
			}
			if tree, meta := rootOf(t, r, base); tree != baseTree || meta != baseMeta {
				t.Errorf("without derived layers: root %s %s, the base's %s %s", tree, meta, baseTree, baseMeta)
			}
			plain, err := WriteImageMergeCommit(ctx, r, "plain", ImageMergeOptions{Base: commit, Layers: got.refs, NoSELinux: true})
			if err != nil {
				t.Fatal(err)
			}
			merge, err := WriteImageMergeCommit(ctx, r, "labelled", ImageMergeOptions{Base: commit, Layers: got.refs})
			if err != nil {
				t.Fatal(err)
			}
			testtool.RunOstree(t, "fsck", "--repo="+r.Path())
			policy := policyCheckout(t, r, plain)
			gotTree, gotMeta := rootOf(t, r, merge)
			if wantTree, wantMeta := ostreeRelabel(t, r, plain, policy); gotTree != wantTree || gotMeta != wantMeta {
				t.Errorf("merge commit root %s %s, libostree's relabelling %s %s", gotTree, gotMeta, wantTree, wantMeta)
				diffTrees(t, r, merge, plain, policy)
			}
			if plainTree, _ := rootOf(t, r, plain); gotTree == plainTree {
				t.Error("labelling changed nothing")
			}
			if c, err := r.ReadCommit(merge); err != nil || c.Parent != commit {
				t.Errorf("parent %q, %v; want the base", c.Parent, err)
			}
			for i, ref := range got.refs {
				moved, err := r.ResolveRef(ref)
				if err != nil {
					t.Fatal(err)
				}
				if wantTree, wantMeta := ostreeRelabel(t, r, got.derived[i], policy); moved == got.derived[i] || fmt.Sprint(rootOf(t, r, moved)) != fmt.Sprint(wantTree, wantMeta) {
					t.Errorf("layer %s: ref at %s (was %s), want libostree's relabelling %s %s", ref, moved, got.derived[i], wantTree, wantMeta)
				}
			}
		})
	}
}

// TestLabelSymlinkedPolicy: a policy reached through relative symbolic
// links (the config and the policy type's directory) is found as
// libostree finds it in a checkout, and labels the tree alike.
func TestLabelSymlinkedPolicy(t *testing.T) {
	testtool.Ostree(t)
	ctx := context.Background()
	var layer []ent
	for _, e := range policyEntries(t) {
		if rest, ok := strings.CutPrefix(e.name, "etc/selinux/"); ok && rest != "" {
			e.name = "usr/share/selinux/" + rest
		}
		layer = append(layer, e)
	}
	layer = append(layer, dir("usr/", 0o755), dir("usr/share/", 0o755), dir("usr/share/selinux/", 0o755),
		symlink("etc/selinux/config", "../../share/selinux/config"),
		symlink("etc/selinux/default", "../../share/selinux/default"),
		dir("usr/bin/", 0o755), reg("usr/bin/tool", 0o755, "tool\n"))
	r := newRepo(t, ostree.ModeArchive)
	res := importPlainImage(t, r, [][]ent{layer})
	plain, err := WriteImageMergeCommit(ctx, r, "plain", ImageMergeOptions{Layers: []string{res[0].Ref}, NoSELinux: true})
	if err != nil {
		t.Fatal(err)
	}
	merge, err := WriteImageMergeCommit(ctx, r, "labelled", ImageMergeOptions{Layers: []string{res[0].Ref}})
	if err != nil {
		t.Fatal(err)
	}
	// The real tool resolves the links in a checkout of the whole tree.
	checkout := filepath.Join(t.TempDir(), "root")
	testtool.RunOstree(t, "checkout", "--repo="+r.Path(), "-U", plain, checkout)
	gotTree, gotMeta := rootOf(t, r, merge)
	if wantTree, wantMeta := ostreeRelabel(t, r, plain, checkout); gotTree != wantTree || gotMeta != wantMeta {
		t.Errorf("root %s %s, libostree's relabelling %s %s", gotTree, gotMeta, wantTree, wantMeta)
		diffTrees(t, r, merge, plain, checkout)
	}
	if plainTree, _ := rootOf(t, r, plain); gotTree == plainTree {
		t.Error("no policy found through the links")
	}
}

// TestLabelCorruptObject: a content object that fails its checksum stops
// the labelled merge with ErrCorrupt; no ref moves, no object is added.
func TestLabelCorruptObject(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t, ostree.ModeBareUser)
	res := importPlainImage(t, r, [][]ent{append(policyEntries(t), dir("usr/", 0o755), reg("usr/victim", 0o644, "victim\n"))})
	c, err := r.ReadCommit(res[0].Commit)
	if err != nil {
		t.Fatal(err)
	}
	root, err := r.OpenMutableTree(c.RootTree, c.RootMeta)
	if err != nil {
		t.Fatal(err)
	}
	_, usr, _ := root.Lookup("usr")
	victim, _, _ := usr.Lookup("victim")
	p := r.ObjectPath(victim, ostree.ObjectFile)
	os.Chmod(p, 0o644)
	if err := os.WriteFile(p, []byte("Victim\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := objectFiles(t, r)
	if _, err := WriteImageMergeCommit(ctx, r, "image", ImageMergeOptions{Layers: []string{res[0].Ref}}); !errors.Is(err, ostree.ErrCorrupt) {
		t.Fatalf("%v, want ErrCorrupt", err)
	}
	if _, err := r.ResolveRef("image"); !errors.Is(err, ostree.ErrRefNotFound) {
		t.Errorf("image ref set: %v", err)
	}
	if moved, _ := r.ResolveRef(res[0].Ref); moved != res[0].Commit {
		t.Errorf("layer ref moved to %s", moved)
	}
	if after := objectFiles(t, r); len(after) != len(before) {
		t.Errorf("%d objects before, %d after", len(before), len(after))
	}
}
