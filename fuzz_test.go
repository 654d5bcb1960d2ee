package updatecache

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/osimage/updatecache/internal/gvariant"
	"github.com/osimage/updatecache/internal/keys"
	"github.com/osimage/updatecache/updatecachetest"
)

// fuzzImage builds version v of a small OS image with the test kit.
func fuzzImage(tb testing.TB, v string, format updatecachetest.Format) *updatecachetest.Image {
	tb.Helper()
	img, err := updatecachetest.NewImage(updatecachetest.ImageSpec{
		Version: v, Architecture: "arm64", Variant: "v8", Format: format,
		Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Layers: []updatecachetest.Layer{
			{Files: []updatecachetest.File{{Path: "usr/lib/os-release", Content: []byte("ID=fuzz\n")}}},
			{Files: []updatecachetest.File{{Path: "usr/share/v", Content: []byte(v)}}},
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return img
}

// fuzzRecord is the record a check of img would store.
func fuzzRecord(img *updatecachetest.Image) *cachedRecord {
	return &cachedRecord{
		manifestDigest: img.ManifestDigest,
		manifest:       img.Manifest,
		config:         img.Config.Data,
		topDigest:      img.ManifestDigest,
		checkedAt:      time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC),
		platform:       "linux/arm64/v8",
	}
}

// marshalRecord is rec stored over md, serialised.
func marshalRecord(tb testing.TB, md gvariant.VarDict, rec *cachedRecord) []byte {
	tb.Helper()
	if err := rec.store(&md); err != nil {
		tb.Fatal(err)
	}
	data, err := md.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// otherKeys returns md without the cached-update keys: what clearing and
// caching must leave as it was.
func otherKeys(md gvariant.VarDict) gvariant.VarDict {
	others := gvariant.VarDict{}
	for _, e := range md {
		if !slices.Contains(keys.CachedUpdate, e.Key) {
			others = append(others, e)
		}
	}
	return others
}

// FuzzCachedUpdate feeds detached metadata bytes through what a query does
// with them (UnmarshalVarDict, readCachedRecord, cachedUpdate), and what
// clear and check do to them (remove the cached keys; store a new record
// over them). Nothing panics; a refusal is ErrMalformed from the decoder,
// else ErrCorruptCache (with ErrInvalidMetadata for a manifest or config
// that does not describe an image); clearing and caching keep every other
// key in order, and a stored record reads back as it was. Seeds: records
// made here, and in testdata/fuzz/FuzzCachedUpdate .commitmeta files
// written by the command (after check, after clear, over a commit made by
// the real ostree commit with an unrelated detached key).
func FuzzCachedUpdate(f *testing.F) {
	deployedImg := fuzzImage(f, "1", updatecachetest.OCI)
	deployedParsed, err := parseImage(deployedImg.ManifestDigest, deployedImg.Manifest, deployedImg.Config.Data)
	if err != nil {
		f.Fatal(err)
	}
	deployed := &Deployed{Image: *deployedParsed, MergeCommit: "0123"}
	update := fuzzRecord(fuzzImage(f, "2", updatecachetest.OCI))
	unrelated := gvariant.VarDict{{Key: "org.example.unrelated", Value: gvariant.NewString("keep me")}}

	f.Add([]byte{})
	f.Add(marshalRecord(f, nil, update))
	f.Add(marshalRecord(f, unrelated, update))
	docker := fuzzRecord(fuzzImage(f, "3", updatecachetest.Docker))
	docker.signature = &SignatureVerdict{Reason: "no signature"}
	f.Add(marshalRecord(f, unrelated, docker))
	stale := fuzzRecord(deployedImg) // the deployed image itself
	stale.signature = &SignatureVerdict{Allowed: true}
	f.Add(marshalRecord(f, nil, stale))

	f.Fuzz(func(t *testing.T, data []byte) {
		md, err := gvariant.UnmarshalVarDict(data)
		if err != nil {
			if !errors.Is(err, gvariant.ErrMalformed) {
				t.Fatalf("UnmarshalVarDict: %v is not ErrMalformed", err)
			}
			return
		}
		others := otherKeys(md)

		rec, err := readCachedRecord(md)
		switch {
		case err != nil:
			if !errors.Is(err, ErrCorruptCache) {
				t.Fatalf("readCachedRecord: %v is not ErrCorruptCache", err)
			}
		case rec == nil:
			if _, ok := md.Lookup(keys.CachedManifestDigest); ok {
				t.Fatalf("%s present, yet no cached update", keys.CachedManifestDigest)
			}
		default:
			checkCachedUpdate(t, deployed, rec, md)
		}

		// clear: only the cached keys go.
		cleared := slices.Clone(md)
		deleteCachedUpdate(&cleared)
		if !reflect.DeepEqual(cleared, others) {
			t.Fatalf("clearing changed other keys:\n%v\nwant\n%v", cleared, others)
		}
		if rec, err := readCachedRecord(cleared); rec != nil || err != nil {
			t.Fatalf("after clearing: %v, %v", rec, err)
		}

		// check: a new record over whatever was there.
		stored, err := gvariant.UnmarshalVarDict(marshalRecord(t, slices.Clone(md), update))
		if err != nil {
			t.Fatalf("reading back a stored record: %v", err)
		}
		if got := otherKeys(stored); !reflect.DeepEqual(got, others) {
			t.Fatalf("caching changed other keys:\n%v\nwant\n%v", got, others)
		}
		if got, err := readCachedRecord(stored); err != nil || !reflect.DeepEqual(got, update) {
			t.Fatalf("stored %s, read back %s, %v", describeRecord(update), describeRecord(got), err)
		}
	})
}

// describeRecord prints a record for a failure message.
func describeRecord(rec *cachedRecord) string {
	if rec == nil {
		return "no record"
	}
	return fmt.Sprintf("{digest %s, manifest %d bytes, config %d bytes, top %s, checked at %v, platform %q, signature %+v}",
		rec.manifestDigest, len(rec.manifest), len(rec.config), rec.topDigest, rec.checkedAt, rec.platform, rec.signature)
}

// checkCachedUpdate checks what a query makes of a record read from md.
func checkCachedUpdate(t *testing.T, deployed *Deployed, rec *cachedRecord, md gvariant.VarDict) {
	t.Helper()
	for key, got := range map[string][]byte{keys.CachedManifest: rec.manifest, keys.CachedConfig: rec.config} {
		if want, _, _ := md.LookupString(key); string(got) != want {
			t.Fatalf("%s read as %q, stored %q", key, got, want)
		}
	}
	u, err := rec.updateOf(deployed)
	if err != nil {
		if !errors.Is(err, ErrCorruptCache) || !errors.Is(err, ErrInvalidMetadata) {
			t.Fatalf("updateOf: %v is not ErrCorruptCache and ErrInvalidMetadata", err)
		}
		return
	}
	img, err := parseImage(rec.manifestDigest, rec.manifest, rec.config)
	if err != nil {
		t.Fatalf("updateOf accepted what parseImage refuses: %v", err)
	}
	if same := deployed.sameImage(img); (u == nil) != same {
		t.Fatalf("update %+v, but same image as deployed: %v", u, same)
	}
	if u == nil {
		return
	}
	if u.ManifestDigest != rec.manifestDigest || u.TopDigest != rec.topDigest || !u.CheckedAt.Equal(rec.checkedAt) || u.Signature != rec.signature {
		t.Fatalf("update %+v does not show record %s", u, describeRecord(rec))
	}
	distinct := map[digest.Digest]bool{}
	for _, l := range u.Layers {
		distinct[l.Digest] = true
	}
	if u.Diff.Total != len(distinct) {
		t.Fatalf("diff total %d, %d distinct layers", u.Diff.Total, len(distinct))
	}
}

// editJSON returns the JSON object doc changed by edit.
func editJSON(tb testing.TB, doc []byte, edit func(map[string]any)) []byte {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		tb.Fatal(err)
	}
	edit(m)
	out, err := json.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// FuzzImageMetadata feeds a manifest digest, manifest and config to
// parseImage, as they come from a registry or a merge commit. Nothing
// panics, a refusal wraps ErrInvalidMetadata, and an accepted image is
// consistent: valid digests, no negative sizes, diff IDs for all layers or
// none, and a layer diff against itself that changes nothing. Seeds:
// images made by the test kit (OCI and Docker, with annotations, with a
// "null" config as very old ostree-ext wrote), hostile variants of them,
// and testdata/fuzz/FuzzImageMetadata.
func FuzzImageMetadata(f *testing.F) {
	for _, img := range []*updatecachetest.Image{fuzzImage(f, "1", updatecachetest.OCI), fuzzImage(f, "2", updatecachetest.Docker)} {
		f.Add(img.ManifestDigest.String(), img.Manifest, img.Config.Data)
		f.Add(img.ManifestDigest.String(), img.Manifest, []byte("null"))
	}
	// Hostile variants of a real image: a negative layer size, a layer
	// listed twice, fewer diff IDs than layers.
	img := fuzzImage(f, "3", updatecachetest.OCI)
	d := img.ManifestDigest.String()
	f.Add(d, editJSON(f, img.Manifest, func(m map[string]any) {
		m["layers"].([]any)[0].(map[string]any)["size"] = -1
	}), img.Config.Data)
	f.Add(d, editJSON(f, img.Manifest, func(m map[string]any) {
		m["layers"] = append(m["layers"].([]any), m["layers"].([]any)[0])
	}), img.Config.Data)
	f.Add(d, img.Manifest, editJSON(f, img.Config.Data, func(c map[string]any) {
		rootfs := c["rootfs"].(map[string]any)
		rootfs["diff_ids"] = rootfs["diff_ids"].([]any)[:1]
	}))
	annotated, err := updatecachetest.NewImage(updatecachetest.ImageSpec{
		Annotations: map[string]string{keys.CreatedLabel: "2025-06-07T08:09:10.5+02:00"},
		Labels:      map[string]string{keys.LegacyVersionLabel: "7"},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(annotated.ManifestDigest.String(), annotated.Manifest, annotated.Config.Data)

	f.Fuzz(func(t *testing.T, manifestDigest string, manifest, config []byte) {
		img, err := parseImage(digest.Digest(manifestDigest), manifest, config)
		if err != nil {
			if !errors.Is(err, ErrInvalidMetadata) {
				t.Fatalf("parseImage: %v is not ErrInvalidMetadata", err)
			}
			return
		}
		if img.ManifestDigest != digest.Digest(manifestDigest) || img.ManifestDigest.Validate() != nil || img.ConfigDigest.Validate() != nil {
			t.Fatalf("digests %q, %q", img.ManifestDigest, img.ConfigDigest)
		}
		withDiffID := 0
		for i, l := range img.Layers {
			if l.Digest.Validate() != nil || l.Size < 0 {
				t.Fatalf("layer %d: %+v", i, l)
			}
			if l.DiffID != "" {
				if l.DiffID.Validate() != nil {
					t.Fatalf("layer %d: diff ID %q", i, l.DiffID)
				}
				withDiffID++
			}
		}
		if withDiffID != 0 && withDiffID != len(img.Layers) {
			t.Fatalf("%d of %d layers have a diff ID", withDiffID, len(img.Layers))
		}
		if (img.Platform() == "") != (img.OS == "" || img.Architecture == "") {
			t.Fatalf("platform %q of os %q, architecture %q", img.Platform(), img.OS, img.Architecture)
		}
		distinct := map[digest.Digest]bool{}
		for _, l := range img.Layers {
			distinct[l.Digest] = true
		}
		if d := diffLayers(img, img); d.Total != len(distinct) || d.NAdded != 0 || d.NRemoved != 0 || d.AddedSize != 0 || d.RemovedSize != 0 {
			t.Fatalf("an image against itself: %+v", d)
		}
		if d := diffLayers(nil, img); d.Total != len(distinct) || d.NAdded != len(distinct) || d.NRemoved != 0 {
			t.Fatalf("against nothing: %+v, %d distinct layers", d, len(distinct))
		}
	})
}
