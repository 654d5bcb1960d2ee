package registry_test

import (
	"context"
	"io/fs"
	"net/url"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/types"

	"github.com/osimage/updatecache/internal/registry"
	"github.com/osimage/updatecache/internal/testtool"
	"github.com/osimage/updatecache/updatecachetest"
)

// env is a registry under test: the in-process one, or the real
// docker-registry behind a counting, fault-injecting proxy. Either way reg
// counts requests and takes faults.
type env struct {
	name string
	reg  *updatecachetest.Registry
	sys  *types.SystemContext
}

func newEnv(t *testing.T, name string, reg *updatecachetest.Registry) *env {
	t.Helper()
	sys, err := updatecachetest.SystemContext(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &env{name: name, reg: reg, sys: sys}
}

func fakeEnv(t *testing.T) *env {
	return newEnv(t, "fake", updatecachetest.NewRegistry(t))
}

func realEnv(t *testing.T) *env {
	host, _ := testtool.StartRegistry(t)
	return newEnv(t, "real", updatecachetest.NewProxy(t, &url.URL{Scheme: "http", Host: host}))
}

// forEachEnv runs fn against the in-process registry and the real one.
func forEachEnv(t *testing.T, fn func(t *testing.T, e *env)) {
	for _, mk := range []func(*testing.T) *env{fakeEnv, realEnv} {
		e := mk(t)
		t.Run(e.name, func(t *testing.T) { fn(t, e) })
	}
}

func (e *env) client(opts registry.Options) *registry.Client {
	if opts.SystemContext == nil {
		opts.SystemContext = e.sys
	}
	return registry.New(opts)
}

func (e *env) ref(t *testing.T, repo, tagOrDigest string) types.ImageReference {
	t.Helper()
	return parseRef(t, strings.TrimPrefix(e.reg.Ref(repo, tagOrDigest), "docker:"))
}

// parseRef parses a docker transport reference ("//host/repo:tag").
func parseRef(t testing.TB, s string) types.ImageReference {
	t.Helper()
	ref, err := docker.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// push pushes a to repo:tag and forgets the push's requests.
func (e *env) push(t *testing.T, repo, tag string, a updatecachetest.Artifact) {
	t.Helper()
	if _, err := e.reg.Push(context.Background(), repo, tag, a); err != nil {
		t.Fatal(err)
	}
	e.reg.Reset()
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// osImage builds a small OS image for a platform.
func osImage(t testing.TB, version string, p imgspecv1.Platform, format updatecachetest.Format, comp updatecachetest.Compression) *updatecachetest.Image {
	t.Helper()
	img, err := updatecachetest.NewImage(updatecachetest.ImageSpec{
		Version:      version,
		Created:      time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
		OS:           p.OS,
		Architecture: p.Architecture,
		Variant:      p.Variant,
		Format:       format,
		Compression:  comp,
		Layers: []updatecachetest.Layer{
			{Files: []updatecachetest.File{
				{Path: "usr", Mode: fs.ModeDir | 0o755},
				{Path: "usr/lib/os-release", Content: []byte("VERSION_ID=" + version + "\n")},
			}},
			{Files: []updatecachetest.File{
				{Path: "usr/bin/tool", Content: []byte("#!/bin/sh\necho " + p.Architecture + "\n"), Mode: 0o755},
			}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

var (
	amd64 = imgspecv1.Platform{OS: "linux", Architecture: "amd64"}
	arm64 = imgspecv1.Platform{OS: "linux", Architecture: "arm64"}
	armv7 = imgspecv1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}
	armv6 = imgspecv1.Platform{OS: "linux", Architecture: "arm", Variant: "v6"}
)

func multiArch(t testing.TB, version string, format updatecachetest.Format) *updatecachetest.Index {
	t.Helper()
	var imgs []*updatecachetest.Image
	for _, p := range []imgspecv1.Platform{amd64, arm64, armv6, armv7} {
		imgs = append(imgs, osImage(t, version, p, format, updatecachetest.Gzip))
	}
	idx, err := updatecachetest.NewIndex(imgs...)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

// digestOf is what an update check asks first: what ref names now.
func digestOf(ctx context.Context, c *registry.Client, ref types.ImageReference) (digest.Digest, error) {
	ch, err := c.Check(ctx, ref)
	if err != nil {
		return "", err
	}
	defer ch.Close()
	return ch.TopDigest(), nil
}
