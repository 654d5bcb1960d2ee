package updatecache

import (
	"errors"

	"github.com/osimage/updatecache/internal/importer"
	"github.com/osimage/updatecache/internal/ostree"
	"github.com/osimage/updatecache/internal/registry"
)

// Errors of this package. Every error returned wraps one of these (or a
// context error), so callers can branch with errors.Is.
var (
	// ErrOffline: the operation needs the network but Offline was set.
	ErrOffline = errors.New("updatecache: offline, and the network is needed")
	// ErrNotDeployed: the repository has no merge commit for the image.
	ErrNotDeployed = errors.New("updatecache: image not deployed")
	// ErrCorruptCache: the cached update on a merge commit (or the detached
	// metadata holding it) cannot be read. The deployed image is still
	// reported where possible.
	ErrCorruptCache = errors.New("updatecache: corrupt cached update")
	// ErrInvalidMetadata: a manifest or config, from the registry or the
	// repository, lacks what an image needs.
	ErrInvalidMetadata = errors.New("updatecache: invalid image metadata")
	// ErrInvalidReference: an image reference that cannot be parsed.
	ErrInvalidReference = errors.New("updatecache: invalid image reference")
	// ErrNoCachedUpdate: PullPrepared found no cached update to fetch.
	ErrNoCachedUpdate = errors.New("updatecache: no cached update")
	// ErrPreparedUpdateGone: the registry no longer has the manifest or a
	// layer of the prepared update; the repository is unchanged.
	ErrPreparedUpdateGone = errors.New("updatecache: the prepared update is no longer in the registry")
	// ErrUnsupportedImage: the image's layout (ostree-ext's encapsulation
	// labels) is one this library cannot import exactly; nothing was
	// written.
	ErrUnsupportedImage = errors.New("updatecache: unsupported image layout")
	// ErrRemoteVerification: the reference asks for the image's OSTree
	// commit to be verified with an OSTree remote's GPG keys
	// (ostree-remote-image:, ostree-remote-registry:), which this library
	// does not do; a pull is refused rather than done unverified.
	ErrRemoteVerification = errors.New("updatecache: verifying a commit with an OSTree remote's keys is not supported")
)

// Errors from importing layers, re-exported likewise.
var (
	ErrSELinuxPolicy = importer.ErrSELinuxPolicy // the SELinux policy the image ships cannot be used to label it (a type that is not there, malformed file contexts); PullOptions.NoSELinux pulls it unlabelled
	ErrInvalidLayer  = importer.ErrInvalidLayer  // a layer that is not a well-formed tar, or holds entries OSTree cannot represent (a path with "..", a hard link to nothing, …)
)

// Errors from the registry side, re-exported so callers can test for them.
var (
	ErrManifestUnknown     = registry.ErrManifestUnknown     // the image or digest is not (or no longer) in the registry
	ErrUnauthorized        = registry.ErrUnauthorized        // 401/403
	ErrRateLimited         = registry.ErrRateLimited         // 429 beyond the retries allowed by the deadline
	ErrUnavailable         = registry.ErrUnavailable         // 5xx, connection failures, timeouts, redirect loops: retrying may help
	ErrBlocked             = registry.ErrBlocked             // registries.conf blocks the registry; nothing was sent to it
	ErrInsecureRedirect    = registry.ErrInsecureRedirect    // a redirect from HTTPS to plain HTTP while TLS is verified, refused before connecting
	ErrConfig              = registry.ErrConfig              // unreadable or malformed registries.conf, registries.d, auth file or certificates; an untrusted or misnamed registry certificate; plain HTTP where TLS is required: retrying will not help
	ErrDigestMismatch      = registry.ErrDigestMismatch      // content that does not match its digest or size
	ErrTooLarge            = registry.ErrTooLarge            // a manifest or config over its size cap, or a cached update that would make the detached metadata too large to read back
	ErrUnsupportedManifest = registry.ErrUnsupportedManifest // schema 1 or an unknown media type
	ErrNoMatchingPlatform  = registry.ErrNoMatchingPlatform  // an index without the requested platform
	ErrMalformed           = registry.ErrMalformed           // unparsable registry responses
	ErrPolicyRejected      = registry.ErrPolicyRejected      // the signature policy rejects the image
	ErrPolicyInvalid       = registry.ErrPolicyInvalid       // the signature policy file is missing or invalid
	ErrPolicyUnsupported   = registry.ErrPolicyUnsupported   // built without the containers_image_openpgp tag
)

// Errors from the repository side, re-exported likewise.
var (
	ErrNotRepository          = ostree.ErrNotRepository          // not an OSTree repository
	ErrUnsupportedRepoVersion = ostree.ErrUnsupportedRepoVersion // a repo_version other than 1
	ErrUnsupportedRepoMode    = ostree.ErrUnsupportedMode        // a repository mode this library does not know
	ErrCorruptRepo            = ostree.ErrCorrupt                // a repository object that fails its checksum or does not parse
	ErrLockTimeout            = ostree.ErrLockTimeout            // the repository lock was not granted in time
	ErrReadOnly               = ostree.ErrReadOnly               // the repository cannot be written
	ErrRepoIO                 = ostree.ErrIO                     // a file system operation on the repository failed (a full disk, an I/O error); the os error is wrapped too
	ErrMissingObject          = ostree.ErrObjectNotFound         // an object a commit needs is absent (an incomplete repository, or one pruned meanwhile)
	ErrNotBooted              = ostree.ErrNotBooted              // BootedImage: no booted OSTree deployment that follows a container image
)
