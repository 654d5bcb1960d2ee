package ostree

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/osimage/updatecache/internal/gvariant"
)

// commitType is the GVariant type of a commit object: metadata, parent
// checksum (empty for none), related objects (always empty), subject, body,
// timestamp (big-endian seconds), root dirtree and dirmeta checksums.
const commitType = "(a{sv}aya(say)sstayay)"

// Commit is a commit object's content. Metadata keeps its entries in order,
// byte for byte, through a decode and encode.
type Commit struct {
	Metadata  gvariant.VarDict
	Parent    string // hex, "" for none
	Subject   string
	Body      string
	Timestamp time.Time // whole seconds, UTC
	RootTree  string    // hex
	RootMeta  string    // hex
}

// EncodeCommit serialises c in normal form. Checksums must be valid
// (ErrInvalidChecksum); the timestamp must not be before 1970 (OSTree stores
// unsigned seconds) and is truncated to whole seconds; strings must be
// valid UTF-8 without NUL.
func EncodeCommit(c *Commit) ([]byte, error) {
	var parent []byte
	if c.Parent != "" {
		p, err := checksumBytes(c.Parent)
		if err != nil {
			return nil, fmt.Errorf("commit parent: %w", err)
		}
		parent = p
	}
	tree, err := checksumBytes(c.RootTree)
	if err != nil {
		return nil, fmt.Errorf("commit root tree: %w", err)
	}
	meta, err := checksumBytes(c.RootMeta)
	if err != nil {
		return nil, fmt.Errorf("commit root dirmeta: %w", err)
	}
	secs := c.Timestamp.Unix()
	if secs < 0 {
		return nil, fmt.Errorf("%w: commit timestamp %v is before 1970", ErrInvalidObject, c.Timestamp)
	}
	md := c.Metadata
	if md == nil {
		md = gvariant.VarDict{}
	}
	data, err := gvariant.Marshal(commitType, []any{md, parent, []any{}, c.Subject, c.Body, be64(uint64(secs)), tree, meta})
	if err != nil {
		return nil, fmt.Errorf("encode commit: %w", err)
	}
	return data, nil
}

// DecodeCommit parses a commit object strictly: normal form, parent empty
// or 32 bytes, no related objects, 32-byte root checksums, a timestamp that
// fits time.Unix. Anything else is an error wrapping ErrCorrupt (and the
// gvariant error where there is one).
func DecodeCommit(data []byte) (*Commit, error) {
	v, err := gvariant.Unmarshal(commitType, data)
	if err != nil {
		return nil, fmt.Errorf("%w: commit: %w", ErrCorrupt, err)
	}
	t := v.([]any)
	entries := t[0].([]gvariant.DictEntry)
	c := &Commit{
		Metadata: make(gvariant.VarDict, len(entries)),
		Subject:  t[3].(string),
		Body:     t[4].(string),
	}
	for i, e := range entries {
		c.Metadata[i] = gvariant.VarEntry{Key: e.Key.(string), Value: e.Value.(gvariant.Variant)}
	}
	if parent := t[1].([]byte); len(parent) > 0 {
		if c.Parent, err = checksumHex(parent); err != nil {
			return nil, fmt.Errorf("%w: commit parent: %w", ErrCorrupt, err)
		}
	}
	if related := t[2].([]any); len(related) > 0 {
		return nil, fmt.Errorf("%w: commit lists %d related objects; OSTree never writes any", ErrCorrupt, len(related))
	}
	secs := be64(t[5].(uint64))
	if secs > math.MaxInt64 {
		return nil, fmt.Errorf("%w: commit timestamp %d out of range", ErrCorrupt, secs)
	}
	c.Timestamp = time.Unix(int64(secs), 0).UTC()
	if c.RootTree, err = checksumHex(t[6].([]byte)); err != nil {
		return nil, fmt.Errorf("%w: commit root tree: %w", ErrCorrupt, err)
	}
	if c.RootMeta, err = checksumHex(t[7].([]byte)); err != nil {
		return nil, fmt.Errorf("%w: commit root dirmeta: %w", ErrCorrupt, err)
	}
	return c, nil
}

// ReadCommit reads, verifies and decodes a commit object. Missing:
// ErrObjectNotFound; wrong checksum or malformed: ErrCorrupt (a
// *CorruptError naming the file).
func (r *Repo) ReadCommit(checksum string) (*Commit, error) {
	data, err := r.ReadMetadataObject(checksum, ObjectCommit)
	if err != nil {
		return nil, err
	}
	c, err := DecodeCommit(data)
	if err != nil {
		return nil, corrupt(r.ObjectPath(checksum, ObjectCommit), err)
	}
	return c, nil
}

// WriteCommit encodes and stores c, returning its checksum. Its root
// dirtree and dirmeta must already be in the repository
// (ErrObjectNotFound), so the commit is never one `ostree fsck` rejects;
// the parent need not be (libostree allows partial history).
func (r *Repo) WriteCommit(ctx context.Context, c *Commit) (string, error) {
	data, err := EncodeCommit(c)
	if err != nil {
		return "", err
	}
	for _, o := range []struct {
		sum string
		t   ObjectType
	}{{c.RootTree, ObjectDirTree}, {c.RootMeta, ObjectDirMeta}} {
		ok, err := r.HasObject(o.sum, o.t)
		if err != nil {
			return "", err
		}
		if !ok {
			return "", fmt.Errorf("write commit: %w: root %s %s", ErrObjectNotFound, o.t, o.sum)
		}
	}
	return r.WriteMetadataObject(ctx, ObjectCommit, data)
}
