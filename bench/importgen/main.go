// Command importgen writes a synthetic image layer for bench/import.sh: a
// tar with only usr/ content (so ostree-ext's path rules change nothing
// and `ostree commit --tree=tar=` sees the same tree), made of many small
// files in a few hundred directories plus a few large ones, with contents
// that compress about as well as binaries and text do. It prints the
// layer's digest, which is also its diff_id (the tar is not compressed).
//
// For bench/label.sh, -policy DIR ships that SELinux policy type (its
// text file contexts and binary policy) under etc/selinux with a config
// naming it, and spreads the small files (some setuid, every 20th a
// symbolic link) over the directories a policy labels differently:
// programs, libraries, systemd units, libexec, /etc, /var, home
// directories, /root, /opt, /srv, /boot (import it with non-/usr content
// allowed).
package main

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	out := flag.String("out", "layer.tar", "where to write the tar")
	small := flag.Int("files", 20000, "number of small files (up to 16 KiB each)")
	big := flag.Int("big", 3, "number of large files")
	bigMiB := flag.Int("big-mib", 50, "size of each large file in MiB")
	policy := flag.String("policy", "", "an SELinux policy type's directory to ship, spreading the files over labelled directories")
	flag.Parse()

	f, err := os.Create(*out)
	if err != nil {
		log.Fatal(err)
	}
	sum := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(f, sum), 1<<20)
	tw := tar.NewWriter(bw)
	rng := rand.New(rand.NewPCG(1, 2))
	mtime := time.Unix(1700000000, 0)
	dirs := map[string]bool{}
	add := func(h *tar.Header, body []byte) {
		h.ModTime = mtime
		if err := tw.WriteHeader(h); err != nil {
			log.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			log.Fatal(err)
		}
	}
	mkdir := func(d string) {
		parts := strings.Split(d, "/")
		for i := range parts {
			if p := strings.Join(parts[:i+1], "/"); !dirs[p] {
				dirs[p] = true
				add(&tar.Header{Name: p + "/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
			}
		}
	}
	mkdir("usr/lib")
	mkdir("usr/share")
	if *policy != "" {
		shipPolicy(*policy, mkdir, add)
	}
	buf := make([]byte, 16<<10)
	for i := range *small {
		if *policy == "" {
			d := fmt.Sprintf("usr/share/pkg%03d", i%400)
			mkdir(d)
			body := buf[:rng.IntN(len(buf))]
			fill(rng, body)
			add(&tar.Header{Name: fmt.Sprintf("%s/file%05d", d, i), Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}, body)
			if i%50 == 0 {
				add(&tar.Header{Name: fmt.Sprintf("%s/link%05d", d, i), Typeflag: tar.TypeSymlink, Mode: 0o777, Linkname: fmt.Sprintf("file%05d", i)}, nil)
			}
			continue
		}
		d := fmt.Sprintf("%s/pkg%02d", labelledDirs[i%len(labelledDirs)], (i/len(labelledDirs))%50)
		mkdir(d)
		name := fmt.Sprintf("%s/file%06d", d, i)
		if i%20 == 0 {
			add(&tar.Header{Name: name, Typeflag: tar.TypeSymlink, Mode: 0o777, Linkname: fmt.Sprintf("file%06d", i-len(labelledDirs))}, nil)
			continue
		}
		body := buf[:rng.IntN(len(buf)/4)] // smaller, as most files of an OS are
		fill(rng, body)
		add(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: labelledModes[rng.IntN(len(labelledModes))], Size: int64(len(body))}, body)
	}
	chunk := make([]byte, 1<<20)
	for i := range *big {
		name := fmt.Sprintf("usr/lib/big%d", i)
		size := int64(*bigMiB) << 20
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o755, Size: size, ModTime: mtime}); err != nil {
			log.Fatal(err)
		}
		for written := int64(0); written < size; written += int64(len(chunk)) {
			fill(rng, chunk)
			if _, err := tw.Write(chunk[:min(int64(len(chunk)), size-written)]); err != nil {
				log.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		log.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
	fmt.Println("sha256:" + hex.EncodeToString(sum.Sum(nil)))
}

// labelledDirs are where -policy spreads the files, and labelledModes
// their modes.
var (
	labelledDirs = []string{
		"usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "usr/lib/systemd/system", "usr/lib/systemd/user",
		"usr/libexec", "usr/share/doc", "usr/share/man/man1", "usr/share/locale", "usr/lib/python3/dist-packages",
		"usr/lib/modules/6.1.0/kernel", "usr/include", "usr/src", "usr/local/bin", "etc", "etc/systemd/system",
		"etc/ssh", "etc/pam.d", "var/lib", "var/log", "var/spool", "var/cache", "var/www", "home/alice",
		"home/bob", "root", "opt/app", "srv/data", "boot",
	}
	labelledModes = []int64{0o644, 0o644, 0o644, 0o755, 0o755, 0o600, 0o4755}
)

// shipPolicy adds the policy type at dir (its files but the compiled .bin
// ones, which the selinux package does not read) under etc/selinux, and a
// config naming it.
func shipPolicy(dir string, mkdir func(string), add func(*tar.Header, []byte)) {
	name := filepath.Base(dir)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || strings.HasSuffix(p, ".bin") {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel := "etc/selinux/" + name + strings.TrimPrefix(p, dir)
		mkdir(path.Dir(rel))
		add(&tar.Header{Name: rel, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data))}, data)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	config := []byte("SELINUX=enforcing\nSELINUXTYPE=" + name + "\n")
	add(&tar.Header{Name: "etc/selinux/config", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(config))}, config)
}

// fill writes bytes that deflate to roughly half their size: runs of a
// few repeated words mixed with noise, like the text and code of a
// package.
func fill(rng *rand.Rand, b []byte) {
	words := [...]string{"usr", "lib", "share", "static ", "const ", "return ", "\x00\x00\x00\x00", "function", "\n\t", "0x7f454c46", "error", "="}
	for i := 0; i < len(b); {
		if rng.IntN(3) == 0 {
			b[i] = byte(rng.Uint32())
			i++
			continue
		}
		i += copy(b[i:], words[rng.IntN(len(words))])
	}
}
