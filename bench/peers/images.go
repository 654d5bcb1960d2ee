package main

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"time"

	"github.com/osimage/updatecache/updatecachetest"
)

// checkLayers is the layer count of the images checked, in the range of a
// chunked OS image such as Fedora CoreOS; changedLayers of them differ
// between two versions.
const (
	checkLayers   = 40
	changedLayers = 3
)

// checkImage is version v of the OS image for arch: what a check reads is
// its manifest and config, so its layers are small.
func checkImage(v, arch string) (*updatecachetest.Image, error) {
	spec := updatecachetest.ImageSpec{
		Version:      v,
		Created:      time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Architecture: arch,
		Annotations:  map[string]string{"org.opencontainers.image.version": v},
	}
	for i := range checkLayers {
		content := fmt.Sprintf("component %d for %s\n", i, arch)
		if i >= checkLayers-changedLayers {
			content += "version " + v + "\n"
		}
		spec.Layers = append(spec.Layers, updatecachetest.Layer{Files: []updatecachetest.File{
			{Path: fmt.Sprintf("usr/lib/component-%02d/data", i), Content: []byte(content)},
		}})
	}
	return updatecachetest.NewImage(spec)
}

// checkIndex is version v as a two-platform index; the first image is this
// machine's.
func checkIndex(v string) (*updatecachetest.Index, error) {
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	var images []*updatecachetest.Image
	for _, arch := range []string{runtime.GOARCH, other} {
		img, err := checkImage(v, arch)
		if err != nil {
			return nil, err
		}
		images = append(images, img)
	}
	return updatecachetest.NewIndex(images...)
}

// The pulled image's shape.
const (
	pullLayers       = 4
	pullTextFileSize = 32 << 10
)

// pullTextFiles is how many text files each layer of pullImage(mib) has.
func pullTextFiles(mib int) int { return mib << 20 / pullLayers / 2 / pullTextFileSize }

// pullImage is an image of pullLayers gzip layers holding mib MiB of files
// in all: per layer, half in one file of random bytes (incompressible) and
// half in small text files (compressible, as binaries and configuration
// mostly are). A fixed seed makes it the same image on every run.
func pullImage(mib int) (*updatecachetest.Image, error) {
	src := rand.NewChaCha8([32]byte{'u', 'p', 'd', 'a', 't', 'e'})
	rng := rand.New(src)
	words := []string{"usr", "lib", "systemd", "bin", "share", "locale", "config", "unit",
		"service", "target", "kernel", "module", "firmware", "python3", "site-packages", "etc"}
	perLayer := mib << 20 / pullLayers
	spec := updatecachetest.ImageSpec{Version: "1", Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	for l := range pullLayers {
		var files []updatecachetest.File
		random := make([]byte, perLayer/2)
		src.Read(random)
		files = append(files, updatecachetest.File{Path: fmt.Sprintf("usr/lib/blob-%d.bin", l), Content: random})
		for i := range pullTextFiles(mib) {
			text := make([]byte, 0, pullTextFileSize+16)
			for len(text) < pullTextFileSize {
				text = append(text, words[rng.IntN(len(words))]...)
				text = append(text, " \n/="[rng.IntN(4)])
			}
			files = append(files, updatecachetest.File{
				Path:    fmt.Sprintf("usr/share/layer-%d/dir-%02d/file-%04d.txt", l, i%16, i),
				Content: text,
			})
		}
		spec.Layers = append(spec.Layers, updatecachetest.Layer{Files: files})
	}
	return updatecachetest.NewImage(spec)
}
