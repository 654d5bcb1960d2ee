package gvariant

import (
	"fmt"
	"strings"
	"testing"
)

const commitType = "(a{sv}aya(say)sstayay)"

// benchCommit is shaped like an ostree-ext merge commit: metadata holding
// the image manifest and config as JSON (about 5 KiB), checksums, subject.
func benchCommit() []any {
	var layers, history []string
	for i := 0; i < 12; i++ {
		layers = append(layers, fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%064x","size":%d}`, i*7919, 1000000+i))
		history = append(history, fmt.Sprintf(`{"created":"2024-05-01T10:%02d:00Z","created_by":"/bin/sh -c #(nop) RUN step %d of the build"}`, i, i))
	}
	manifest := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:` +
		strings.Repeat("c0", 32) + `","size":4242},"layers":[` + strings.Join(layers, ",") + `]}`
	config := `{"architecture":"amd64","os":"linux","config":{"Labels":{"org.opencontainers.image.version":"41.20240501.0"}},"history":[` +
		strings.Join(history, ",") + `],"rootfs":{"type":"layers","diff_ids":["sha256:` + strings.Repeat("d1", 32) + `"]}}`
	meta := VarDict{
		{"ostree.manifest-digest", NewString("sha256:" + strings.Repeat("ab", 32))},
		{"ostree.manifest", NewString(manifest)},
		{"ostree.container.image-config", NewString(config)},
		{"ostree.importer.version", NewString("0.15.3")},
		{"version", NewString("41.20240501.0")},
		{"ostree.ref-binding", Variant{Type: "as", Value: []string{"ostree/container/image/docker_3A__2F__2F_quay_2E_io/fedora/fedora-coreos_3A_stable"}}},
	}
	sum := func(b byte) []byte { return []byte(strings.Repeat(string(rune(b)), 32)) }
	return []any{meta, sum(1), []any{}, "Import of quay.io/fedora/fedora-coreos:stable", "", uint64(0x00f1536500000000), sum(2), sum(3)}
}

// bench64K is an a{sv} of just over 64 KiB (so with 4-byte framing
// offsets) with values of several types.
func bench64K() VarDict {
	var d VarDict
	for i := 0; i < 330; i++ {
		key := fmt.Sprintf("org.example.key-%04d", i)
		switch i % 4 {
		case 0:
			d = append(d, VarEntry{key, NewString(strings.Repeat("v", 200))})
		case 1:
			d = append(d, VarEntry{key, Variant{Type: "t", Value: uint64(i)}})
		case 2:
			d = append(d, VarEntry{key, Variant{Type: "as", Value: []string{strings.Repeat("a", 100), strings.Repeat("b", 100)}}})
		default:
			d = append(d, VarEntry{key, Variant{Type: "ay", Value: make([]byte, 256)}})
		}
	}
	return d
}

func BenchmarkUnmarshalCommit(b *testing.B) {
	data, err := Marshal(commitType, benchCommit())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Unmarshal(commitType, data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshalCommit(b *testing.B) {
	c := benchCommit()
	b.ReportAllocs()
	for b.Loop() {
		data, err := Marshal(commitType, c)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(data)))
	}
}

func BenchmarkUnmarshalVarDict64K(b *testing.B) {
	data, err := bench64K().Marshal()
	if err != nil {
		b.Fatal(err)
	}
	if len(data) <= 0xffff {
		b.Fatalf("only %d bytes", len(data))
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := UnmarshalVarDict(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnmarshal64KGeneric(b *testing.B) {
	data, err := bench64K().Marshal()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Unmarshal("a{sv}", data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshalVarDict64K(b *testing.B) {
	d := bench64K()
	b.ReportAllocs()
	for b.Loop() {
		data, err := d.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(data)))
	}
}
