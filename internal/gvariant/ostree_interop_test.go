package gvariant

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"math/bits"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/osimage/updatecache/internal/testtool"
)

// The real ostree tool (libostree on GLib) serves here as a GVariant oracle
// on real-world data: objects it writes must decode and re-encode byte for
// byte, and detached metadata written by this package must read back in
// it. The package itself knows nothing of OSTree.

// ostreeObjectTypes are the GVariant types of OSTree's metadata objects,
// by file extension.
var ostreeObjectTypes = map[string]string{
	".commit":     "(a{sv}aya(say)sstayay)",
	".dirtree":    "(a(say)a(sayay))",
	".dirmeta":    "(uuua(ayay))",
	".commitmeta": "a{sv}",
}

func TestOstreeObjectsRoundTrip(t *testing.T) {
	testtool.Ostree(t)
	dir := t.TempDir()
	repo, tree := filepath.Join(dir, "repo"), filepath.Join(dir, "tree")
	for name, content := range map[string]string{"hello.txt": "hello\n", "sub/a": "a", "sub/deeper/b": "b"} {
		p := filepath.Join(tree, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("hello.txt", filepath.Join(tree, "link")); err != nil {
		t.Fatal(err)
	}
	manifest := `{"schemaVersion":2,"layers":[{"digest":"sha256:` + strings.Repeat("ab", 32) + `","size":1}]}`
	testtool.RunOstree(t, "init", "--repo="+repo, "--mode=archive")
	commit := strings.TrimSpace(testtool.RunOstree(t, "commit", "--repo="+repo, "-b", "test",
		"--tree=dir="+tree, "--timestamp=@1700000000", "-s", "the subject", "--body", "the body",
		"--add-metadata-string=version=1.2", "--add-metadata-string=ostree.manifest="+manifest,
		"--add-detached-metadata-string=dk=dv"))

	seen := map[string]int{}
	var commitmeta string
	err := filepath.WalkDir(filepath.Join(repo, "objects"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ext := filepath.Ext(path)
		typ, ok := ostreeObjectTypes[ext]
		if !ok {
			return nil
		}
		seen[ext]++
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		v, err := Unmarshal(typ, data)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			return nil
		}
		if again, err := Marshal(typ, v); err != nil || !bytes.Equal(again, data) {
			t.Errorf("%s: re-encoding gave %x, %v; want %x", path, again, err, data)
		}
		name := filepath.Base(filepath.Dir(path)) + strings.TrimSuffix(filepath.Base(path), ext)
		if ext == ".commitmeta" {
			commitmeta = path
		} else if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != name {
			t.Errorf("%s: content hashes to %x", path, sum)
		}
		if ext == ".commit" {
			checkCommit(t, v.([]any), manifest)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen[".commit"] != 1 || seen[".dirtree"] != 3 || seen[".dirmeta"] != 1 || seen[".commitmeta"] != 1 {
		t.Fatalf("objects seen: %v", seen)
	}

	d, err := UnmarshalVarDict(mustRead(t, commitmeta))
	if err != nil {
		t.Fatal(err)
	}
	if s, ok, err := d.LookupString("dk"); s != "dv" || !ok || err != nil {
		t.Errorf(`detached "dk" = %q, %v, %v`, s, ok, err)
	}

	// Now the other way: ostree must read what this package writes.
	d.Set("dk", NewString("replaced"))
	d.Set("list", Variant{Type: "as", Value: []string{"a", "b"}})
	d.Set("flag", Variant{Type: "b", Value: true})
	d.Set("bytes", Variant{Type: "ay", Value: []byte{1, 2}})
	d.Set("nested", Variant{Type: "a{sv}", Value: VarDict{{"x", Variant{Type: "i", Value: int32(-1)}}}})
	data, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(commitmeta, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"dk": "'replaced'", "list": "['a', 'b']", "flag": "true", "bytes": "[byte 0x01, 0x02]", "nested": "{'x': <-1>}",
	} {
		got := testtool.RunOstree(t, "show", "--repo="+repo, commit, "--print-detached-metadata-key="+key)
		if strings.TrimSpace(got) != want {
			t.Errorf("ostree shows detached %q as %q, want %q", key, got, want)
		}
	}
}

// checkCommit checks the decoded fields of the commit made above.
func checkCommit(t *testing.T, c []any, manifest string) {
	t.Helper()
	meta := c[0].([]DictEntry)
	got := map[string]Variant{}
	for _, e := range meta {
		got[e.Key.(string)] = e.Value.(Variant)
	}
	if got["version"] != NewString("1.2") || got["ostree.manifest"] != NewString(manifest) {
		t.Errorf("commit metadata %v", meta)
	}
	if rb := got["ostree.ref-binding"]; rb.Type != "as" || !sameValue(rb.Value, []any{"test"}) {
		t.Errorf("ref binding %#v", rb)
	}
	if parent := c[1].([]byte); len(parent) != 0 {
		t.Errorf("parent %x", parent)
	}
	if c[3] != "the subject" || c[4] != "the body" {
		t.Errorf("subject %q, body %q", c[3], c[4])
	}
	// OSTree stores the timestamp big-endian, on top of GVariant's order.
	if ts := bits.ReverseBytes64(c[5].(uint64)); ts != 1700000000 {
		t.Errorf("timestamp %d", ts)
	}
	if len(c[6].([]byte)) != 32 || len(c[7].([]byte)) != 32 {
		t.Errorf("root checksums %x %x", c[6], c[7])
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
