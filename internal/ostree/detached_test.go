package ostree

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/osimage/updatecache/internal/gvariant"
	"github.com/osimage/updatecache/internal/keys"
	"github.com/osimage/updatecache/internal/testtool"
)

// entryBytes serialises each entry on its own, to compare entries byte for
// byte across a rewrite.
func entryBytes(t *testing.T, md gvariant.VarDict) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	for _, e := range md {
		b, err := gvariant.VarDict{e}.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		m[e.Key] = b
	}
	return m
}

func TestDetachedMetadataInterop(t *testing.T) {
	ctx := context.Background()
	r := ostreeRepo(t)
	sum := ostreeCommit(t, r, map[string]string{"a": "1"}, "-b", "main",
		"--add-detached-metadata-string=theirs.one=1", "--add-detached-metadata-string=theirs.two=2")
	p := r.ObjectPath(sum, ObjectCommitMeta)
	before, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	md, exists, err := r.ReadDetachedMetadata(sum)
	if err != nil || !exists || len(md) != 2 {
		t.Fatalf("ReadDetachedMetadata = %+v, %v, %v", md, exists, err)
	}
	beforeEntries := entryBytes(t, md)

	// Set our keys next to ostree's: theirs stay byte for byte.
	changed, err := r.UpdateDetachedMetadata(ctx, sum, func(md gvariant.VarDict) (gvariant.VarDict, error) {
		md.Set(keys.CachedManifestDigest, gvariant.NewString("sha256:"+strings.Repeat("1", 64)))
		md.Set(keys.CachedManifest, gvariant.NewString(`{"schemaVersion":2}`))
		md.Set("counter", gvariant.Variant{Type: "u", Value: uint32(3)})
		return md, nil
	})
	if err != nil || !changed {
		t.Fatalf("UpdateDetachedMetadata = %v, %v", changed, err)
	}
	after, _, err := r.ReadDetachedMetadata(sum)
	if err != nil {
		t.Fatal(err)
	}
	afterEntries := entryBytes(t, after)
	for key, b := range beforeEntries {
		if !bytes.Equal(afterEntries[key], b) {
			t.Errorf("untouched entry %q changed: %x -> %x", key, b, afterEntries[key])
		}
	}
	if len(after) != 5 || after[0].Key != "theirs.one" || after[1].Key != "theirs.two" {
		t.Errorf("entries after update: %+v", after)
	}
	for key, want := range map[string]string{
		"theirs.one":              "'1'",
		"theirs.two":              "'2'",
		keys.CachedManifestDigest: "'sha256:" + strings.Repeat("1", 64) + "'",
		keys.CachedManifest:       `'{"schemaVersion":2}'`,
	} {
		if got := showKey(t, r, sum, "print-detached-metadata-key", key); got != want {
			t.Errorf("ostree show --print-detached-metadata-key=%s = %q; want %q", key, got, want)
		}
	}
	// The file holds exactly the normal form, with ostree's bytes as prefix
	// material untouched: decoding and re-encoding it is the identity.
	raw, _ := os.ReadFile(p)
	if again, err := after.Marshal(); err != nil || !bytes.Equal(again, raw) {
		t.Errorf("on-disk bytes are not the normal form of what reads back: %v", err)
	}
	if bytes.Equal(raw, before) {
		t.Error("file unchanged after an update that changed it")
	}

	// A no-op update leaves bytes and mtime alone.
	old := time.Unix(1000000000, 0)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	for name, update := range map[string]func(gvariant.VarDict) (gvariant.VarDict, error){
		"identity": func(md gvariant.VarDict) (gvariant.VarDict, error) { return md, nil },
		"same value": func(md gvariant.VarDict) (gvariant.VarDict, error) {
			md.Set("theirs.one", gvariant.NewString("1"))
			return md, nil
		},
	} {
		changed, err := r.UpdateDetachedMetadata(ctx, sum, update)
		if err != nil || changed {
			t.Errorf("%s update = %v, %v; want unchanged", name, changed, err)
		}
		st, _ := os.Stat(p)
		data, _ := os.ReadFile(p)
		if !st.ModTime().Equal(old) || !bytes.Equal(data, raw) {
			t.Errorf("%s update touched the file", name)
		}
	}
	// An error from update writes nothing.
	boom := errors.New("boom")
	if _, err := r.UpdateDetachedMetadata(ctx, sum, func(md gvariant.VarDict) (gvariant.VarDict, error) {
		md.Delete("theirs.one")
		return md, boom
	}); !errors.Is(err, boom) {
		t.Errorf("update error: %v; want boom", err)
	}
	if data, _ := os.ReadFile(p); !bytes.Equal(data, raw) {
		t.Error("a failed update changed the file")
	}

	// Deleting a key and writing a whole dictionary, ostree reading both.
	if changed, err := r.UpdateDetachedMetadata(ctx, sum, func(md gvariant.VarDict) (gvariant.VarDict, error) {
		md.Delete("theirs.two")
		return md, nil
	}); err != nil || !changed {
		t.Fatalf("delete update = %v, %v", changed, err)
	}
	if err := testtool.OstreeCommand(t, "show", "--repo="+r.Path(), sum, "--print-detached-metadata-key=theirs.two").Run(); err == nil {
		t.Error("ostree still shows a deleted key")
	}
	if err := r.WriteDetachedMetadata(ctx, sum, gvariant.VarDict{{Key: "only", Value: gvariant.NewString("x")}}); err != nil {
		t.Fatal(err)
	}
	if got := showKey(t, r, sum, "print-detached-metadata-key", "only"); got != "'x'" {
		t.Errorf("after WriteDetachedMetadata ostree shows %q", got)
	}
	// Empty metadata is a 0-byte file, which reads back as present and empty.
	if err := r.WriteDetachedMetadata(ctx, sum, nil); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(p); err != nil || st.Size() != 0 {
		t.Fatalf("empty metadata: %v, %v", st, err)
	}
	md, exists, err = r.ReadDetachedMetadata(sum)
	if err != nil || !exists || md == nil || len(md) != 0 {
		t.Errorf("0-byte file reads as %#v, %v, %v; want empty, true", md, exists, err)
	}
	if changed, err := r.UpdateDetachedMetadata(ctx, sum, func(md gvariant.VarDict) (gvariant.VarDict, error) { return nil, nil }); err != nil || changed {
		t.Errorf("emptying an empty file = %v, %v", changed, err)
	}
	assertNoTempFiles(t, r.Path())
}

func TestDetachedMetadataWithoutFile(t *testing.T) {
	ctx := context.Background()
	r := ostreeRepo(t)
	sum := ostreeCommit(t, r, map[string]string{"a": "1"}, "-b", "main")
	p := r.ObjectPath(sum, ObjectCommitMeta)
	md, exists, err := r.ReadDetachedMetadata(sum)
	if md != nil || exists || err != nil {
		t.Errorf("ReadDetachedMetadata without file = %v, %v, %v", md, exists, err)
	}
	// An update that adds nothing creates no file.
	var seen gvariant.VarDict
	changed, err := r.UpdateDetachedMetadata(ctx, sum, func(md gvariant.VarDict) (gvariant.VarDict, error) {
		seen = md
		return md, nil
	})
	if err != nil || changed || seen == nil || len(seen) != 0 {
		t.Errorf("no-op update without file = %v, %v, saw %#v", changed, err, seen)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("no-op update created %s: %v", p, err)
	}
	if changed, err := r.UpdateDetachedMetadata(ctx, sum, func(md gvariant.VarDict) (gvariant.VarDict, error) {
		md.Set("k", gvariant.NewString("v"))
		return md, nil
	}); err != nil || !changed {
		t.Fatalf("update = %v, %v", changed, err)
	}
	if got := showKey(t, r, sum, "print-detached-metadata-key", "k"); got != "'v'" {
		t.Errorf("ostree shows %q", got)
	}

	missing := strings.Repeat("0", 64)
	if err := r.WriteDetachedMetadata(ctx, missing, nil); !errors.Is(err, ErrObjectNotFound) {
		t.Errorf("WriteDetachedMetadata on a missing commit: %v; want ErrObjectNotFound", err)
	}
	if _, err := r.UpdateDetachedMetadata(ctx, missing, func(md gvariant.VarDict) (gvariant.VarDict, error) { return md, nil }); !errors.Is(err, ErrObjectNotFound) {
		t.Errorf("UpdateDetachedMetadata on a missing commit: %v; want ErrObjectNotFound", err)
	}
	if _, err := os.Stat(r.ObjectPath(missing, ObjectCommitMeta)); !errors.Is(err, os.ErrNotExist) {
		t.Error("metadata written for a missing commit")
	}
	for _, bad := range []string{"", "x", strings.ToUpper(sum)} {
		if _, _, err := r.ReadDetachedMetadata(bad); !errors.Is(err, ErrInvalidChecksum) {
			t.Errorf("ReadDetachedMetadata(%q): %v; want ErrInvalidChecksum", bad, err)
		}
		if err := r.WriteDetachedMetadata(ctx, bad, nil); !errors.Is(err, ErrInvalidChecksum) {
			t.Errorf("WriteDetachedMetadata(%q): %v; want ErrInvalidChecksum", bad, err)
		}
	}
	if err := r.WriteDetachedMetadata(ctx, sum, gvariant.VarDict{{Key: "k", Value: gvariant.Variant{Type: "s", Value: 7}}}); !errors.Is(err, gvariant.ErrTypeMismatch) {
		t.Errorf("WriteDetachedMetadata of an unencodable value: %v; want gvariant.ErrTypeMismatch", err)
	}
}

func TestDetachedMetadataCorrupt(t *testing.T) {
	ctx := context.Background()
	r := ostreeRepo(t)
	sum := ostreeCommit(t, r, map[string]string{"a": "1"}, "-b", "main")
	p := r.ObjectPath(sum, ObjectCommitMeta)
	valid, _ := gvariant.VarDict{{Key: "k", Value: gvariant.NewString("v")}}.Marshal()
	for _, tc := range []struct {
		name  string
		setup func() error
		large bool
	}{
		{"garbage", func() error { return os.WriteFile(p, []byte("garbage!"), 0o644) }, false},
		{"truncated", func() error { return os.WriteFile(p, valid[:len(valid)-1], 0o644) }, false},
		{"trailing byte", func() error { return os.WriteFile(p, append(bytes.Clone(valid), 0), 0o644) }, false},
		{"over 64 MiB", func() error {
			if err := os.WriteFile(p, valid, 0o644); err != nil {
				return err
			}
			return os.Truncate(p, maxDetachedMetadataSize+1) // sparse
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.setup(); err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(p)
			_, exists, err := r.ReadDetachedMetadata(sum)
			var ce *CorruptError
			if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) || ce.Path != p || exists {
				t.Errorf("ReadDetachedMetadata: %v, exists %v; want a *CorruptError for %s", err, exists, p)
			}
			if tc.large != errors.Is(err, ErrTooLarge) {
				t.Errorf("ReadDetachedMetadata: %v; ErrTooLarge expected: %v", err, tc.large)
			}
			called := false
			changed, err := r.UpdateDetachedMetadata(ctx, sum, func(md gvariant.VarDict) (gvariant.VarDict, error) {
				called = true
				return gvariant.VarDict{}, nil
			})
			if !errors.Is(err, ErrCorrupt) || changed || called {
				t.Errorf("UpdateDetachedMetadata: %v, %v, update called %v; want ErrCorrupt, nothing done", changed, err, called)
			}
			if after, _ := os.ReadFile(p); !bytes.Equal(after, before) {
				t.Error("the corrupt file was changed")
			}
		})
	}
}

func TestDetachedMetadataPrunedWithCommit(t *testing.T) {
	ctx := context.Background()
	r := ostreeRepo(t)
	tree, meta := writeEmptyTree(t, r)
	sum, err := r.WriteCommit(ctx, &Commit{Subject: "doomed", Timestamp: time.Unix(5, 0), RootTree: tree, RootMeta: meta})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SetRef(ctx, "doomed", sum); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteDetachedMetadata(ctx, sum, gvariant.VarDict{{Key: "k", Value: gvariant.NewString("v")}}); err != nil {
		t.Fatal(err)
	}
	testtool.RunOstree(t, "refs", "--repo="+r.Path(), "--delete", "doomed")
	testtool.RunOstree(t, "prune", "--repo="+r.Path(), "--refs-only")
	for _, typ := range []ObjectType{ObjectCommit, ObjectCommitMeta} {
		if _, err := os.Stat(r.ObjectPath(sum, typ)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived prune: %v", typ, err)
		}
	}
	if _, _, err := r.ReadDetachedMetadata(sum); err != nil {
		t.Errorf("ReadDetachedMetadata after prune: %v", err)
	}
}

func TestDetachedMetadataConcurrentUpdates(t *testing.T) {
	ctx := context.Background()
	r := ostreeRepo(t)
	sum := ostreeCommit(t, r, map[string]string{"a": "1"}, "-b", "main")
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := r.UpdateDetachedMetadata(ctx, sum, func(md gvariant.VarDict) (gvariant.VarDict, error) {
				time.Sleep(time.Millisecond) // widen the read-modify-write window
				md.Set(fmt.Sprintf("key%02d", i), gvariant.NewString("v"))
				return md, nil
			})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	md, _, err := r.ReadDetachedMetadata(sum)
	if err != nil || len(md) != n {
		t.Errorf("after %d concurrent updates: %d keys, %v", n, len(md), err)
	}

	// Held exclusively (as by prune), the repository lock makes updates
	// wait and then give up.
	r.lockTimeout = 200 * time.Millisecond
	unlock := mustLock(t, r, LockExclusive)
	defer unlock()
	if _, err := r.UpdateDetachedMetadata(ctx, sum, func(md gvariant.VarDict) (gvariant.VarDict, error) { return nil, nil }); !errors.Is(err, ErrLockTimeout) {
		t.Errorf("update under an exclusive repository lock: %v; want ErrLockTimeout", err)
	}
}

func BenchmarkReadDetachedMetadata(b *testing.B) {
	dir := b.TempDir()
	r, err := Create(dir+"/repo", ModeArchive)
	if err != nil {
		b.Fatal(err)
	}
	// A 64 KiB a{sv}: ostree-ext's cached-update keys with a large config.
	md := gvariant.VarDict{
		{Key: keys.CachedManifestDigest, Value: gvariant.NewString("sha256:" + strings.Repeat("a", 64))},
		{Key: keys.CachedManifest, Value: gvariant.NewString(strings.Repeat("m", 16<<10))},
		{Key: keys.CachedConfig, Value: gvariant.NewString(strings.Repeat("c", 48<<10-300))},
	}
	data, err := md.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	sum := strings.Repeat("ab", 32)
	p := r.ObjectPath(sum, ObjectCommitMeta)
	if err := os.MkdirAll(p[:strings.LastIndexByte(p, '/')], 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := r.ReadDetachedMetadata(sum); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDetachedMetadataOverTheReadCap: metadata the reader would refuse is
// never written: the write fails with ErrTooLarge and the file on disk
// (here one key) stays as it was. One byte less than the cap is written and
// reads back.
func TestDetachedMetadataOverTheReadCap(t *testing.T) {
	ctx := context.Background()
	r := ostreeRepo(t)
	sum := ostreeCommit(t, r, map[string]string{"a": "1"}, "-b", "main")
	if err := r.WriteDetachedMetadata(ctx, sum, gvariant.VarDict{{Key: "k", Value: gvariant.NewString("v")}}); err != nil {
		t.Fatal(err)
	}
	p := r.ObjectPath(sum, ObjectCommitMeta)
	before, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	// A one-entry a{sv} holding a string: key, NUL, padding to 8, value, NUL,
	// NUL, "s", then the entry's and the array's framing offsets, 4 bytes each
	// at this size.
	sized := func(total int) gvariant.VarDict {
		return gvariant.VarDict{{Key: "big", Value: gvariant.NewString(strings.Repeat("x", total-8-3-8))}}
	}
	for _, tt := range []struct {
		name  string
		write func(md gvariant.VarDict) error
	}{
		{"write", func(md gvariant.VarDict) error { return r.WriteDetachedMetadata(ctx, sum, md) }},
		{"update", func(md gvariant.VarDict) error {
			_, err := r.UpdateDetachedMetadata(ctx, sum, func(gvariant.VarDict) (gvariant.VarDict, error) { return md, nil })
			return err
		}},
	} {
		if err := tt.write(sized(maxDetachedMetadataSize + 1)); !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s over the cap: %v, want ErrTooLarge", tt.name, err)
		}
		if after, _ := os.ReadFile(p); !bytes.Equal(after, before) {
			t.Errorf("%s over the cap changed the file", tt.name)
		}
	}
	if err := r.WriteDetachedMetadata(ctx, sum, sized(maxDetachedMetadataSize)); err != nil {
		t.Fatalf("write at the cap: %v", err)
	}
	if st, _ := os.Stat(p); st.Size() != maxDetachedMetadataSize {
		t.Fatalf("wrote %d bytes, want %d", st.Size(), maxDetachedMetadataSize)
	}
	if _, _, err := r.ReadDetachedMetadata(sum); err != nil {
		t.Errorf("reading back metadata at the cap: %v", err)
	}
}
