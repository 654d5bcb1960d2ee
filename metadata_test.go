package updatecache

import (
	"errors"
	"fmt"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseImage(t *testing.T) {
	md := digest.FromString("manifest")
	manifest := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
		"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + digest.FromString("c").String() + `","size":1},
		"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"` + digest.FromString("l1").String() + `","size":10},
		          {"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"` + digest.FromString("l2").String() + `","size":20}]%s}`
	created := `,"annotations":{"org.opencontainers.image.created":"2024-05-06T07:08:09Z"}`
	configTime := time.Date(2023, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name, manifest, config string
		want                   Image
	}{
		{
			name:     "oci version label and config time",
			manifest: fmt.Sprintf(manifest, ""),
			config:   `{"created":"2023-01-02T03:04:05.5Z","os":"linux","architecture":"arm64","variant":"v8","config":{"Labels":{"org.opencontainers.image.version":"42.1","version":"ignored"}}}`,
			want:     Image{Version: "42.1", Timestamp: time.Date(2023, 1, 2, 3, 4, 5, 5e8, time.UTC), OS: "linux", Architecture: "arm64", Variant: "v8"},
		},
		{
			// bootc shows the config's time; ostree-ext dates the merge commit by the annotation.
			name:     "plain version label, annotation time for the commit only",
			manifest: fmt.Sprintf(manifest, created),
			config:   `{"created":"2023-01-02T03:04:05Z","os":"linux","architecture":"amd64","config":{"Labels":{"version":"7"}}}`,
			want:     Image{Version: "7", Timestamp: configTime, commitTime: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC), OS: "linux", Architecture: "amd64"},
		},
		{
			name:     "created label before the config's time",
			manifest: fmt.Sprintf(manifest, ""),
			config:   `{"created":"2023-01-02T03:04:05Z","config":{"Labels":{"org.opencontainers.image.created":"2022-12-31T00:00:00Z"}}}`,
			want:     Image{Timestamp: time.Date(2022, 12, 31, 0, 0, 0, 0, time.UTC), commitTime: configTime},
		},
		{
			name:     "unparsable created label",
			manifest: fmt.Sprintf(manifest, ""),
			config:   `{"created":"2023-01-02T03:04:05Z","config":{"Labels":{"org.opencontainers.image.created":"yesterday"}}}`,
			want:     Image{Timestamp: configTime, commitTime: configTime},
		},
		{
			name:     "old ostree-ext null config",
			manifest: fmt.Sprintf(manifest, ""),
			config:   `null`,
			want:     Image{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := parseImage(md, []byte(tt.manifest), []byte(tt.config))
			require.NoError(t, err)
			assert.Equal(t, md, img.ManifestDigest)
			assert.Equal(t, digest.FromString("c"), img.ConfigDigest)
			assert.Equal(t, []Layer{
				{Digest: digest.FromString("l1"), Size: 10, MediaType: "application/vnd.oci.image.layer.v1.tar+gzip"},
				{Digest: digest.FromString("l2"), Size: 20, MediaType: "application/vnd.oci.image.layer.v1.tar+gzip"},
			}, img.Layers)
			assert.Equal(t, tt.want.Version, img.Version)
			assert.True(t, tt.want.Timestamp.Equal(img.Timestamp), "timestamp %v, want %v", img.Timestamp, tt.want.Timestamp)
			wantCommit := tt.want.commitTime
			if wantCommit.IsZero() {
				wantCommit = tt.want.Timestamp
			}
			assert.True(t, wantCommit.Equal(img.commitTime), "commit time %v, want %v", img.commitTime, wantCommit)
			assert.Equal(t, tt.want.Platform(), img.Platform())
		})
	}
}

func TestParseImageRejects(t *testing.T) {
	good := `{"schemaVersion":2,"config":{"digest":"` + digest.FromString("c").String() + `","size":1},"layers":[]}`
	tests := []struct {
		name, digest, manifest, config string
	}{
		{"bad manifest digest", "sha256:xyz", good, `{}`},
		{"not json", digest.FromString("m").String(), `{"schemaVersion":`, `{}`},
		{"schema 1", digest.FromString("m").String(), `{"schemaVersion":1}`, `{}`},
		{"config digest", digest.FromString("m").String(), `{"schemaVersion":2,"config":{"digest":"md5:00"}}`, `{}`},
		{"layer digest", digest.FromString("m").String(), `{"schemaVersion":2,"config":{"digest":"` + digest.FromString("c").String() + `"},"layers":[{"digest":"x"}]}`, `{}`},
		{"negative size", digest.FromString("m").String(), `{"schemaVersion":2,"config":{"digest":"` + digest.FromString("c").String() + `"},"layers":[{"digest":"` + digest.FromString("l").String() + `","size":-1}]}`, `{}`},
		{"config not json", digest.FromString("m").String(), good, `{"os":`},
		{"config wrong shape", digest.FromString("m").String(), good, `{"config":{"Labels":[1]}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseImage(digest.Digest(tt.digest), []byte(tt.manifest), []byte(tt.config))
			assert.True(t, errors.Is(err, ErrInvalidMetadata), "got %v", err)
		})
	}
}

func TestDiffLayers(t *testing.T) {
	l := func(name string, size int64) Layer { return Layer{Digest: digest.FromString(name), Size: size} }
	img := func(layers ...Layer) *Image { return &Image{Layers: layers} }
	tests := []struct {
		name     string
		from, to *Image
		want     ManifestDiff
	}{
		{"nothing deployed", nil, img(l("a", 1), l("b", 2)), ManifestDiff{Total: 2, TotalSize: 3, NAdded: 2, AddedSize: 3}},
		{"identical", img(l("a", 1)), img(l("a", 1)), ManifestDiff{Total: 1, TotalSize: 1}},
		{"config only", img(l("a", 1), l("b", 2)), img(l("a", 1), l("b", 2)), ManifestDiff{Total: 2, TotalSize: 3}},
		{"one replaced", img(l("a", 1), l("b", 2)), img(l("a", 1), l("c", 5)), ManifestDiff{Total: 2, TotalSize: 6, NRemoved: 1, RemovedSize: 2, NAdded: 1, AddedSize: 5}},
		{"repeated layer counted once", img(l("a", 1)), img(l("b", 4), l("b", 4)), ManifestDiff{Total: 1, TotalSize: 8, NRemoved: 1, RemovedSize: 1, NAdded: 1, AddedSize: 4}},
		{"all removed", img(l("a", 1), l("a", 1)), img(), ManifestDiff{NRemoved: 1, RemovedSize: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, diffLayers(tt.from, tt.to))
		})
	}
}
