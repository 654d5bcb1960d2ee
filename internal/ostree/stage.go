package ostree

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/klauspost/compress/flate"
	"golang.org/x/sys/unix"
)

// archiveCompressionLevel is libostree's default zlib level for .filez
// objects (core.zlib-level).
const archiveCompressionLevel = 6

// bareUserMetaXattr holds a bare-user content object's real ownership, mode
// and xattrs.
const bareUserMetaXattr = "user.ostreemeta"

// copyBufferSize is the buffer content is streamed through: large enough
// that a big file costs few syscalls, small enough to keep memory flat.
const copyBufferSize = 256 << 10

// smallContentSize is the largest content hashed in memory before any file
// is made (most files of an OS image are smaller); larger content streams
// through a temporary file.
const smallContentSize = 256 << 10

// Stage is a write transaction, shaped like libostree's: objects are
// written into a private staging directory, tmp/staging-<boot id>-<random>,
// and moved into objects/ by Commit after a single syncfs, which is how
// libostree makes a transaction durable without an fsync per object. The
// staging directory is locked (an OFD write lock on <dir>-lock, as
// libostree does), so libostree neither reuses nor cleans it up while it
// is in use. The repository lock is held shared from BeginStage to Close:
// prune cannot delete the objects written, or found already present,
// before the caller has referenced them from a commit and a ref.
//
// Content is streamed: a file's bytes go through the checksum and into the
// staged file in one pass and are never held in memory. An object already
// in the repository, or already staged, is not written again; its
// temporary file is removed.
//
// A Stage is not safe for concurrent use.
type Stage struct {
	repo       *Repo
	dir        string // the staging directory
	unlockRepo func() error
	unlockDir  func() error

	// known holds the objects present in objects/ or staged here, so each
	// is checked against the repository once. pending is the staged ones.
	known   map[objectKey]struct{}
	pending []objectKey
	subdirs map[string]bool // staging subdirectories made so far
	tmpSeq  int

	small *bytes.Buffer // content of up to smallContentSize
	zw    *flate.Writer // reused across .filez objects
	zr    io.ReadCloser // reused across CopyContent's inflating
	bw    *bufio.Writer // batches the compressor's small writes
	buf   []byte
	stats StageStats
}

// StageStats counts what a Stage wrote and what it found already present.
type StageStats struct {
	ContentWritten  int   // content objects staged
	ContentPresent  int   // content objects already in the repository or staged
	ContentBytes    int64 // uncompressed bytes of the content objects staged
	MetadataWritten int   // dirtree and dirmeta objects staged
	MetadataPresent int   // dirtree and dirmeta objects already there
}

type objectKey struct {
	sum [sha256.Size]byte
	t   ObjectType
}

func (k objectKey) checksum() string { return hex.EncodeToString(k.sum[:]) }

// BeginStage opens a write transaction: it takes the repository lock shared,
// expires what interrupted writers left in tmp/ (see ExpireTmp; failing to
// remove another process's leftovers does not stop this transaction), and
// creates and locks a staging directory. The caller must Close the Stage.
// bare-split-xattrs repositories are refused (ErrUnsupportedMode).
func (r *Repo) BeginStage(ctx context.Context) (*Stage, error) {
	if r.mode == ModeBareSplitXattrs {
		return nil, fmt.Errorf("write content: %w: %s is not supported for writing", ErrUnsupportedMode, r.mode)
	}
	unlockRepo, err := r.Lock(ctx, LockShared)
	if err != nil {
		return nil, fmt.Errorf("begin stage: %w", err)
	}
	s := &Stage{
		repo:       r,
		unlockRepo: unlockRepo,
		known:      map[objectKey]struct{}{},
		subdirs:    map[string]bool{},
	}
	// Before staging: a killed pull's directory frees its space first.
	_, _ = r.ExpireTmp(ctx, false)
	if err := s.makeDir(ctx); err != nil {
		unlockRepo()
		return nil, err
	}
	return s, nil
}

// makeDir creates and locks tmp/staging-<boot id>-<6 random characters>,
// libostree's naming, so its tmp cleanup recognises the directory. The lock
// comes first: ExpireTmp removes any staging directory whose lock it can
// take, so the directory must never exist unlocked while it is ours.
func (s *Stage) makeDir(ctx context.Context) error {
	tmp := filepath.Join(s.repo.path, "tmp")
	if err := mkdirAll(tmp); err != nil {
		return err
	}
	prefix := stagingPrefix + bootID() + "-"
	const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	for attempt := 0; ; attempt++ {
		var suffix [6]byte
		for i := range suffix {
			suffix[i] = letters[rand.IntN(len(letters))]
		}
		dir := filepath.Join(tmp, prefix+string(suffix[:]))
		unlock, err := lockFile(ctx, dir+"-lock", LockExclusive, 0)
		if errors.Is(err, ErrLockTimeout) && attempt < 100 {
			continue // another process's staging directory
		}
		if err != nil {
			return fmt.Errorf("lock staging directory: %w", err)
		}
		err = os.Mkdir(dir, 0o775)
		if errors.Is(err, fs.ErrExist) && attempt < 100 {
			unlock() // an abandoned directory: ExpireTmp's to remove
			continue
		}
		if err != nil {
			os.Remove(dir + "-lock")
			unlock()
			return writeError("create staging directory", dir, err)
		}
		s.dir, s.unlockDir = dir, unlock
		return nil
	}
}

// bootID is the kernel's boot id, as libostree puts it in staging
// directory names (objects staged in one boot are not trusted in the
// next). Without /proc, a random id still keeps the name unique.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if id := strings.TrimSpace(string(b)); err == nil && id != "" && !strings.ContainsRune(id, '/') {
		return id
	}
	return strconv.FormatUint(rand.Uint64(), 16)
}

// Stats returns what the Stage has written and found so far.
func (s *Stage) Stats() StageStats { return s.stats }

// WriteContent stores a content object (regular file or symlink, described
// by meta) and returns its checksum. A regular file's content is read from
// content, which must yield exactly size bytes (fewer or more is an error
// wrapping ErrInvalidContent, and io.ErrUnexpectedEOF when short); a
// symlink has size 0 and content is not read. How the object is stored
// depends on the repository mode: archive-z2 compresses it with its
// header; bare-user keeps ownership, mode and xattrs in user.ostreemeta
// and a symlink as a file holding the target and a NUL; bare-user-only
// accepts only what it can store (uid and gid 0, no xattrs, permissions
// within 0775: see FileMeta.CanonicalPermissions); bare sets the real
// owner, mode and xattrs, which needs root. What a mode cannot store is
// recorded as it will read back, so the object passes fsck: bare and
// bare-user-only record a symlink's permission bits as 0777 (it is a real
// symlink), and bare leaves out xattrs with an empty value and records
// the others sorted by name. Other modes keep meta.Xattrs in their order.
func (s *Stage) WriteContent(ctx context.Context, meta FileMeta, size int64, content io.Reader) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if err := meta.validateContent(); err != nil {
		return "", err
	}
	symlink := meta.Mode&ModeTypeMask == ModeSymlink
	if size < 0 || symlink && size != 0 {
		return "", fmt.Errorf("%w: size %d for mode %#o", ErrInvalidContent, size, meta.Mode)
	}
	// chown takes (uid_t)-1 as "leave unchanged": a bare object would not
	// get the owner its checksum names.
	if s.repo.mode == ModeBare && (meta.UID == math.MaxUint32 || meta.GID == math.MaxUint32) {
		return "", fmt.Errorf("%w: owner %d:%d cannot be stored in a bare repository", ErrInvalidContent, meta.UID, meta.GID)
	}
	if s.repo.mode == ModeBareUserOnly && (meta.UID != 0 || meta.GID != 0 || len(meta.Xattrs) > 0 || !symlink && meta.Mode&^(ModeTypeMask|0o775) != 0) {
		return "", fmt.Errorf("%w: bare-user-only stores no owner, xattrs or mode bits beyond 0775 (got uid %d gid %d mode %#o, %d xattrs)",
			ErrInvalidContent, meta.UID, meta.GID, meta.Mode, len(meta.Xattrs))
	}
	// Record what the stored file will show when fsck reads it back;
	// anything else makes the object fail fsck (libostree's tar import has
	// the first two bugs, its SELinux labelling the third).
	if symlink && (s.repo.mode == ModeBare || s.repo.mode == ModeBareUserOnly) {
		// These modes store a symlink as a real one, always 0777.
		meta.Mode = ModeSymlink | 0o777
	}
	if s.repo.mode == ModeBare {
		// libostree reads no xattr with an empty value back from disk, and
		// the others sorted.
		meta.Xattrs = slices.DeleteFunc(slices.Clone(meta.Xattrs), func(x Xattr) bool { return len(x.Value) == 0 })
		SortXattrs(meta.Xattrs)
	}
	sum, err := newContentHash(meta)
	if err != nil {
		return "", err
	}
	key := objectKey{t: s.repo.contentObjectType()}
	var staged bool
	if size <= smallContentSize {
		staged, err = s.writeSmallContent(key, meta, size, content, sum)
	} else {
		staged, err = s.writeLargeContent(key, meta, size, content, sum)
	}
	if err != nil {
		return "", err
	}
	if staged {
		s.stats.ContentWritten++
		s.stats.ContentBytes += size
	} else {
		s.stats.ContentPresent++
	}
	sum.Sum(key.sum[:0])
	return key.checksum(), nil
}

// writeSmallContent reads the content into memory first, so an object
// already present costs no file at all. A new one is written to a
// temporary name and then renamed to its staged one: libostree reuses an
// abandoned staging directory of the current boot and moves whatever it
// holds under staged names into objects/, so a process killed mid-write
// must leave nothing there but whole objects. sum has consumed the header.
func (s *Stage) writeSmallContent(key objectKey, meta FileMeta, size int64, content io.Reader, sum hash.Hash) (bool, error) {
	if s.small == nil {
		s.small = bytes.NewBuffer(make([]byte, 0, smallContentSize))
	}
	s.small.Reset()
	if err := s.copyContent(s.small, content, size); err != nil {
		return false, err
	}
	sum.Write(s.small.Bytes())
	sum.Sum(key.sum[:0])
	if present, err := s.present(key); err != nil || present {
		return false, err
	}
	if err := s.makeSubdir(key); err != nil {
		return false, err
	}
	tmp := s.tempName()
	err := s.writeContentFile(tmp, meta, size, bytes.NewReader(s.small.Bytes()), io.Discard)
	if err == nil {
		err = s.stage(tmp, key)
	}
	if err != nil {
		os.Remove(tmp)
		return false, err
	}
	s.added(key)
	return true, nil
}

// writeLargeContent streams the content into a temporary file while
// hashing it, then stages the file under its name, or drops it when the
// object is already present.
func (s *Stage) writeLargeContent(key objectKey, meta FileMeta, size int64, content io.Reader, sum hash.Hash) (bool, error) {
	tmp := s.tempName()
	if err := s.writeContentFile(tmp, meta, size, content, sum); err != nil {
		os.Remove(tmp)
		return false, err
	}
	sum.Sum(key.sum[:0])
	return s.place(tmp, key)
}

// writeContentFile writes the object for meta to the new file tmp in the
// repository mode's format, feeding the content to sum as well.
func (s *Stage) writeContentFile(tmp string, meta FileMeta, size int64, content io.Reader, sum io.Writer) error {
	symlink := meta.Mode&ModeTypeMask == ModeSymlink
	if symlink && (s.repo.mode == ModeBare || s.repo.mode == ModeBareUserOnly) {
		return s.writeSymlink(tmp, meta)
	}
	f, err := createRaw(tmp)
	if err != nil {
		return err
	}
	defer f.close()
	switch s.repo.mode {
	case ModeArchive:
		h, err := archiveHeader(meta, uint64(size))
		if err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidContent, err)
		}
		if _, err := f.Write(framedHeader(h)); err != nil {
			return err
		}
		// libostree writes no compressed stream at all for a symlink.
		if !symlink {
			if s.zw == nil {
				s.bw = bufio.NewWriterSize(f, copyBufferSize)
				if s.zw, err = flate.NewWriter(s.bw, archiveCompressionLevel); err != nil {
					return err
				}
			} else {
				s.bw.Reset(f)
				s.zw.Reset(s.bw)
			}
			if err := s.copyContent(io.MultiWriter(sum, s.zw), content, size); err != nil {
				return err
			}
			// Errors here are rawFile's, already described.
			if err := s.zw.Close(); err != nil {
				return err
			}
			if err := s.bw.Flush(); err != nil {
				return err
			}
		}
		return s.finishFile(f, 0o644, false)
	case ModeBareUser:
		if symlink {
			if _, err := f.Write([]byte(meta.Symlink + "\x00")); err != nil {
				return err
			}
		} else if err := s.copyContent(io.MultiWriter(sum, f), content, size); err != nil {
			return err
		}
		v, err := bareUserMeta(meta)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidContent, err)
		}
		if err := unix.Fsetxattr(f.fd, bareUserMetaXattr, v, 0); err != nil {
			return writeError("set "+bareUserMetaXattr+" on", tmp, err)
		}
		// The file stays readable by its owner whatever the mode records;
		// libostree stores symlinks 0644 and masks setuid and friends.
		perm := meta.Mode&0o775 | 0o400
		if symlink {
			perm = 0o644
		}
		return s.finishFile(f, perm, true)
	case ModeBareUserOnly:
		if err := s.copyContent(io.MultiWriter(sum, f), content, size); err != nil {
			return err
		}
		return s.finishFile(f, meta.Mode&ModePermsMask, true)
	case ModeBare:
		if err := s.copyContent(io.MultiWriter(sum, f), content, size); err != nil {
			return err
		}
		// chown before the chmod in finishFile (chown clears setuid) and
		// before the xattrs (it clears security.capability).
		if err := unix.Fchown(f.fd, int(meta.UID), int(meta.GID)); err != nil {
			return writeError("chown (bare repositories need root)", tmp, err)
		}
		for _, x := range meta.Xattrs {
			if err := unix.Fsetxattr(f.fd, x.Name, x.Value, 0); err != nil {
				return writeError("set xattr "+x.Name+" on", tmp, err)
			}
		}
		return s.finishFile(f, meta.Mode&ModePermsMask, true)
	}
	return fmt.Errorf("write content: %w: %s", ErrUnsupportedMode, s.repo.mode)
}

// writeSymlink stores a symlink as a real one (bare and bare-user-only).
func (s *Stage) writeSymlink(tmp string, meta FileMeta) error {
	if err := os.Symlink(meta.Symlink, tmp); err != nil {
		return writeError("create symlink", tmp, err)
	}
	if s.repo.mode != ModeBare {
		return nil
	}
	if err := os.Lchown(tmp, int(meta.UID), int(meta.GID)); err != nil {
		return writeError("chown (bare repositories need root)", tmp, err)
	}
	for _, x := range meta.Xattrs {
		if err := unix.Lsetxattr(tmp, x.Name, x.Value, 0); err != nil {
			return writeError("set xattr "+x.Name+" on", tmp, err)
		}
	}
	return nil
}

// finishFile sets the permissions (and for the bare modes libostree's
// mtime of 0, which checkouts hardlinking the object show) and closes f.
func (s *Stage) finishFile(f *rawFile, perm uint32, zeroMtime bool) error {
	if err := unix.Fchmod(f.fd, perm); err != nil {
		return writeError("chmod", f.name, err)
	}
	if zeroMtime {
		if err := unix.Futimes(f.fd, []unix.Timeval{{}, {}}); err != nil {
			return writeError("set mtime of", f.name, err)
		}
	}
	return f.close()
}

// rawFile is a new file written through its descriptor alone. os.File
// costs five more system calls per file (poller registration, blocking
// mode), which show when staging thousands of small objects.
type rawFile struct {
	fd   int
	name string
}

func createRaw(name string) (*rawFile, error) {
	fd, err := unix.Open(name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, writeError("create", name, err)
	}
	return &rawFile{fd: fd, name: name}, nil
}

func (f *rawFile) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := unix.Write(f.fd, p[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, writeError("write", f.name, err)
		}
		n += m
	}
	return n, nil
}

// close closes the descriptor once; later calls do nothing.
func (f *rawFile) close() error {
	if f.fd < 0 {
		return nil
	}
	err := unix.Close(f.fd)
	f.fd = -1
	if err != nil {
		return writeError("close", f.name, err)
	}
	return nil
}

// copyContent copies exactly size bytes from r to w and checks r has no
// more: r must then report io.EOF, and any other error it reports there
// (a ContentObject's failed checksum) is returned.
func (s *Stage) copyContent(w io.Writer, r io.Reader, size int64) error {
	if s.buf == nil {
		s.buf = make([]byte, copyBufferSize)
	}
	if size > 0 && r == nil {
		return fmt.Errorf("%w: no content for %d bytes", ErrInvalidContent, size)
	}
	n, err := io.CopyBuffer(w, io.LimitReader(r, size), s.buf)
	if err != nil {
		return fmt.Errorf("write content: %w", err)
	}
	if n < size {
		return fmt.Errorf("%w: content ended after %d of %d bytes: %w", ErrInvalidContent, n, size, io.ErrUnexpectedEOF)
	}
	if r != nil {
		extra, err := io.ReadFull(r, s.buf[:1])
		if extra > 0 {
			return fmt.Errorf("%w: content longer than %d bytes", ErrInvalidContent, size)
		}
		if err != io.EOF {
			return fmt.Errorf("write content: %w", err)
		}
	}
	return nil
}

// tempName returns a fresh name in the staging directory. The directory
// is ours alone, so a counter is unique.
func (s *Stage) tempName() string {
	s.tmpSeq++
	return filepath.Join(s.dir, ".tmp-"+strconv.Itoa(s.tmpSeq))
}

// stagedPath is where an object waits in the staging directory: the
// objects/ layout, as libostree stages.
func (s *Stage) stagedPath(k objectKey) string {
	c := k.checksum()
	return filepath.Join(s.dir, c[:2], c[2:]+"."+string(k.t))
}

// place moves the finished temporary file tmp to its staged name, unless
// the object is already in the repository or staged, in which case tmp is
// removed. It reports whether the object was staged.
func (s *Stage) place(tmp string, k objectKey) (bool, error) {
	present, err := s.present(k)
	if err == nil && !present {
		err = s.makeSubdir(k)
	}
	if err == nil && !present {
		err = s.stage(tmp, k)
	}
	if err != nil || present {
		os.Remove(tmp)
		return false, err
	}
	s.added(k)
	return true, nil
}

// stage renames the finished temporary file tmp to k's staged name.
func (s *Stage) stage(tmp string, k objectKey) error {
	// unix.Rename, not os.Rename, which first stats the target.
	if err := unix.Rename(tmp, s.stagedPath(k)); err != nil {
		return writeError("stage", tmp, err)
	}
	return nil
}

// makeSubdir makes the staging subdirectory an object goes in.
func (s *Stage) makeSubdir(k objectKey) error {
	c := k.checksum()[:2]
	if s.subdirs[c] {
		return nil
	}
	if err := os.Mkdir(filepath.Join(s.dir, c), 0o775); err != nil && !errors.Is(err, fs.ErrExist) {
		return writeError("create directory in", s.dir, err)
	}
	s.subdirs[c] = true
	return nil
}

// added records a newly staged object.
func (s *Stage) added(k objectKey) {
	s.known[k] = struct{}{}
	s.pending = append(s.pending, k)
}

// present reports whether the object is staged or in the repository.
func (s *Stage) present(k objectKey) (bool, error) {
	if _, ok := s.known[k]; ok {
		return true, nil
	}
	ok, err := s.repo.HasObject(k.checksum(), k.t)
	if ok {
		s.known[k] = struct{}{}
	}
	return ok, err
}

// writeMetadata stages a dirtree or dirmeta object given its serialized
// bytes and returns its checksum.
func (s *Stage) writeMetadata(ctx context.Context, t ObjectType, data []byte) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if len(data) > maxMetadataObjectSize {
		// Readers (ours and libostree's) refuse larger metadata objects.
		return "", fmt.Errorf("%w: %s object of %d bytes, limit %d", ErrTooLarge, t, len(data), maxMetadataObjectSize)
	}
	k := objectKey{sum: sha256.Sum256(data), t: t}
	if present, err := s.present(k); err != nil || present {
		if present {
			s.stats.MetadataPresent++
		}
		return k.checksum(), err
	}
	tmp := s.tempName()
	f, err := createRaw(tmp)
	if err != nil {
		return "", err
	}
	if _, err = f.Write(data); err == nil {
		err = s.finishFile(f, 0o644, false)
	}
	if err != nil {
		f.close()
		os.Remove(tmp)
		return "", err
	}
	if _, err := s.place(tmp, k); err != nil {
		return "", err
	}
	s.stats.MetadataWritten++
	return k.checksum(), nil
}

// Commit moves every staged object into objects/: one syncfs makes their
// data durable, each is renamed into place (never over an object that
// appeared meanwhile: the staged copy is dropped), and the object
// directories are fsynced. The Stage stays open for more writes.
func (s *Stage) Commit(ctx context.Context) error {
	if len(s.pending) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := syncfs(s.dir); err != nil {
		return err
	}
	objects := filepath.Join(s.repo.path, "objects")
	touched := map[string]bool{}
	newDirs := false
	for _, k := range s.pending {
		c := k.checksum()
		dir := filepath.Join(objects, c[:2])
		if _, seen := touched[dir]; !seen {
			err := os.Mkdir(dir, 0o755)
			if err != nil && !errors.Is(err, fs.ErrExist) {
				return writeError("create directory", dir, err)
			}
			newDirs = newDirs || err == nil
			touched[dir] = true
		}
		src, dst := s.stagedPath(k), filepath.Join(dir, c[2:]+"."+string(k.t))
		if err := renameNoReplace(src, dst); errors.Is(err, fs.ErrExist) {
			os.Remove(src)
		} else if err != nil {
			return writeError("move into place", dst, err)
		}
	}
	s.pending = s.pending[:0]
	for dir := range touched {
		if err := syncDir(dir); err != nil {
			return err
		}
	}
	if newDirs {
		return syncDir(objects)
	}
	return nil
}

// renameNoReplace renames src to dst unless dst exists (an error matching
// fs.ErrExist). Filesystems without RENAME_NOREPLACE fall back to a hard
// link and unlink, which refuses an existing dst just the same.
func renameNoReplace(src, dst string) error {
	err := unix.Renameat2(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE)
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) {
		return err
	}
	if err := os.Link(src, dst); err != nil {
		return err
	}
	return os.Remove(src)
}

// syncfs flushes the filesystem holding path.
func syncfs(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return writeError("open", path, err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return writeError("syncfs", path, err)
	}
	return nil
}

// Close discards whatever is still staged (everything, if Commit was not
// called), removes the staging directory and releases the locks.
func (s *Stage) Close() error {
	errs := []error{os.RemoveAll(s.dir), os.Remove(s.dir + "-lock"), s.unlockDir(), s.unlockRepo()}
	s.pending = nil
	return errors.Join(errs...)
}
