package updatecache

import (
	"github.com/osimage/updatecache/internal/ostree"
)

// DefaultRepoPath is where image-based systems keep their OSTree repository.
const DefaultRepoPath = "/ostree/repo"

// Repo is an OSTree repository holding deployed images.
type Repo struct {
	ostree *ostree.Repo
}

// OpenRepo opens the OSTree repository at path. It reads only; whether the
// repository can be written is found out when a write is needed.
func OpenRepo(path string) (*Repo, error) {
	r, err := ostree.Open(path)
	if err != nil {
		return nil, err
	}
	return &Repo{ostree: r}, nil
}

// Path returns the repository's directory.
func (r *Repo) Path() string { return r.ostree.Path() }
