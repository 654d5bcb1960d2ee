package registry

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"

	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// chunked serves data and then ends with err (nil: io.EOF), like an HTTP
// body without Content-Length.
type chunked struct {
	r   io.Reader
	err error
}

func (c *chunked) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err == io.EOF && c.err != nil {
		err = c.err
	}
	return n, err
}

func TestVerifyingReader(t *testing.T) {
	blob := bytes.Repeat([]byte("layer data "), 1000)
	desc := imgspecv1.Descriptor{Digest: digest.FromBytes(blob), Size: int64(len(blob))}
	corrupt := bytes.Clone(blob)
	corrupt[len(corrupt)-1] ^= 1

	for _, tc := range []struct {
		name  string
		desc  imgspecv1.Descriptor
		body  io.Reader
		want  error // nil: the whole blob, then io.EOF
		whole bool  // all of the (right) blob may come before the error
	}{
		{"exact", desc, bytes.NewReader(blob), nil, false},
		{"one byte at a time", desc, iotest.OneByteReader(bytes.NewReader(blob)), nil, false},
		{"data with EOF", desc, iotest.DataErrReader(bytes.NewReader(blob)), nil, false},
		{"empty blob", imgspecv1.Descriptor{Digest: digest.FromBytes(nil), Size: 0}, strings.NewReader(""), nil, false},
		{"corrupted", desc, bytes.NewReader(corrupt), ErrDigestMismatch, true},
		{"corrupted, one byte at a time", desc, iotest.OneByteReader(bytes.NewReader(corrupt)), ErrDigestMismatch, true},
		{"longer", desc, &chunked{r: io.MultiReader(bytes.NewReader(blob), strings.NewReader("more"))}, ErrDigestMismatch, true},
		{"shorter", desc, bytes.NewReader(blob[:len(blob)-1]), ErrDigestMismatch, false},
		{"empty body", desc, strings.NewReader(""), ErrDigestMismatch, false},
		{"connection reset", desc, &chunked{r: bytes.NewReader(blob[:100]), err: syscall.ECONNRESET}, ErrUnavailable, false},
		{"body cut short", desc, &chunked{r: bytes.NewReader(blob[:100]), err: io.ErrUnexpectedEOF}, ErrMalformed, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifyingReader(io.NopCloser(tc.body), tc.desc, "GET layer x")
			var got bytes.Buffer
			buf := make([]byte, 4096)
			var err error
			for err == nil {
				var n int
				n, err = v.Read(buf)
				got.Write(buf[:n])
			}
			if int64(got.Len()) > tc.desc.Size {
				t.Errorf("returned %d bytes, more than the %d of the descriptor", got.Len(), tc.desc.Size)
			}
			if tc.want == nil {
				if err != io.EOF || !bytes.Equal(got.Bytes(), blob[:tc.desc.Size]) {
					t.Fatalf("got %d bytes, %v; want the blob and io.EOF", got.Len(), err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if !tc.whole && int64(got.Len()) >= tc.desc.Size {
				t.Errorf("all %d bytes were returned before the error", got.Len())
			}
			if _, again := v.Read(buf); again != err {
				t.Errorf("error not sticky: then %v", again)
			}
		})
	}
}

// TestVerifyingReaderStopsEarly: a wrong blob is reported by the read that
// completes its declared size, so a consumer that never reads to io.EOF
// (a tar reader stops at its end-of-archive blocks) still learns of it.
func TestVerifyingReaderStopsEarly(t *testing.T) {
	blob := []byte("0123456789")
	desc := imgspecv1.Descriptor{Digest: digest.FromString("other"), Size: int64(len(blob))}
	v := newVerifyingReader(io.NopCloser(bytes.NewReader(blob)), desc, "GET layer x")
	if _, err := io.ReadFull(v, make([]byte, len(blob))); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("ReadFull of exactly the declared size: %v, want ErrDigestMismatch", err)
	}
}

// TestVerifyingReaderNeverOverreads: however large the buffer, the reader
// asks the stream for at most one byte past the blob.
func TestVerifyingReaderNeverOverreads(t *testing.T) {
	blob := []byte("abc")
	desc := imgspecv1.Descriptor{Digest: digest.FromBytes(blob), Size: 3}
	src := &countingReader{r: io.MultiReader(bytes.NewReader(blob), bytes.NewReader(make([]byte, 1<<20)))}
	v := newVerifyingReader(io.NopCloser(src), desc, "GET layer x")
	_, err := io.ReadAll(v)
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("got %v, want ErrDigestMismatch", err)
	}
	if src.n > desc.Size+1 {
		t.Errorf("read %d bytes from the stream for a %d-byte blob", src.n, desc.Size)
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func ExampleVerdict_Err() {
	v := Verdict{Reason: "A signature was required, but no signature exists"}
	err := v.Err()
	fmt.Println(errors.Is(err, ErrPolicyRejected))
	fmt.Println(Verdict{Allowed: true}.Err())
	// Output:
	// true
	// <nil>
}
