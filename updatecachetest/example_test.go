package updatecachetest_test

import (
	"context"
	"fmt"
	"io/fs"
	"log"
	"net/http"
	"time"

	"github.com/osimage/updatecache/updatecachetest"
)

// An update checker should cope with a registry that is briefly
// unavailable; a test makes the first manifest request fail and counts
// what the client did.
func Example() {
	reg, err := updatecachetest.StartRegistry()
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Close()

	img, err := updatecachetest.NewImage(updatecachetest.ImageSpec{
		Version: "42.1",
		Created: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		Layers: []updatecachetest.Layer{{Files: []updatecachetest.File{
			{Path: "usr", Mode: fs.ModeDir | 0o755},
			{Path: "usr/lib/os-release", Content: []byte("VERSION_ID=42.1\n")},
		}}},
	})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := reg.Push(context.Background(), "os/base", "stable", img); err != nil {
		log.Fatal(err)
	}
	reg.Reset()
	reg.AddFault(updatecachetest.Fault{Method: http.MethodHead, Kind: updatecachetest.KindManifest, Times: 1, Status: http.StatusServiceUnavailable})

	// The client under test would go here; a bare HEAD twice stands in.
	for range 2 {
		res, err := http.Head("http://" + reg.Host() + "/v2/os/base/manifests/stable")
		if err != nil {
			log.Fatal(err)
		}
		res.Body.Close()
		fmt.Println(res.StatusCode, res.Header.Get("Docker-Content-Digest") == img.ManifestDigest.String())
	}
	n := reg.Counts()
	fmt.Println("manifest HEADs:", n.ManifestHEAD, "GETs:", n.ManifestGET)
	fmt.Println(reg.Ref("os/base", "stable") == "docker://"+reg.Host()+"/os/base:stable")
	// Output:
	// 503 false
	// 200 true
	// manifest HEADs: 2 GETs: 0
	// true
}

// A multi-platform update: one image per architecture, in an OCI index.
func ExampleNewIndex() {
	var images []*updatecachetest.Image
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := updatecachetest.NewImage(updatecachetest.ImageSpec{Version: "7", Architecture: arch})
		if err != nil {
			log.Fatal(err)
		}
		images = append(images, img)
	}
	idx, err := updatecachetest.NewIndex(images...)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(idx.MediaType)
	for _, img := range idx.Images {
		fmt.Println(img.Platform.OS, img.Platform.Architecture, img.MediaType)
	}
	// Output:
	// application/vnd.oci.image.index.v1+json
	// linux amd64 application/vnd.oci.image.manifest.v1+json
	// linux arm64 application/vnd.oci.image.manifest.v1+json
}
