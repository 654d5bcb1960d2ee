// Package keys is the one home of the names written into an OSTree
// repository's metadata for container images: ostree-ext's (the library in
// rpm-ostree and bootc), which this library shares so that those tools and
// it can use one repository, and this library's own additions. Ref names
// (ostree/container/image/…, ostree/container/blob/…) are part of the
// repository format and live in internal/ostree.
package keys

// Commit metadata of an image's merge commit (ostree-ext's keys, all of type s).
const (
	// ManifestDigest is the digest of the per-platform manifest (never an index).
	ManifestDigest = "ostree.manifest-digest"
	// Manifest is the manifest's JSON (ostree-ext may re-serialise it).
	Manifest = "ostree.manifest"
	// ImageConfig is the image config's JSON ("null" for very old imports).
	ImageConfig = "ostree.container.image-config"
	// ImporterVersion names the program that wrote the commit (informational).
	ImporterVersion = "ostree.importer.version"
	// TopDigest (this library's) is the digest the tag pointed to when the
	// image was pulled: an index for multi-arch images.
	TopDigest = "updatecache.top-digest"
)

// Detached metadata of the deployed merge commit: the cached update.
const (
	// CachedManifestDigest, CachedManifest and CachedConfig are ostree-ext's
	// keys: the new per-platform manifest's digest, that manifest and its
	// config. No digest means no cached update.
	CachedManifestDigest = "ostree-ext.cached.manifest-digest"
	CachedManifest       = "ostree-ext.cached.manifest"
	CachedConfig         = "ostree-ext.cached.config"
	// CachedTopDigest, CachedCheckedAt (RFC 3339), CachedPlatform
	// (os/arch[/variant]) and CachedSignature ("accepted", or "rejected: "
	// and the reason) are this library's additions beside them.
	CachedTopDigest = "updatecache.cached.top-digest"
	CachedCheckedAt = "updatecache.cached.checked-at"
	CachedPlatform  = "updatecache.cached.platform"
	CachedSignature = "updatecache.cached.signature"
	// DeployedTopDigest records the top-level digest learned for an image
	// another tool deployed, so the next check of a multi-arch tag is a
	// HEAD alone.
	DeployedTopDigest = "updatecache.deployed.top-digest"
)

// CachedUpdate lists every key of a cached update, ostree-ext's and this
// library's: what clearing a cached update removes, and nothing else.
var CachedUpdate = []string{
	CachedManifestDigest, CachedManifest, CachedConfig,
	CachedTopDigest, CachedCheckedAt, CachedPlatform, CachedSignature,
}

// Labels (also copied as manifest annotations) of images ostree-ext
// encapsulates, from which it reads an image's layout.
const (
	// CommitLabel holds the checksum of the OSTree commit inside the image.
	CommitLabel = "ostree.commit"
	// FinalDiffIDLabel holds the diff_id of the last layer belonging to the
	// commit; the layers after it are derived (plain) layers. An image
	// without it is plain: every layer is derived.
	FinalDiffIDLabel = "ostree.final-diffid"
	// ComponentsAnnotation lists a chunk layer's components (packages),
	// sorted and joined by ",".
	ComponentsAnnotation = "ostree.components"
	// BootableLabel, BootcLabel and LinuxLabel say the image boots, is a
	// bootc image, and which kernel version it carries.
	BootableLabel = "ostree.bootable"
	BootcLabel    = "containers.bootc"
	LinuxLabel    = "ostree.linux"
)

// Labels of any image that say what it is.
const (
	// VersionLabel is the image's version; LegacyVersionLabel ("version")
	// is read when it is missing, as ostree-ext and bootc do.
	VersionLabel       = "org.opencontainers.image.version"
	LegacyVersionLabel = "version"
	// CreatedLabel is when the image was made: a config label (what bootc
	// shows) and a manifest annotation (what ostree-ext dates its merge
	// commit by).
	CreatedLabel = "org.opencontainers.image.created"
)
