package ostree

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Mode is a repository's core.mode: how content objects are stored.
type Mode string

// The modes libostree 2022.7 knows. "archive" is accepted on read as an
// alias of ModeArchive, as libostree does.
const (
	ModeBare            Mode = "bare"
	ModeBareUser        Mode = "bare-user"
	ModeBareUserOnly    Mode = "bare-user-only"
	ModeArchive         Mode = "archive-z2"
	ModeBareSplitXattrs Mode = "bare-split-xattrs"
)

// parseMode maps a config value to a Mode; "" (no mode key) is bare.
func parseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "":
		return ModeBare, nil
	case "archive":
		return ModeArchive, nil
	case ModeBare, ModeBareUser, ModeBareUserOnly, ModeArchive, ModeBareSplitXattrs:
		return Mode(s), nil
	}
	return "", fmt.Errorf("%w: %q", ErrUnsupportedMode, s)
}

// defaultLockTimeout is libostree's default core.lock-timeout-secs.
const defaultLockTimeout = 30 * time.Second

// Repo is an opened OSTree repository. It holds no open files: every
// operation opens what it needs, so a Repo is safe for concurrent use.
type Repo struct {
	path        string
	mode        Mode
	lockTimeout time.Duration
	tmpExpiry   time.Duration // core.tmp-expiry-secs
}

// Open opens the repository at path. It refuses a directory without
// objects/ (ErrNotRepository), a repo_version other than 1
// (ErrUnsupportedRepoVersion), an unknown mode (ErrUnsupportedMode) and an
// unreadable or malformed config (ErrCorrupt).
func Open(path string) (*Repo, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	st, err := os.Stat(filepath.Join(abs, "objects"))
	if err != nil || !st.IsDir() {
		if err == nil {
			err = errors.New("objects is not a directory")
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrNotRepository, abs, err)
	}
	cfgPath := filepath.Join(abs, "config")
	data, err := readFileCapped(cfgPath, maxConfigSize, 0)
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			return nil, err
		}
		return nil, corrupt(cfgPath, err)
	}
	core, err := parseKeyFileGroup(data, "core")
	if err != nil {
		return nil, corrupt(cfgPath, err)
	}
	r := &Repo{path: abs, lockTimeout: defaultLockTimeout, tmpExpiry: defaultTmpExpiry}
	if v, ok := core["repo_version"]; !ok {
		return nil, fmt.Errorf("%w: %s has no core.repo_version", ErrUnsupportedRepoVersion, cfgPath)
	} else if v != "1" {
		return nil, fmt.Errorf("%w: %q in %s", ErrUnsupportedRepoVersion, v, cfgPath)
	}
	if r.mode, err = parseMode(core["mode"]); err != nil {
		return nil, fmt.Errorf("%s: %w", cfgPath, err)
	}
	if v, ok := core["lock-timeout-secs"]; ok {
		secs, err := strconv.ParseInt(v, 10, 32)
		if err != nil || secs < -1 {
			return nil, corrupt(cfgPath, fmt.Errorf("invalid core.lock-timeout-secs %q", v))
		}
		// -1 is libostree's "block indefinitely".
		r.lockTimeout = time.Duration(secs) * time.Second
		if secs < 0 {
			r.lockTimeout = -1
		}
	}
	if v, ok := core["tmp-expiry-secs"]; ok {
		secs, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, corrupt(cfgPath, fmt.Errorf("invalid core.tmp-expiry-secs %q", v))
		}
		r.tmpExpiry = time.Duration(secs) * time.Second
	}
	return r, nil
}

// parseKeyFileGroup returns one group of a GKeyFile-format file (a
// repository's config, a deployment's origin), following GKeyFile's rules:
// leading whitespace of a line is ignored, '#' starts a comment line, a key loses trailing whitespace and its value
// leading whitespace (trailing whitespace stays part of the value, which
// is why "repo_version=1 " is refused, as libostree does), the last of
// duplicate keys wins. A line that is none of group, key=value, comment or
// blank is an error, as in GKeyFile.
func parseKeyFileGroup(data []byte, want string) (map[string]string, error) {
	values := map[string]string{}
	group := ""
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimLeft(strings.TrimSuffix(line, "\r"), " \t")
		switch {
		case line == "" || line[0] == '#':
		case line[0] == '[':
			end := strings.IndexByte(line, ']')
			if end < 0 {
				return nil, fmt.Errorf("line %d: unterminated group name", i+1)
			}
			group = line[1:end]
		default:
			k, v, ok := strings.Cut(line, "=")
			k = strings.TrimRight(k, " \t")
			if !ok || k == "" {
				return nil, fmt.Errorf("line %d: %q is not a key-value pair, group, or comment", i+1, line)
			}
			if group == "" {
				return nil, fmt.Errorf("line %d: key %q outside any group", i+1, k)
			}
			if group == want {
				values[k] = strings.TrimLeft(v, " \t")
			}
		}
	}
	return values, nil
}

// repoDirs are the directories `ostree init` makes, in creation order;
// objects comes last because its existence is what marks a repository as
// initialised, so an interrupted Create leaves no half-made repository.
var repoDirs = []string{"tmp", "tmp/cache", "extensions", "state", "refs", "refs/heads", "refs/mirrors", "refs/remotes", "objects"}

// Create initialises a repository at path like `ostree init --mode=mode`:
// the same directories and a config holding repo_version and mode. It
// refuses a path that already holds a repository (ErrRepositoryExists).
func Create(path string, mode Mode) (*Repo, error) {
	m, err := parseMode(string(mode))
	if err != nil || mode == "" {
		return nil, fmt.Errorf("create %s: %w: %q", path, ErrUnsupportedMode, mode)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := os.Lstat(filepath.Join(abs, "objects")); err == nil {
		return nil, fmt.Errorf("%w: %s", ErrRepositoryExists, abs)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, writeError("create", abs, err)
	}
	if err := mkdirAll(abs); err != nil {
		return nil, err
	}
	for _, d := range repoDirs[:len(repoDirs)-1] {
		if err := mkdirAll(filepath.Join(abs, d)); err != nil {
			return nil, err
		}
	}
	config := "[core]\nrepo_version=1\nmode=" + string(m) + "\n"
	if err := writeFileAtomic(filepath.Join(abs, "tmp"), abs, "config", []byte(config), 0o644); err != nil {
		return nil, err
	}
	if err := mkdirAll(filepath.Join(abs, "objects")); err != nil {
		return nil, err
	}
	if err := syncDir(abs); err != nil {
		return nil, err
	}
	return &Repo{path: abs, mode: m, lockTimeout: defaultLockTimeout, tmpExpiry: defaultTmpExpiry}, nil
}

// Path returns the repository's absolute path.
func (r *Repo) Path() string { return r.path }

// Mode returns the repository's mode ("archive" normalised to ModeArchive).
func (r *Repo) Mode() Mode { return r.mode }

// LockTimeout returns core.lock-timeout-secs (default 30 s). A negative
// value means libostree's -1: wait until the context is done.
func (r *Repo) LockTimeout() time.Duration { return r.lockTimeout }

// tmpDir is the repository's tmp/: temporary files go there, on the same
// filesystem as objects/ and refs/, so renames out of it are atomic.
func (r *Repo) tmpDir() string { return filepath.Join(r.path, "tmp") }
