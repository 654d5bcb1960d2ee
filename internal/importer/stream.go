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
	// Digest is the blob's digest from the manifest ("sha256:..."); it
	// names the blob ref. The blob is not hashed here: the reader it comes
	// from verifies it (registry.Source.Layer does), and it is read to its
	// end so that the reader sees every byte.
	Digest string
	// DiffID is the digest of the uncompressed tar (the image config's
	// rootfs.diff_ids entry); the tar must hash to it.
	DiffID string
	// MaxSize caps the uncompressed tar, checked as it streams, so that a
	// small compressed blob cannot write without bound (ErrLayerTooLarge);
	// 0 means DefaultMaxSize.
	MaxSize int64
}

// DefaultMaxSize is the default cap on a layer's uncompressed size: far
// beyond any OS image layer seen, while a compression bomb stops there.
const DefaultMaxSize = 32 << 30

// layerStream is a layer blob being read as its tar stream: decompressed,
// counted, and hashed on the way for verify to check against the diff_id.
type layerStream struct {
	blob       *blobReader
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
	if _, err := parseDigest("digest", b.Digest); err != nil {
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
	maxSize := b.MaxSize
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	s := &layerStream{blob: &blobReader{r: r}, diffID: diffID, tarHash: diffID.Algorithm().Hash(), ref: ref}
	// Buffered so the decompressor's small reads do not reach r one by one.
	s.compressed = bufio.NewReaderSize(s.blob, 256<<10)
	plain, release, err := decompress(compression, s.compressed)
	if err != nil {
		return nil, err
	}
	s.tar, s.release = &countingReader{r: plain, limit: maxSize}, release
	s.plain = io.TeeReader(s.tar, s.tarHash)
	return s, nil
}

// Read reads the tar stream.
func (s *layerStream) Read(p []byte) (int, error) { return s.plain.Read(p) }

// verify reads what is left of the stream (the end-of-archive blocks and
// any padding belong to the diff_id; whatever follows the compressed
// stream is read so that the blob's verifying reader sees its end) and
// checks the diff_id.
func (s *layerStream) verify() error {
	if _, err := io.Copy(io.Discard, s.plain); err != nil {
		return streamError(fmt.Errorf("after the archive: %w", err))
	}
	if _, err := io.Copy(io.Discard, s.compressed); err != nil {
		return err
	}
	return checkDigest("diff_id", s.diffID, s.tarHash)
}

func (s *layerStream) close() { s.release() }
