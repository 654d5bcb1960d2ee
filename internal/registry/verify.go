package registry

import (
	"io"

	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// verifyingReader passes a blob through while checking it against its
// descriptor: it never returns a byte beyond desc.Size, and the read that
// would complete desc.Size bytes (or ends the stream early) reports a wrong
// digest or size instead of returning its bytes. Errors are sticky.
type verifyingReader struct {
	rc       io.ReadCloser
	want     digest.Digest
	size     int64
	digester digest.Digester
	n        int64 // bytes returned so far
	verified bool  // all size bytes arrived and hashed to want
	err      error
	what     string
}

// newVerifyingReader wraps rc; desc must have passed checkDescriptor (its
// algorithm is available, its size is not negative).
func newVerifyingReader(rc io.ReadCloser, desc imgspecv1.Descriptor, what string) *verifyingReader {
	return &verifyingReader{rc: rc, want: desc.Digest, size: desc.Size, digester: desc.Digest.Algorithm().Digester(), what: what}
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	// Ask for at most one byte more than the blob has left: enough to
	// notice a longer blob, never enough to read far past it.
	if left := v.size - v.n + 1; int64(len(p)) > left {
		p = p[:left]
	}
	n, err := v.rc.Read(p)
	if int64(n) > v.size-v.n {
		// A read that fails verification returns no bytes, so that
		// io.ReadFull and the like cannot swallow the error with them.
		v.err = wrapf(ErrDigestMismatch, nil, "%s: more than the %d bytes of its descriptor", v.what, v.size)
		return 0, v.err
	}
	v.digester.Hash().Write(p[:n])
	v.n += int64(n)
	if v.n == v.size && !v.verified {
		if got := v.digester.Digest(); got != v.want {
			v.err = wrapf(ErrDigestMismatch, nil, "%s hashes to %s, want %s", v.what, got, v.want)
			return 0, v.err
		}
		v.verified = true
	}
	switch {
	case err == nil:
		return n, nil
	case err == io.EOF && !v.verified:
		v.err = wrapf(ErrDigestMismatch, nil, "%s ended after %d bytes, descriptor says %d", v.what, v.n, v.size)
		return 0, v.err
	case err == io.EOF:
		v.err = io.EOF
		return n, io.EOF
	}
	v.err = classify(err, v.what)
	return n, v.err
}

// Close closes the underlying stream.
func (v *verifyingReader) Close() error { return v.rc.Close() }
