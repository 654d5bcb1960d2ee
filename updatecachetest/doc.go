// Package updatecachetest is a test kit for programs that check for and
// fetch OS updates shipped as container images: it builds small synthetic
// OS images, runs registries on loopback that count every request and can
// be made to fail in precise ways, and pushes images to any registry.
//
// # Images
//
// NewImage builds an image from an ImageSpec (version label, creation time,
// platform, layers of files, directories and symlinks; gzip, zstd or no
// compression; OCI or Docker schema 2 manifests). The bytes are
// deterministic, so the same spec always has the same digests. NewIndex
// combines images into a multi-platform index.
//
// # Encapsulated OSTree images
//
// Real OS images (Fedora CoreOS, fedora-bootc, CentOS and RHEL bootc) are
// OSTree commits that ostree-ext exported as OCI images. WriteCommit
// writes an OSTree commit into a repository without root (archive or
// bare-user mode) and SampleCommit describes a small one with what real
// trees hold (a kernel, SELinux labels, file capabilities, setuid
// programs, hard links, long names, usr/etc); Encapsulate turns a commit
// into the image ostree-ext's encapsulation makes of it: a commit layer,
// chunk layers, derived layers on top, ostree-ext's labels, in any of the
// xattr encodings published images use.
//
// # Registries
//
// NewRegistry (for tests) and StartRegistry (elsewhere, with Close) run an
// in-memory registry on 127.0.0.1 over plain HTTP. NewProxy and StartProxy
// put the same counting and fault injection in front of any other registry,
// such as the real docker-registry server, so one fault table can run
// against both. Counts reports requests by kind (ping, manifest, blob,
// upload, token) and method, per path and per blob digest, which lets a
// test assert, for example, that an update check made one manifest HEAD
// and no GET. AddFault makes matching requests fail: an HTTP status (with
// Retry-After or a registry error body), a delay, a truncated, corrupted,
// padded or replaced body, or a lying Docker-Content-Digest. Close (or
// Stop) makes the registry go away.
//
// NewTLSProxy serves the proxy over HTTPS with a self-signed Certificate
// (NewCertificate; Trust writes it where containers/image's certs.d looks),
// for tests of TLS verification and redirects. TokenIssuer is a bearer
// token server as Docker Hub, quay.io and ghcr.io have: real registries
// configured for token authentication accept its tokens; NewServer serves
// it, or any handler, with the same counting and faults.
//
// Push uploads images and indexes to any registry speaking the
// distribution API (over plain HTTP, or HTTPS; with basic auth or a
// bearer token); DeleteManifest removes one again.
// SystemContext returns containers/image settings that reach these
// registries without reading the machine's registry configuration or
// credentials.
//
// # Deployed images
//
// Deploy records an image as deployed in an OSTree repository (made with
// NewRepo or CreateRepo) as ostree-ext leaves it after a pull: a merge
// commit under the image's ref carrying the manifest digest, manifest and
// config, over an empty tree. That is all an update check reads, so a test
// can start from a "deployed" system without importing layers.
package updatecachetest
