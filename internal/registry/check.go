package registry

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/transports"
	"go.podman.io/image/v5/types"
)

// Check is one update check of an image reference, over one registry
// session: Client.Check asks what the reference points to (one manifest
// HEAD for a docker:// tag), the caller compares TopDigest with what it
// already has, and only if it is new calls Image, which fetches the
// manifest and config by exactly that digest from the pull source that
// answered the HEAD, reusing its connection, ping and token. A new
// single-platform image thus costs four requests (ping, HEAD, manifest
// GET, config GET), an unchanged one two, plus at most one token request
// per registry. A Check is not safe for concurrent use; Close it when
// done.
type Check struct {
	c    *Client
	ref  types.ImageReference
	name string
	top  digest.Digest

	sess  *session // docker://
	local *Source  // other transports: the image read from disk
}

// Check asks what ref points to now. For a docker:// tag it sends one
// manifest HEAD, to the first pull source of registries.conf that answers
// (mirrors first, as containers/image orders them); for a digest-pinned
// docker:// reference nothing is sent; for local transports (oci:, dir:,
// oci-archive:, …) the top-level manifest is read, within the size cap.
// A registry blocked by registries.conf is ErrBlocked, and nothing is sent
// to it.
func (c *Client) Check(ctx context.Context, ref types.ImageReference) (*Check, error) {
	ch := &Check{c: c, ref: ref, name: transports.ImageName(ref), top: PinnedDigest(ref)}
	if !isDocker(ref) {
		src, err := c.Open(ctx, ref, "")
		if err != nil {
			return nil, err
		}
		ch.local, ch.top = src, src.TopDigest()
		return ch, nil
	}
	if err := c.checkConfig(ref); err != nil {
		return nil, err
	}
	sess, err := newSession(c.sys, ref.DockerReference())
	if err != nil {
		return nil, err
	}
	ch.sess = sess
	if ch.top != "" {
		return ch, nil
	}
	err = sess.try(ctx, sess.logical, func(e *endpoint) (err error) {
		ch.top, err = e.headDigest(ctx, tagOf(e.ref))
		return err
	})
	if err != nil {
		sess.close()
		return nil, classify(err, "HEAD manifest")
	}
	return ch, nil
}

// tagOf returns the tag or digest a docker reference names.
func tagOf(ref reference.Named) string {
	if c, ok := ref.(reference.Canonical); ok {
		return c.Digest().String()
	}
	if t, ok := ref.(reference.Tagged); ok {
		return t.Tag()
	}
	return "latest"
}

// TopDigest returns what the reference points to: an index or a manifest.
func (ch *Check) TopDigest() digest.Digest { return ch.top }

// Endpoint names the pull source the image is read from, as a docker
// reference: a mirror's, or the location registries.conf rewrote the
// reference to, or the reference itself. It is "" for local transports and
// for a digest-pinned reference before Image.
func (ch *Check) Endpoint() string {
	if ch.sess == nil || ch.sess.chosen == nil {
		return ""
	}
	return ch.sess.chosen.ref.String()
}

// Image fetches and verifies what TopDigest names: the manifest by that
// digest (an index is resolved to the wanted platform's manifest, one more
// GET) and the config (one blob GET), never the layers. After a HEAD, the
// GETs go to the source that answered it; for a digest-pinned reference,
// to the first pull source that serves the digest.
func (ch *Check) Image(ctx context.Context) (*Image, error) {
	if ch.local != nil {
		return ch.local.Image(ctx)
	}
	f := &sessionFetcher{c: ch.c, sess: ch.sess}
	var data []byte
	var mt string
	fetch := func(e *endpoint) (err error) {
		if data, mt, err = e.getManifest(ctx, ch.top, ch.c.maxManifest); err != nil {
			return err
		}
		return verifyBlob(data, ch.top, -1, "manifest")
	}
	var err error
	if e := ch.sess.chosen; e != nil {
		err = fetch(e)
	} else {
		var pinned reference.Canonical
		if pinned, err = reference.WithDigest(reference.TrimNamed(ch.sess.logical), ch.top); err == nil {
			err = ch.sess.try(ctx, pinned, fetch)
		}
	}
	if err != nil {
		if errors.Is(err, ErrDigestMismatch) {
			return nil, err // it names the digest wanted
		}
		return nil, classify(err, "GET manifest "+ch.top.String())
	}
	return readImage(ctx, ch.c, f, ch.name, ch.top, data, mt)
}

// CheckPolicy evaluates the signature policy for img, which must come from
// this Check's Image; see Source.CheckPolicy. containers/image reads the
// signatures (lookaside, the registry's extension, sigstore attachments)
// through a source of its own, pinned to TopDigest: a second session, paid
// only when signatures are verified.
func (ch *Check) CheckPolicy(ctx context.Context, img *Image, policyPath string) (Verdict, error) {
	if ch.local != nil {
		return ch.local.CheckPolicy(ctx, img, policyPath)
	}
	if !policySupported {
		return Verdict{}, ErrPolicyUnsupported
	}
	src, err := ch.c.Open(ctx, ch.ref, ch.top)
	if err != nil {
		return Verdict{}, err
	}
	defer src.Close()
	return src.CheckPolicy(ctx, img, policyPath)
}

// Close releases the check's connections (or its local source).
func (ch *Check) Close() error {
	if ch.local != nil {
		return ch.local.Close()
	}
	ch.sess.close()
	return nil
}

// sessionFetcher reads an image's parts from the session's chosen source.
type sessionFetcher struct {
	c    *Client
	sess *session
}

func (f *sessionFetcher) manifest(ctx context.Context, d digest.Digest) ([]byte, string, error) {
	data, mt, err := f.sess.chosen.getManifest(ctx, d, f.c.maxManifest)
	if err != nil {
		return nil, "", classify(err, "GET manifest "+d.String())
	}
	return data, mt, nil
}

func (f *sessionFetcher) blob(ctx context.Context, desc imgspecv1.Descriptor, kind string) (io.ReadCloser, error) {
	what := fmt.Sprintf("GET %s %s", kind, desc.Digest)
	if err := checkDescriptor(desc, kind); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	rc, size, err := f.sess.chosen.getBlob(ctx, desc.Digest)
	if err != nil {
		return nil, classify(err, what)
	}
	return verifiedBlob(rc, size, desc, what)
}
