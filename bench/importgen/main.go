// Command importgen writes a synthetic image layer for bench/import.sh: a
// tar with only usr/ content (so ostree-ext's path rules change nothing
// and `ostree commit --tree=tar=` sees the same tree), made of many small
// files in a few hundred directories plus a few large ones, with contents
// that compress about as well as binaries and text do. It prints the
// layer's digest, which is also its diff_id (the tar is not compressed).
package main

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"os"
	"time"
)

func main() {
	out := flag.String("out", "layer.tar", "where to write the tar")
	small := flag.Int("files", 20000, "number of small files (up to 16 KiB each)")
	big := flag.Int("big", 3, "number of large files")
	bigMiB := flag.Int("big-mib", 50, "size of each large file in MiB")
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
		if !dirs[d] {
			dirs[d] = true
			add(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
		}
	}
	mkdir("usr")
	mkdir("usr/lib")
	mkdir("usr/share")
	buf := make([]byte, 16<<10)
	for i := range *small {
		d := fmt.Sprintf("usr/share/pkg%03d", i%400)
		mkdir(d)
		body := buf[:rng.IntN(len(buf))]
		fill(rng, body)
		add(&tar.Header{Name: fmt.Sprintf("%s/file%05d", d, i), Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}, body)
		if i%50 == 0 {
			add(&tar.Header{Name: fmt.Sprintf("%s/link%05d", d, i), Typeflag: tar.TypeSymlink, Mode: 0o777, Linkname: fmt.Sprintf("file%05d", i)}, nil)
		}
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
