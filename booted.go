package updatecache

import (
	"fmt"

	"github.com/osimage/updatecache/internal/ostree"
)

// originImageKey is where rpm-ostree and bootc record, in a deployment's
// origin, the container image it follows.
const originImageKey = "container-image-reference"

// BootedImage returns the image reference the booted OSTree deployment
// follows: the container-image-reference of its origin (as rpm-ostree and
// bootc write it, e.g. ostree-unverified-registry:quay.io/fedora/fedora-coreos:stable),
// which Prepare and the pulls accept. root is where the running system's
// files are ("/"); the deployment is found as libostree finds it, from the
// ostree= kernel argument. It fails with ErrNotBooted on a system not
// booted into an OSTree deployment, or one whose deployment follows no
// container image.
func BootedImage(root string) (string, error) {
	d, err := ostree.BootedDeployment(root)
	if err != nil {
		return "", err
	}
	image := d.Origin[originImageKey]
	if image == "" {
		return "", fmt.Errorf("%w: deployment %s.%d of %s follows no container image (its origin has no %s)",
			ErrNotBooted, d.Checksum, d.Serial, d.OSName, originImageKey)
	}
	return image, nil
}
