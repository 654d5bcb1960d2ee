package selinux

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The places libostree 2022.7's OstreeSePolicy looks for the SELinux
// configuration of a tree: etc/selinux when it exists, else usr/etc/selinux.
const (
	etcSelinux    = "etc/selinux"
	usrEtcSelinux = "usr/etc/selinux"
)

// Paths inside a policy type's directory (libselinux's file_path_suffixes).
const (
	fileContextsPath = "contexts/files/file_contexts"
	binaryPolicyDir  = "policy"
	binaryPolicyName = "policy"
)

// LoadPolicy finds and loads the SELinux policy a tree names, exactly as
// libostree 2022.7's OstreeSePolicy does for a root directory (the policy
// ostree-ext labels a merge commit with):
//
//   - the configuration directory is etc/selinux if that exists, else
//     usr/etc/selinux; no config file in it means no policy;
//   - lines of config starting "SELINUXTYPE=" name the policy type (the
//     rest, trimmed; the last such line counts), lines starting
//     "SELINUX=" followed by "enforcing" or "permissive" (any case, as a
//     prefix) enable it; nothing disables it again;
//   - when enabled, the type's file contexts are loaded, "/" must get a
//     label, and the type's policy/policy.N with the highest N (a regular
//     file) is checksummed; each missing piece is an error, as in
//     libostree.
//
// It returns nil, nil when the tree has no enabled policy. fsys should
// follow symbolic links as a checked-out tree would.
func LoadPolicy(fsys fs.FS) (*Policy, error) {
	dir := etcSelinux
	if _, err := fs.Stat(fsys, dir); err != nil {
		dir = usrEtcSelinux
	}
	configPath := dir + "/config"
	if _, err := fs.Stat(fsys, configPath); err != nil {
		return nil, nil
	}
	config, err := readPolicyFile(fsys, configPath, ErrBadConfig)
	if errors.Is(err, fs.ErrNotExist) { // gone since the Stat
		return nil, fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	if err != nil {
		return nil, err
	}
	policyType, enabled, err := parseConfig(config)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadConfig, configPath, err)
	}
	if !enabled {
		return nil, nil
	}
	if policyType == nil {
		return nil, fmt.Errorf("%w: %s enables SELinux but sets no SELINUXTYPE", ErrBadConfig, configPath)
	}
	root := dir + "/" + *policyType
	if *policyType == "" || !fs.ValidPath(root) {
		return nil, fmt.Errorf("%w: %s: SELINUXTYPE %q is no directory name", ErrBadConfig, configPath, *policyType)
	}
	p, err := LoadFileContexts(fsys, path.Join(root, fileContextsPath))
	if err != nil {
		return nil, err
	}
	// libostree looks "/" up (mode 0755, no file type) to check the policy.
	if _, ok, _ := p.Lookup("/", 0o755); !ok {
		return nil, fmt.Errorf("%w: %s gives / no label", ErrInvalidPolicy, root)
	}
	if p.checksum, err = binaryPolicyChecksum(fsys, path.Join(root, binaryPolicyDir)); err != nil {
		return nil, err
	}
	p.name = *policyType
	return p, nil
}

// parseConfig reads an selinux/config as libostree does: line by line,
// each line required to be valid UTF-8 without NUL (GLib's
// g_data_input_stream_read_line_utf8).
func parseConfig(config []byte) (policyType *string, enabled bool, err error) {
	for lineno := 1; len(config) > 0; lineno++ {
		line := config
		if i := bytes.IndexByte(config, '\n'); i >= 0 {
			line, config = config[:i], config[i+1:]
		} else {
			config = nil
		}
		if !utf8.Valid(line) || bytes.IndexByte(line, 0) >= 0 {
			return nil, false, fmt.Errorf("line %d is not valid UTF-8", lineno)
		}
		s := string(line)
		if value, ok := strings.CutPrefix(s, "SELINUXTYPE="); ok {
			value = strings.TrimFunc(value, isCSpaceRune) // g_strstrip
			policyType = &value
		} else if value, ok := strings.CutPrefix(s, "SELINUX="); ok {
			for _, state := range []string{"enforcing", "permissive"} {
				if len(value) >= len(state) && strings.EqualFold(value[:len(state)], state) {
					enabled = true
				}
			}
		}
	}
	return policyType, enabled, nil
}

// binaryPolicyChecksum is libostree's get_policy_checksum: the SHA-256 of
// the regular file policy.N in dir with the highest N.
func binaryPolicyChecksum(fsys fs.FS, dir string) (string, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return "", fmt.Errorf("%w: binary policy directory: %w", ErrPolicyNotFound, err)
	}
	best, bestVersion := "", 0
	for _, e := range entries {
		digits, ok := strings.CutPrefix(e.Name(), binaryPolicyName+".")
		if !ok || !e.Type().IsRegular() || !allDigits(digits) {
			continue
		}
		version, err := strconv.ParseInt(digits, 10, 32)
		if err != nil || version == 0 {
			// libostree asserts a positive int here.
			return "", fmt.Errorf("%w: binary policy %s/%s has no usable version", ErrInvalidPolicy, dir, e.Name())
		}
		if int(version) > bestVersion {
			best, bestVersion = e.Name(), int(version)
		}
	}
	if best == "" {
		return "", fmt.Errorf("%w: no binary policy file %s/%s.N", ErrPolicyNotFound, dir, binaryPolicyName)
	}
	f, err := fsys.Open(dir + "/" + best)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrPolicyNotFound, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%w: reading %s/%s: %w", ErrInvalidPolicy, dir, best, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
