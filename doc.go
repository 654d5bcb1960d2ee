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
//  1. A background check calls [Prepare]. One HEAD request asks the registry
//     what the tag points to; when that is the deployed image or the update
//     already cached, nothing more happens. Otherwise the new manifest and
//     config (never the layers) are fetched, verified, and written as
//     detached metadata of the deployed merge commit: the cached update.
//  2. The updater shows "update available: version, size to download" from
//     the result.
//  3. Later, even after a reboot and without the network, [QueryCachedUpdate]
//     (or [QueryImage], [ListImages]) shows the same update from the
//     repository alone.
//  4. [ClearCachedUpdate] forgets it.
//
// The cached update is bound to the merge commit: it lives in that commit's
// .commitmeta file, so pruning the commit deletes it and a new deployment
// starts without one. Writes replace the file atomically under the
// repository lock that libostree uses, and keep every detached key they do
// not own. The keys are ostree-ext's (ostree-ext.cached.*) plus this
// library's own (updatecache.*), so rpm-ostree and bootc can share the
// repository.
//
// # Packages
//
//   - updatecache (this package): the operations above; the only package
//     that joins the registry side to the repository side.
//   - updatecachetest: a fake registry with request counting and fault
//     injection, a builder of small synthetic OS images, and a repository
//     with a deployed image, for testing updaters.
//   - cmd/updatecache: the command line tool over this package.
//   - internal/registry: containers/image access to registries: HEAD for
//     the tag's digest, manifest and config fetches by digest, verified and
//     size-capped. Knows nothing of OSTree.
//   - internal/ostree: the OSTree repository format in pure Go: refs,
//     commits, detached metadata, the repository lock. Knows nothing of
//     registries.
//   - internal/gvariant: the GVariant serialisation format OSTree uses.
//
// Data flows one way: registry, then image metadata, then repository.
//
// # Errors
//
// Every error wraps a sentinel of this package (such as [ErrOffline],
// [ErrCorruptCache], [ErrManifestUnknown], [ErrLockTimeout]) or a context
// error. A registry that fails, lies or times out leaves the repository as
// it was.
package updatecache
