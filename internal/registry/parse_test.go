package registry

import (
	"errors"
	"strings"
	"testing"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/manifest"
)

const (
	d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	d2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

var (
	ociManifest = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + d1 + `","size":300},` +
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"` + d2 + `","size":1000}]}`
	dockerManifest = `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",` +
		`"config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"` + d1 + `","size":300},"layers":[]}`
	ociIndex = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` +
		`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + d1 + `","size":500,"platform":{"os":"linux","architecture":"amd64"}}]}`
	dockerList = `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}`
	schema1    = `{"schemaVersion":1,"name":"os","tag":"1","fsLayers":[]}`
)

func TestParseManifest(t *testing.T) {
	for _, tc := range []struct {
		name, data, contentType string
		want                    error  // nil: valid
		wantType                string // when valid
	}{
		{"oci manifest", ociManifest, "", nil, imgspecv1.MediaTypeImageManifest},
		{"docker manifest", dockerManifest, "", nil, manifest.DockerV2Schema2MediaType},
		{"oci index", ociIndex, "", nil, imgspecv1.MediaTypeImageIndex},
		{"docker list", dockerList, "", nil, manifest.DockerV2ListMediaType},
		{"oci manifest without mediaType", strings.Replace(ociManifest, `"mediaType":"application/vnd.oci.image.manifest.v1+json",`, "", 1), "", nil, imgspecv1.MediaTypeImageManifest},
		{"oci index without mediaType, from Content-Type", `{"schemaVersion":2,"manifests":[]}`, imgspecv1.MediaTypeImageIndex, nil, imgspecv1.MediaTypeImageIndex},
		{"schema 1", schema1, manifest.DockerV2Schema1SignedMediaType, ErrUnsupportedManifest, ""},
		{"schema 1 media type", `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v1+json"}`, "", ErrUnsupportedManifest, ""},
		{"schema 3", `{"schemaVersion":3,"mediaType":"application/vnd.oci.image.manifest.v1+json"}`, "", ErrUnsupportedManifest, ""},
		{"unknown media type", `{"schemaVersion":2,"mediaType":"application/x-thing"}`, "", ErrUnsupportedManifest, ""},
		{"artifact, not an image", strings.Replace(ociManifest, "application/vnd.oci.image.config.v1+json", "application/vnd.cncf.helm.config.v1+json", 1), "", ErrUnsupportedManifest, ""},
		{"no shape at all", `{"schemaVersion":2}`, "", ErrUnsupportedManifest, ""},
		{"not JSON", `<html>`, "", ErrMalformed, ""},
		{"JSON null", `null`, "", ErrMalformed, ""},
		{"JSON array", `[]`, "", ErrMalformed, ""},
		{"empty", ``, "", ErrMalformed, ""},
		{"truncated", ociManifest[:len(ociManifest)/2], "", ErrMalformed, ""},
		{"no schemaVersion", `{"mediaType":"application/vnd.oci.image.manifest.v1+json"}`, "", ErrMalformed, ""},
		{"manifest without config", `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}`, "", ErrMalformed, ""},
		{"index without manifests", `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json"}`, "", ErrMalformed, ""},
		{"both config and manifests", `{"schemaVersion":2,"config":{},"manifests":[]}`, "", ErrMalformed, ""},
		{"bad config digest", strings.Replace(ociManifest, d1, "sha256:abc", 1), "", ErrMalformed, ""},
		{"unknown digest algorithm", strings.Replace(ociManifest, d1, "md5:d41d8cd98f00b204e9800998ecf8427e", 1), "", ErrMalformed, ""},
		{"bad layer digest", strings.Replace(ociManifest, d2, "sha256:"+strings.Repeat("Z", 64), 1), "", ErrMalformed, ""},
		{"negative layer size", strings.Replace(ociManifest, `"size":1000`, `"size":-1`, 1), "", ErrMalformed, ""},
		{"zero config size", strings.Replace(ociManifest, `"size":300`, `"size":0`, 1), "", ErrMalformed, ""},
		{"bad index entry digest", strings.Replace(ociIndex, d1, "sha256:", 1), "", ErrMalformed, ""},
		{"wrong field type", `{"schemaVersion":"2"}`, "", ErrMalformed, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseManifest([]byte(tc.data), tc.contentType)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("got %v, want %v", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.mediaType != tc.wantType {
				t.Errorf("media type %q, want %q", p.mediaType, tc.wantType)
			}
		})
	}
}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		want       error
		wantArch   string
	}{
		{"full", `{"architecture":"arm","variant":"v7","os":"linux","config":{"Labels":{"a":"b"}},"rootfs":{"type":"layers","diff_ids":[]}}`, nil, "arm"},
		{"no os", `{"architecture":"amd64"}`, ErrMalformed, ""},
		{"no architecture", `{"os":"linux"}`, ErrMalformed, ""},
		{"null", `null`, ErrMalformed, ""},
		{"not JSON", `os=linux`, ErrMalformed, ""},
		{"truncated", `{"architecture":"amd64","os":"li`, ErrMalformed, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseConfig([]byte(tc.data))
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("got %v, want %v", err, tc.want)
				}
				return
			}
			if err != nil || p.Architecture != tc.wantArch {
				t.Fatalf("got %+v, %v", p, err)
			}
		})
	}
}

// FuzzParseManifest feeds arbitrary documents to the manifest, index and
// config validation: it must never panic, and whatever it accepts must be
// usable (known media type, valid digests that can be hashed with).
func FuzzParseManifest(f *testing.F) {
	for _, seed := range []string{ociManifest, dockerManifest, ociIndex, dockerList, schema1, `{}`, `null`, `{"schemaVersion":2,"manifests":[{}]}`} {
		f.Add([]byte(seed), "")
		f.Add([]byte(seed), imgspecv1.MediaTypeImageIndex)
	}
	f.Fuzz(func(t *testing.T, data []byte, contentType string) {
		p, err := parseManifest(data, contentType)
		if _, cerr := parseConfig(data); cerr != nil && !errors.Is(cerr, ErrMalformed) {
			t.Fatalf("config error not ErrMalformed: %v", cerr)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupportedManifest) {
				t.Fatalf("error without a sentinel: %v", err)
			}
			return
		}
		descs := p.instances
		switch p.mediaType {
		case imgspecv1.MediaTypeImageManifest, manifest.DockerV2Schema2MediaType:
			if p.isIndex() || p.config.Size <= 0 {
				t.Fatalf("bad manifest accepted: %+v", p)
			}
			descs = append([]imgspecv1.Descriptor{p.config}, p.layers...)
		case imgspecv1.MediaTypeImageIndex, manifest.DockerV2ListMediaType:
			if !p.isIndex() {
				t.Fatalf("index not an index: %+v", p)
			}
		default:
			t.Fatalf("accepted media type %q", p.mediaType)
		}
		for _, d := range descs {
			if d.Size < 0 {
				t.Fatalf("negative size accepted: %+v", d)
			}
			// Must not panic: accepted digests have an available algorithm.
			_ = verifyBlob(data, d.Digest, d.Size, "fuzz")
		}
	})
}
