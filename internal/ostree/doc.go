// Package ostree reads and writes the parts of an OSTree repository that
// updatecache needs, byte-compatible with libostree 2022.7 and tested
// against the real ostree tool. It knows nothing of registries or images
// beyond ostree-ext's ref naming.
//
// # What it covers
//
//   - Opening a repository (config: repo_version, mode, lock-timeout-secs)
//     and creating one like `ostree init`.
//   - Refs with libostree's semantics: refs/heads, "remote:name" in
//     refs/remotes, checksums, aliases; validated so a ref never names a path
//     outside refs/.
//   - Content-addressed metadata objects (commit, dirtree, dirmeta): strict
//     decoders and normal-form encoders, checksum verification on read.
//   - Detached metadata (.commitmeta) with a locked read-modify-write that
//     keeps untouched entries byte for byte.
//   - ostree-ext's ref escaping and its image and layer ref names.
//   - The repository lock, interoperating with libostree.
//   - Garbage collection like `ostree prune --refs-only` (Repo.Prune).
//   - Reading content objects in every mode, checked against their
//     checksum (Repo.OpenContent), copying one with new metadata
//     (Stage.CopyContent), a tree as an io/fs.FS (Repo.TreeFS), and
//     checking that a commit has every object it reaches
//     (Repo.CheckCommitComplete, Stage.CheckTreeComplete).
//
// Content objects (.file, .filez) and the tree writer live in this package
// too, in files of their own (content*.go, dirtree*.go, stage*.go).
//
// # What it deliberately does not do
//
// No pulls or remotes' configuration, no static deltas, no GPG or
// signatures, no checkout or deployment, no history pruning by depth or
// age, no collection refs (refs/mirrors, which Prune only keeps as roots),
// no tombstone handling, no summary files. core.fsync=false and
// core.locking=false are ignored: this package always fsyncs and locks.
//
// # Trust
//
// Ref names, checksums and every byte read from files are treated as
// untrusted: validated, size-capped, never used to build a path outside
// the repository. The repository's directory structure itself (for
// example a symlinked objects/ directory) is trusted, as libostree trusts
// it.
//
// # Lock protocol
//
// libostree locks <repo>/.lock with OFD record locks (fcntl F_OFD_SETLK,
// whole file): F_RDLCK shared during transactions (object, commit and ref
// writes), F_WRLCK exclusive while pruning. Repo.Lock takes the same locks
// (flock() only where OFD locks are unsupported, as libostree does), and
// every write here takes the shared lock itself. Busy locks are retried
// every 50 ms until core.lock-timeout-secs (default 30 s) or the context
// ends: ErrLockTimeout.
//
// libostree writes .commitmeta without any lock. This package's detached
// metadata writes take an exclusive OFD lock on <repo>/.updatecache-lock, a
// file of our own that libostree never deletes, so concurrent
// read-modify-writes serialise, and then the repository lock shared, so
// prune cannot delete the commit meanwhile. Order: ours, then the
// repository lock, so that queued writers do not hold the repository lock
// and starve libostree's prune.
//
// Locks are not reentrant: each Lock opens its own descriptor, so a
// goroutine holding LockExclusive must not call a method that writes.
//
// # Writes
//
// A single file (a ref, a metadata object, .commitmeta) is written to a
// temporary file in the repository's tmp/ (where libostree expires what a
// killed process leaves), fsynced, renamed over the target, and the
// target's directory is fsynced. Content and tree objects of an import go
// through a Stage, libostree's transaction: staged in tmp/staging-*, one
// syncfs, then renamed into objects/. Failures from a read-only or
// unwritable repository wrap ErrReadOnly and leave nothing behind.
package ostree
