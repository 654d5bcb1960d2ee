// Package updatecache checks for, caches and fetches OS updates shipped as
// container images, for image-based systems (rpm-ostree, bootc and the like)
// that keep their deployed image in an OSTree repository.
//
// # The flow
//
// A deployed image is a merge commit at the ref
// ostree/container/image/<escaped image reference>, carrying the image's
// manifest and config in its metadata, as ostree-ext writes it.
//
//  1. A background check calls [Prepare] (on a booted host, for the image
//     [BootedImage] names). One HEAD request asks the registry what the tag
//     points to; when that is the deployed image or the update already
//     cached, nothing more happens. Otherwise the new manifest and
//     config (never the layers) are fetched, verified, and written as
//     detached metadata of the deployed merge commit: the cached update.
//  2. The updater shows "update available: version, size to download" from
//     the result ([CachedUpdate]: version, digest, layer diff).
//  3. Later, even after a reboot and without the network, [QueryCachedUpdate]
//     (or [QueryImage], [QueryCommit], [ListImages]) shows the same update
//     from the repository alone.
//  4. [PullPrepared] fetches exactly the prepared digest, never what the tag
//     names by then, imports the missing layers and moves the image's ref to
//     a new merge commit; if the registry no longer has the update it fails
//     with [ErrPreparedUpdateGone] and changes nothing. [Pull] fetches what
//     the tag names now; [ClearCachedUpdate] forgets a cached update;
//     [Prune] collects what no image needs.
//
// The cached update is bound to the merge commit: it lives in that commit's
// .commitmeta file, so pruning the commit deletes it and a new deployment
// starts without one. Writes replace files atomically under the repository
// lock that libostree uses, and keep every detached key they do not own.
// The keys are ostree-ext's (ostree-ext.cached.*) plus this library's own
// (updatecache.*), so rpm-ostree and bootc can share the repository.
//
// # Packages
//
//   - updatecache (this package): the only package that joins the
//     registry side to the repository side. One file per concept:
//     reference.go (image references, pinning), metadata.go (what a
//     manifest and config say), fetch.go (RegistryOptions: reaching the
//     registry), deployed.go (a merge commit and its cache, read once),
//     cache.go (the cached update's record and keys), layout.go (which
//     layer of an image is what: ostree-ext's encapsulated commit, chunks,
//     derived layers), layers.go (fetching and importing layers), booted.go
//     (the image the booted deployment follows); and one file per
//     operation, which use those and never each other: prepare.go,
//     query.go, pull.go, prune.go.
//   - updatecachetest: a fake registry with request counting and fault
//     injection, a builder of small synthetic OS images and of images
//     encapsulated from OSTree commits as ostree-ext exports them, and a
//     repository with a deployed image, for testing updaters.
//   - cmd/updatecache: the command line tool over this package: terminal
//     output, bootc's progress protocol, signals, the metered-connection
//     guard (its demo, which links the test kit, only with -tags demo);
//     contrib/systemd holds its timer units.
//   - internal/keys: every metadata key written for images, ostree-ext's
//     and this library's, in one place.
//   - internal/registry: registries and local image sources: the check
//     (one session: the HEAD, then manifest and config, from the pull
//     source registries.conf leads to), layer fetches by digest through
//     containers/image, everything verified and size-capped, and signature
//     policy evaluation. Knows nothing of OSTree.
//   - internal/importer: layers into OSTree objects as ostree-ext imports
//     them (plain layers, and the commit and chunk layers of encapsulated
//     images), the merge commit, and its SELinux labels.
//   - internal/ostree: the OSTree repository format in pure Go: refs,
//     commits, detached metadata, content objects, the repository lock,
//     garbage collection. Knows nothing of registries.
//   - internal/selinux: SELinux file contexts in pure Go: a tree's policy
//     found as libostree finds it, and the label of a path and file type
//     as libselinux gives it. Knows nothing of OSTree objects or registries.
//   - internal/gvariant: the GVariant serialisation format OSTree uses.
//
// Data flows one way: registry, then image metadata, then repository.
//
// # Errors
//
// Every error wraps a sentinel of this package (such as [ErrOffline],
// [ErrCorruptCache], [ErrManifestUnknown], [ErrUnavailable], [ErrConfig],
// [ErrInvalidLayer], [ErrLockTimeout], [ErrRepoIO]) or a context error, so
// callers branch with errors.Is: retry on ErrUnavailable or
// ErrRateLimited, not on ErrConfig. A registry that fails, lies or times
// out leaves the repository as it was.
//
// # Build tags
//
// Everything builds with CGO_ENABLED=0 and no tags. Verifying signatures
// (RegistryOptions.VerifySignatures) needs the tag containers_image_openpgp,
// with which containers/image checks them in pure Go; without it that
// option fails with [ErrPolicyUnsupported].
package updatecache
