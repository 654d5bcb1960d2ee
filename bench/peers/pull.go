package main

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/osimage/updatecache/updatecachetest"
)

const pullRepo, pullTag = "pull/os", "1"

// A pullTool fetches the pull image from host into a new directory dest.
type pullTool struct {
	name string
	pull func(host, dest string) (sample, error)
}

func (b *bench) pullTools(layers int) []pullTool {
	ref := func(host string) string { return "docker://" + host + "/" + pullRepo + ":" + pullTag }
	return []pullTool{
		{"updatecache pull (into a new archive repo)", func(host, dest string) (sample, error) {
			if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
				return sample{}, err
			}
			// Creating the empty repository is not timed: skopeo's
			// destination needs no set-up either.
			if err := updatecachetest.CreateRepo(dest, updatecachetest.ModeArchive); err != nil {
				return sample{}, err
			}
			s, out, err := b.run.run(b.updatecache, "--repo", dest, "--json", "pull",
				"--tls-verify=false", "--authfile", b.run.authFile, ref(host))
			if err != nil {
				return s, err
			}
			var res struct{ LayersFetched int }
			if err := json.Unmarshal(out, &res); err != nil || res.LayersFetched != layers {
				return s, fmt.Errorf("updatecache pull fetched %d of %d layers (%v): %s", res.LayersFetched, layers, err, out)
			}
			return s, nil
		}},
		{"skopeo copy to oci:DIR", func(host, dest string) (sample, error) {
			return sampleOnly(b.run.run(skopeo(b.run.registriesConf, "--policy", b.run.policyFile, "copy", "--quiet",
				"--src-tls-verify=false", "--src-authfile", b.run.authFile, ref(host), "oci:"+dest+":"+pullTag)...))
		}},
	}
}

func sampleOnly(s sample, _ []byte, err error) (sample, error) { return s, err }

func (b *bench) pullSection() error {
	progress("pull: building a %d MiB image", b.cfg.pullMiB)
	img, err := pullImage(b.cfg.pullMiB)
	if err != nil {
		return err
	}
	if err := b.push(pullRepo, pullTag, img); err != nil {
		return err
	}
	var compressed int64
	for _, l := range img.Layers {
		compressed += l.Size
	}
	tools := b.pullTools(len(img.Layers))
	dest := func(i int) string { return filepath.Join(b.work, "pull", fmt.Sprint(i)) }

	b.printf("## Pull: updatecache pull vs skopeo copy\n\n")
	b.printf("One image of %d gzip layers with %d MiB of files (per layer, half in one random file and half in %d text\n", len(img.Layers), b.cfg.pullMiB, pullTextFiles(b.cfg.pullMiB))
	b.printf("files of %d KiB), %s MiB compressed, from the real registry on loopback.\n", pullTextFileSize>>10, mib(compressed))
	b.printf("updatecache pull decompresses every layer and imports it into an archive-mode OSTree repository (one object per file, each zlib-compressed and fsynced) and writes the merge commit;\n")
	b.printf("skopeo copy stores the compressed blobs as they are in an OCI layout. So the rows do different work:\n")
	b.printf("skopeo's is the floor of fetching the bytes, updatecache's is what an OSTree-based updater has to do.\n\n")

	// One run of each through the counting relay and proxy (no delay), for
	// the requests and bytes; it also warms the page cache.
	b.printf("| tool | requests | blob GET | bytes from registry | result on disk MiB |\n")
	b.printf("| --- | ---: | ---: | ---: | ---: |\n")
	for i, t := range tools {
		if err := b.wire.reset(); err != nil {
			return err
		}
		b.proxy.Reset()
		if _, err := t.pull(b.wire.host(), dest(i)); err != nil {
			return err
		}
		w, err := b.wire.stats()
		if err != nil {
			return err
		}
		n := b.proxy.Counts()
		size, err := duBytes(dest(i))
		if err != nil {
			return err
		}
		b.printf("| %s | %d | %d | %d | %s |\n", t.name, n.Total, n.BlobGET, w.Down, mib(size))
		if err := os.RemoveAll(dest(i)); err != nil {
			return err
		}
	}
	b.printf("\n")

	samples := make([][]sample, len(tools))
	for run := range b.cfg.pullRuns {
		for i, t := range tools {
			s, err := t.pull(b.reg.host, dest(i))
			if err != nil {
				return err
			}
			samples[i] = append(samples[i], s)
			if err := os.RemoveAll(dest(i)); err != nil {
				return err
			}
		}
		progress("pull: run %d of %d done", run+1, b.cfg.pullRuns)
	}
	b.printf("%d runs each, interleaved, straight from the registry (no proxy); wall time of the process.\n\n", b.cfg.pullRuns)
	b.printf("| tool | median s | min–max s | median CPU s | max RSS MiB |\n")
	b.printf("| --- | ---: | ---: | ---: | ---: |\n")
	for i, t := range tools {
		s := summarize(samples[i])
		b.printf("| %s | %s | %s–%s | %s | %s |\n", t.name, secs(s.Median), secs(s.Min), secs(s.Max), secs(s.MedianCPU), mib(s.MaxRSS))
	}
	b.printf("\n")
	return nil
}

// duBytes sums the sizes of the regular files under dir.
func duBytes(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err == nil {
			total += fi.Size()
		}
		return err
	})
	return total, err
}
