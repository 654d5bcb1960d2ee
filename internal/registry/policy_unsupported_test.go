//go:build !containers_image_openpgp

package registry_test

import (
	"errors"
	"testing"
	"time"

	"github.com/osimage/updatecache/internal/registry"
	"github.com/osimage/updatecache/updatecachetest"
)

// TestPolicyUnsupported: without the containers_image_openpgp tag,
// CheckPolicy says so with its sentinel and decides nothing.
func TestPolicyUnsupported(t *testing.T) {
	e := fakeEnv(t)
	e.push(t, "policy/os", "stable", osImage(t, "1.0", amd64, updatecachetest.OCI, updatecachetest.Gzip))
	ctx := ctxFor(t, 30*time.Second)
	src, err := e.client(registry.Options{}).Open(ctx, e.ref(t, "policy/os", "stable"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	img, err := src.Image(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v, err := src.CheckPolicy(ctx, img, "")
	if !errors.Is(err, registry.ErrPolicyUnsupported) || v.Allowed {
		t.Errorf("got %+v, %v; want ErrPolicyUnsupported", v, err)
	}
	ch, err := e.client(registry.Options{}).Check(ctx, e.ref(t, "policy/os", "stable"))
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	e.reg.Reset()
	v, err = ch.CheckPolicy(ctx, img, "")
	if !errors.Is(err, registry.ErrPolicyUnsupported) || v.Allowed || e.reg.Counts().Total != 0 {
		t.Errorf("Check: got %+v, %v, %v; want ErrPolicyUnsupported and no request", v, err, e.reg.Counts())
	}
}
