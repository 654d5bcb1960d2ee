package updatecachetest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"io/fs"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
)

var created = time.Date(2025, 6, 1, 8, 30, 0, 0, time.UTC)

func testSpec(f Format, c Compression) ImageSpec {
	return ImageSpec{
		Version:      "41.20250601.0",
		Created:      created,
		Architecture: "arm64",
		Labels:       map[string]string{"containers.bootc": "1"},
		Format:       f,
		Compression:  c,
		Layers: []Layer{
			{Files: []File{
				{Path: "/usr", Mode: fs.ModeDir},
				{Path: "usr/bin/sh", Content: []byte("shell"), Mode: 0o755},
				{Path: "usr/bin/bash", Mode: fs.ModeSymlink, Target: "sh"},
			}},
			{Files: []File{{Path: "etc/os-release", Content: []byte("ID=test\n")}}},
		},
	}
}

// tarEntry is what we check of a layer's tar entry.
type tarEntry struct {
	name     string
	typeflag byte
	mode     int64
	link     string
	content  string
}

func readLayer(t *testing.T, b Blob, c Compression) []tarEntry {
	t.Helper()
	var r io.Reader = bytes.NewReader(b.Data)
	switch c {
	case Gzip:
		zr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	case Zstd:
		zr, err := zstd.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	}
	raw, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if got := digest.FromBytes(raw); got != b.DiffID {
		t.Errorf("diff ID %s, uncompressed digest %s", b.DiffID, got)
	}
	var entries []tarEntry
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return entries
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(created) || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: mtime %v uid %d gid %d", h.Name, h.ModTime, h.Uid, h.Gid)
		}
		content, _ := io.ReadAll(tr)
		entries = append(entries, tarEntry{h.Name, h.Typeflag, h.Mode, h.Linkname, string(content)})
	}
}

func TestNewImage(t *testing.T) {
	for _, tc := range []struct {
		name                                string
		format                              Format
		comp                                Compression
		manifestType, configType, layerType string
	}{
		{"oci gzip", OCI, Gzip, imgspecv1.MediaTypeImageManifest, imgspecv1.MediaTypeImageConfig, imgspecv1.MediaTypeImageLayerGzip},
		{"oci zstd", OCI, Zstd, imgspecv1.MediaTypeImageManifest, imgspecv1.MediaTypeImageConfig, imgspecv1.MediaTypeImageLayerZstd},
		{"oci uncompressed", OCI, Uncompressed, imgspecv1.MediaTypeImageManifest, imgspecv1.MediaTypeImageConfig, imgspecv1.MediaTypeImageLayer},
		{"docker gzip", Docker, Gzip, MediaTypeDockerManifest, MediaTypeDockerConfig, "application/vnd.docker.image.rootfs.diff.tar.gzip"},
		{"docker uncompressed", Docker, Uncompressed, MediaTypeDockerManifest, MediaTypeDockerConfig, "application/vnd.docker.image.rootfs.diff.tar"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := NewImage(testSpec(tc.format, tc.comp))
			if err != nil {
				t.Fatal(err)
			}
			again, err := NewImage(testSpec(tc.format, tc.comp))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(img.Manifest, again.Manifest) || img.ManifestDigest != again.ManifestDigest || !bytes.Equal(img.Layers[0].Data, again.Layers[0].Data) {
				t.Fatal("the same spec built different bytes")
			}

			var m imgspecv1.Manifest
			if err := json.Unmarshal(img.Manifest, &m); err != nil {
				t.Fatal(err)
			}
			if img.MediaType != tc.manifestType || m.MediaType != tc.manifestType || m.SchemaVersion != 2 {
				t.Errorf("manifest type %q/%q schema %d", img.MediaType, m.MediaType, m.SchemaVersion)
			}
			if img.ManifestDigest != digest.FromBytes(img.Manifest) || img.ConfigDigest() != digest.FromBytes(img.Config.Data) {
				t.Error("digests do not match the bytes")
			}
			if m.Config.MediaType != tc.configType || m.Config.Digest != img.ConfigDigest() || m.Config.Size != int64(len(img.Config.Data)) {
				t.Errorf("config descriptor %+v", m.Config)
			}
			if len(m.Layers) != 2 {
				t.Fatalf("%d layers", len(m.Layers))
			}
			for i, l := range m.Layers {
				b := img.Layers[i]
				if l.MediaType != tc.layerType || l.Digest != b.Digest || l.Size != int64(len(b.Data)) || b.Digest != digest.FromBytes(b.Data) {
					t.Errorf("layer %d descriptor %+v", i, l)
				}
			}

			var cfg imgspecv1.Image
			if err := json.Unmarshal(img.Config.Data, &cfg); err != nil {
				t.Fatal(err)
			}
			if cfg.OS != "linux" || cfg.Architecture != "arm64" || cfg.Created == nil || !cfg.Created.Equal(created) {
				t.Errorf("config platform/created: %+v", cfg)
			}
			if cfg.Config.Labels[VersionLabel] != "41.20250601.0" || cfg.Config.Labels["containers.bootc"] != "1" {
				t.Errorf("labels %v", cfg.Config.Labels)
			}
			if len(cfg.RootFS.DiffIDs) != 2 || cfg.RootFS.DiffIDs[1] != img.Layers[1].DiffID {
				t.Errorf("diff IDs %v", cfg.RootFS.DiffIDs)
			}

			want := []tarEntry{
				{"usr/", tar.TypeDir, 0o755, "", ""},
				{"usr/bin/sh", tar.TypeReg, 0o755, "", "shell"},
				{"usr/bin/bash", tar.TypeSymlink, 0o777, "sh", ""},
			}
			got := readLayer(t, img.Layers[0], tc.comp)
			if len(got) != len(want) {
				t.Fatalf("entries %+v", got)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("entry %d: %+v, want %+v", i, got[i], want[i])
				}
			}
			if got := readLayer(t, img.Layers[1], tc.comp); len(got) != 1 || got[0] != (tarEntry{"etc/os-release", tar.TypeReg, 0o644, "", "ID=test\n"}) {
				t.Errorf("layer 1: %+v", got)
			}
		})
	}
}

func TestNewImageDefaults(t *testing.T) {
	img, err := NewImage(ImageSpec{})
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(img.Config.Data, &cfg); err != nil {
		t.Fatal(err)
	}
	if _, ok := cfg["created"]; ok {
		t.Errorf("zero Created must leave created out: %s", img.Config.Data)
	}
	if img.Platform.OS != "linux" || img.Platform.Architecture == "" || len(img.Layers) != 0 {
		t.Errorf("defaults: %+v, %d layers", img.Platform, len(img.Layers))
	}
}

func TestNewImageErrors(t *testing.T) {
	for name, spec := range map[string]ImageSpec{
		"docker zstd":        {Format: Docker, Compression: Zstd},
		"docker annotations": {Format: Docker, Annotations: map[string]string{"a": "b"}},
		"empty path":         {Layers: []Layer{{Files: []File{{Path: "/"}}}}},
		"bad compression":    {Compression: Compression(42), Layers: []Layer{{}}},
	} {
		if _, err := NewImage(spec); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestNewIndex(t *testing.T) {
	build := func(f Format, arch string) *Image {
		spec := testSpec(f, Gzip)
		spec.Architecture = arch
		img, err := NewImage(spec)
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	for _, tc := range []struct {
		format    Format
		mediaType string
	}{{OCI, imgspecv1.MediaTypeImageIndex}, {Docker, MediaTypeDockerList}} {
		a, b := build(tc.format, "amd64"), build(tc.format, "arm64")
		idx, err := NewIndex(a, b)
		if err != nil {
			t.Fatal(err)
		}
		var got imgspecv1.Index
		if err := json.Unmarshal(idx.Manifest, &got); err != nil {
			t.Fatal(err)
		}
		if idx.MediaType != tc.mediaType || got.MediaType != tc.mediaType || idx.ManifestDigest != digest.FromBytes(idx.Manifest) || len(got.Manifests) != 2 {
			t.Fatalf("index %s", idx.Manifest)
		}
		for i, img := range []*Image{a, b} {
			d := got.Manifests[i]
			if d.Digest != img.ManifestDigest || d.Size != int64(len(img.Manifest)) || d.MediaType != img.MediaType ||
				d.Platform == nil || d.Platform.Architecture != img.Platform.Architecture {
				t.Errorf("entry %d: %+v", i, d)
			}
		}
	}
	if _, err := NewIndex(); err == nil {
		t.Error("empty index: no error")
	}
	if _, err := NewIndex(build(OCI, "amd64"), build(Docker, "arm64")); err == nil {
		t.Error("mixed formats: no error")
	}
}
