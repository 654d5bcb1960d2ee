package updatecache

import (
	"context"
	"fmt"
	"strings"

	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/types"

	"github.com/osimage/updatecache/internal/registry"
)

// RegistryOptions say how to reach registries; Prepare and the pulls share
// them.
type RegistryOptions struct {
	// SystemContext carries containers/image settings: auth file, TLS
	// (DockerInsecureSkipTLSVerify), registries.conf, certificates and the
	// OS/architecture/variant choices. Nil means the defaults, which read the
	// usual files (auth.json, registries.conf) as podman and skopeo do.
	SystemContext *types.SystemContext
	// Platform selects the instance of a multi-arch image. Nil means the
	// SystemContext choices, else the running platform.
	Platform *imgspecv1.Platform
	// Offline forbids network access: anything that needs it fails with
	// ErrOffline. Local transports (oci:, oci-archive:, dir:, …) work
	// offline.
	Offline bool
	// MaxManifestSize and MaxConfigSize cap what is read from the network;
	// zero means the defaults of 4 MiB each.
	MaxManifestSize int64
	MaxConfigSize   int64
	// VerifySignatures evaluates the signature policy (policy.json) for
	// every image fetched: Prepare records the verdict with the cached
	// update, Pull refuses an image the policy rejects (ErrPolicyRejected)
	// before importing anything. References written ostree-image-signed:REF
	// turn it on. It needs the build tag containers_image_openpgp (without
	// it: ErrPolicyUnsupported).
	VerifySignatures bool
	// SignaturePolicyPath names the policy; "" means the SystemContext's,
	// else /etc/containers/policy.json.
	SignaturePolicyPath string
}

// SignatureVerdict is the signature policy's verdict on an image.
type SignatureVerdict struct {
	Allowed bool
	// Reason says why the policy rejects the image.
	Reason string
}

// fetchedImage is an image's manifest and config as the registry served
// them (verified against their digests) and what they say.
type fetchedImage struct {
	raw   *registry.Image
	image *Image
}

func (o *RegistryOptions) client() *registry.Client {
	return registry.New(registry.Options{
		SystemContext:   o.SystemContext,
		Platform:        o.Platform,
		MaxManifestSize: o.MaxManifestSize,
		MaxConfigSize:   o.MaxConfigSize,
	})
}

// open opens the image ir names, pinned to top ("" for whatever it names
// now), and reads its manifest and config. The source stays open for the
// layers; the caller closes it.
func (o *RegistryOptions) open(ctx context.Context, ir *imageRef, top digest.Digest) (*registry.Source, *fetchedImage, error) {
	if o.Offline && ir.overNetwork() {
		return nil, nil, fmt.Errorf("%w: fetching %s", ErrOffline, ir.name)
	}
	src, err := o.client().Open(ctx, ir.ref, top)
	if err != nil {
		return nil, nil, fmt.Errorf("fetching %s: %w", ir.name, err)
	}
	raw, err := src.Image(ctx)
	if err != nil {
		src.Close()
		return nil, nil, fmt.Errorf("fetching %s: %w", ir.name, err)
	}
	f, err := newFetchedImage(raw)
	if err != nil {
		src.Close()
		return nil, nil, err
	}
	return src, f, nil
}

func newFetchedImage(raw *registry.Image) (*fetchedImage, error) {
	img, err := parseImage(raw.ManifestDigest, raw.Manifest, raw.Config)
	if err != nil {
		return nil, err
	}
	img.TopDigest = raw.TopDigest
	return &fetchedImage{raw: raw, image: img}, nil
}

// check asks the registry what ir names now: for a tag one HEAD, to the
// pull source registries.conf leads to. The returned check keeps that
// session open for fetch; the caller closes it.
func (o *RegistryOptions) check(ctx context.Context, ir *imageRef) (*registry.Check, error) {
	if o.Offline && ir.overNetwork() {
		return nil, fmt.Errorf("%w: checking %s", ErrOffline, ir.name)
	}
	ch, err := o.client().Check(ctx, ir.ref)
	if err != nil {
		return nil, fmt.Errorf("checking %s: %w", ir.name, err)
	}
	return ch, nil
}

// fetch reads the manifest and config of what ch found, from the source
// that answered it, with the signature verdict when asked for.
func (o *RegistryOptions) fetch(ctx context.Context, ir *imageRef, ch *registry.Check) (*fetchedImage, *SignatureVerdict, error) {
	raw, err := ch.Image(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("fetching %s: %w", ir.name, err)
	}
	f, err := newFetchedImage(raw)
	if err != nil {
		return nil, nil, err
	}
	v, err := o.verdict(ctx, ir, ch, raw)
	return f, v, err
}

// enforcePolicy refuses (ErrPolicyRejected) an image the signature policy
// rejects, when signatures are verified.
func (o *RegistryOptions) enforcePolicy(ctx context.Context, ir *imageRef, pc policyChecker, raw *registry.Image) error {
	v, err := o.verdict(ctx, ir, pc, raw)
	if err == nil && v != nil && !v.Allowed {
		err = fmt.Errorf("%w: %s@%s: %s", ErrPolicyRejected, ir.name, raw.ManifestDigest, v.Reason)
	}
	return err
}

// policyChecker evaluates the signature policy for an image it read:
// registry.Source and registry.Check.
type policyChecker interface {
	CheckPolicy(ctx context.Context, img *registry.Image, policyPath string) (registry.Verdict, error)
}

// verdict evaluates the signature policy for raw when asked to: nil when
// signatures are not verified.
func (o *RegistryOptions) verdict(ctx context.Context, ir *imageRef, pc policyChecker, raw *registry.Image) (*SignatureVerdict, error) {
	if !o.VerifySignatures && !ir.signed {
		return nil, nil
	}
	v, err := pc.CheckPolicy(ctx, raw, o.SignaturePolicyPath)
	if err != nil {
		return nil, fmt.Errorf("signature policy for %s: %w", ir.name, err)
	}
	return &SignatureVerdict{Allowed: v.Allowed, Reason: v.Reason}, nil
}

// otherPlatform reports whether the options ask for a platform other than
// os/arch[/variant] (as formatPlatform writes it): then a tag that still
// names what is deployed or cached may hold another instance to resolve.
func (o *RegistryOptions) otherPlatform(platform string) bool {
	want := o.Platform
	if want == nil && o.SystemContext != nil && (o.SystemContext.OSChoice != "" || o.SystemContext.ArchitectureChoice != "") {
		want = &imgspecv1.Platform{OS: o.SystemContext.OSChoice, Architecture: o.SystemContext.ArchitectureChoice, Variant: o.SystemContext.VariantChoice}
	}
	if want == nil || platform == "" {
		return false
	}
	os, rest, _ := strings.Cut(platform, "/")
	arch, variant, _ := strings.Cut(rest, "/")
	return want.OS != "" && want.OS != os || want.Architecture != "" && want.Architecture != arch ||
		want.Variant != "" && want.Variant != variant
}
