// Package importer turns container image layers into OSTree content the
// way ostree-ext does, in pure Go: each layer blob becomes a commit under
// ostree/container/blob/<escaped digest>, and the layers of an image are
// merged, OCI whiteouts applied, into the image's merge commit.
//
// Plain ("derived") layers become layer commits of their tree
// (ImportLayer). Images that ostree-ext encapsulated from an OSTree commit
// (Fedora CoreOS, bootc images: tar format v1, "chunked") carry the commit
// itself: the commit layer's objects become that commit
// (ImportCommitLayer), each chunk layer's content objects an object-set
// commit, byte for byte as ostree-ext writes it (ImportObjectSetLayer).
// Every object is verified against its checksum as it is written, the
// commit against the image's ostree.commit label and for completeness.
// VerifyLayerCommit checks an existing blob ref before it is reused, and
// WriteImageMergeCommit writes the merge commit of a base commit and
// derived layers (or derived layers alone, for a plain image) as
// ostree-ext does.
// It knows OSTree (through internal/ostree) and the OCI layer format, not
// registries: the caller supplies the blob stream and what the manifest
// and config say about it.
//
// # Streaming
//
// A layer is read once, front to back, to its end. The blob is verified
// by the reader it comes from (registry.Source.Layer checks the compressed
// digest and size as it streams); the uncompressed diff_id is computed on
// the way and checked before the ref is set, and the uncompressed size is
// capped (Blob.MaxSize). File content goes through the content checksum and into the
// object at the same time and is never held whole in memory (content of up
// to 256 KiB is hashed in a buffer first, so an object already present
// costs no file). The tree being built holds names and checksums only.
//
// # Path rules (ostree-ext's)
//
// Absolute names become relative, empty and "." components are dropped,
// and a ".." component is an error. Then, by top-level name:
//
//	usr                     kept
//	etc                     moved to usr/etc (hard link targets too)
//	var                     moved to usr/share/factory/var (kept with KeepVar)
//	run tmp proc sys dev    the directory kept, everything below dropped
//	anything else           dropped (kept with AllowNonUsr)
//
// Dropped entries are counted per top-level name in LayerResult.Filtered
// and in the layer commit's metadata under FilteredKey (a{su}); devices and
// FIFOs are dropped wherever they are and counted under SpecialKey (u).
//
// # Fidelity to libostree
//
// A layer commit's tree is what `ostree commit --tree=tar=FILE
// --tar-autocreate-parents` makes of the same (filtered) tar, byte for
// byte, in archive-z2, bare-user, bare-user-only and bare repositories,
// including libostree's parent creation (see ImportLayer). The exceptions
// are deliberate:
//   - xattrs are recorded sorted by name; libostree's tar path records them
//     in libarchive's order, the reverse of the archive's;
//   - a hard link takes its target's content when the link is read;
//     libostree resolves links after the whole archive;
//   - where the repository stores files as real files (bare,
//     bare-user-only), a symlink's mode is recorded as 0777 and, in bare,
//     xattrs with an empty value are left out, since that is what the
//     stored file reads back as; libostree records the tar's values and
//     its repository then fails `ostree fsck`.
//
// # Whiteouts
//
// Layer commits keep whiteout files (".wh.NAME", ".wh..wh..opq") as the
// empty regular files they are in the tar, as ostree-ext's do;
// WriteImageMergeCommit applies them to the layers below and leaves them
// out of the merged tree, as libostree's union checkout with whiteouts
// (ostree-ext's merge) does, and a directory keeps the metadata of the
// lowest layer that has it. (Unlike that checkout, a file may replace a
// directory and the reverse, as the OCI layer format allows.)
//
// A whiteout is a path like any other, so the path rules apply to it
// before it means anything, exactly as in ostree-ext: etc/.wh.passwd
// becomes usr/etc/.wh.passwd and deletes the passwd a lower layer put in
// /etc; usr/.wh.etc deletes usr/etc, so everything lower layers put in
// /etc; usr/.wh..wh..opq empties usr, so also what lower layers put in /etc
// and /var (usr/etc, usr/share/factory/var); var/.wh.x deletes
// usr/share/factory/var/x. A whiteout at the top level (.wh.etc,
// .wh..wh..opq) is a top-level name other than usr, etc and var, so it is
// dropped (kept at the top, and deleting nothing there, with AllowNonUsr).
//
// # SELinux labels
//
// WriteImageMergeCommit labels an image with derived layers (every plain
// image) as ostree-ext does: with the policy the merged tree itself ships
// (LoadTreePolicy: etc/selinux/config, else usr/etc/selinux/config, read
// from the tree's objects through ostree.Repo.TreeFS), it labels the
// merged tree and relabels each derived layer commit, moving the layer's
// blob ref to the relabelled commit; without a policy nothing changes.
// The labels are exactly libostree 2022.7's when it commits a stored tree
// with a policy (`ostree commit --tree=ref=REV --selinux-policy=ROOT`, what
// ostree-ext's checkout-and-commit amounts to): looked up by path ("/"
// for the root, /usr/etc as it stands) and full st_mode, security.selinux
// appended after the other xattrs, and a path the policy does not label
// keeps its xattrs. Objects whose xattrs change are copied with the new
// metadata (ostree.Stage.CopyContent: in archive repositories the
// compressed stream is copied, not compressed again). Deliberate
// differences: a bare repository records the xattrs of a relabelled
// content object sorted (as the stored file reads back; libostree's own
// object then fails its fsck), a bare-user-only repository is never
// labelled (it stores no xattrs), and symbolic links on the way to the
// policy resolve within the tree (libostree, in a checkout, resolves an
// absolute one on the host).
//
// ostree-ext imports a derived layer already labelled with the base
// commit's policy (for a plain image, bootc passes the booted
// deployment's), `ostree commit --tree=tar= --selinux-policy=`; ImportLayer
// imports it unlabelled. After a labelled merge the two differ only where
// the merged tree's policy gives no label (<<none>> paths such as
// /usr/tmp/*), which keep the import's labels in ostree-ext.
package importer
