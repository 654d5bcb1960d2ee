package importer

import (
	"bufio"
	"fmt"
	"hash"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/osimage/updatecache/internal/ostree"
)

// Blob describes a layer blob as the image's manifest and config give it.
type Blob struct {
	// MediaType is the layer's media type from the manifest; it selects
	// the decompression (gzip, zstd or none).
	MediaType string
	// Digest is the blob's digest from the manifest ("sha256:..."). The
	// compressed bytes must hash to it, and it names the blob ref.
	Digest string
	// DiffID is the digest of the uncompressed tar (the image config's
	// rootfs.diff_ids entry); the tar must hash to it.
	DiffID string
	// Size, if positive, is the blob's size from the manifest: a blob of
	// another size is refused, and no more than Size+1 bytes are read.
	Size int64
}

// layerStream is a layer blob being read as its tar stream: decompressed,
// with the blob and the tar hashed on the way for verify to check.
type layerStream struct {
	blob       *blobReader
	blobDigest digest.Digest
	blobHash   hash.Hash
	compressed io.Reader
	tar        *countingReader
	diffID     digest.Digest
	tarHash    hash.Hash
	plain      io.Reader // the tar stream, through tarHash
	release    func()
	ref        string // the blob ref
}

// openLayer checks b and starts reading the blob from r.
func openLayer(r io.Reader, b Blob) (*layerStream, error) {
	blobDigest, err := parseDigest("digest", b.Digest)
	if err != nil {
		return nil, err
	}
	diffID, err := parseDigest("diff_id", b.DiffID)
	if err != nil {
		return nil, err
	}
	ref, err := ostree.BlobRefName(b.Digest)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	compression, err := compressionOf(b.MediaType)
	if err != nil {
		return nil, err
	}
	s := &layerStream{
		blob:       &blobReader{r: r, size: max(b.Size, 0)},
		blobDigest: blobDigest,
		diffID:     diffID,
		tarHash:    diffID.Algorithm().Hash(),
		ref:        ref,
	}
	var blob io.Reader = s.blob
	if compression == uncompressed && blobDigest.Algorithm() == diffID.Algorithm() {
		// The blob is the tar: one hash serves both digests.
		s.blobHash = s.tarHash
	} else {
		s.blobHash = blobDigest.Algorithm().Hash()
		blob = io.TeeReader(s.blob, s.blobHash)
	}
	// Buffered after the hash so the decompressor's small reads do not
	// reach r or the hash one by one.
	s.compressed = bufio.NewReaderSize(blob, 256<<10)
	plain, release, err := decompress(compression, s.compressed)
	if err != nil {
		return nil, err
	}
	s.tar, s.release = &countingReader{r: plain}, release
	s.plain = io.TeeReader(s.tar, s.tarHash)
	return s, nil
}

// Read reads the tar stream.
func (s *layerStream) Read(p []byte) (int, error) { return s.plain.Read(p) }

// verify reads what is left of the stream, whose end-of-archive blocks,
// padding and any bytes after the compressed stream belong to the
// digests too, and checks both digests and the size.
func (s *layerStream) verify() error {
	if _, err := io.Copy(io.Discard, s.plain); err != nil {
		return streamError(fmt.Errorf("after the archive: %w", err))
	}
	if _, err := io.Copy(io.Discard, s.compressed); err != nil {
		return err
	}
	if err := checkDigest("diff_id", s.diffID, s.tarHash); err != nil {
		return err
	}
	if s.blob.size > 0 && s.blob.n != s.blob.size {
		return &DigestError{What: "size", Expected: fmt.Sprint(s.blob.size), Actual: fmt.Sprint(s.blob.n)}
	}
	return checkDigest("digest", s.blobDigest, s.blobHash)
}

func (s *layerStream) close() { s.release() }
