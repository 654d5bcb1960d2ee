//go:build containers_image_openpgp

package registry_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/osimage/updatecache/internal/registry"
	"github.com/osimage/updatecache/internal/testtool"
	"github.com/osimage/updatecache/updatecachetest"
)

// writeFile writes content to name in dir and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// policyFile writes a policy.json whose default is def (JSON requirements)
// and whose docker scopes are scopes (scope -> JSON requirements).
func policyFile(t *testing.T, def string, scopes map[string]string) string {
	t.Helper()
	var docker []string
	for scope, reqs := range scopes {
		docker = append(docker, fmt.Sprintf("%q: %s", scope, reqs))
	}
	return writeFile(t, t.TempDir(), "policy.json",
		fmt.Sprintf(`{"default": %s, "transports": {"docker": {%s}}}`, def, strings.Join(docker, ", ")))
}

// lookaside points the SystemContext's registries.d at a lookaside
// directory for every registry, and enables sigstore attachments, so that
// neither the machine's signature store nor its configuration is read.
func lookaside(t *testing.T, e *env) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, e.sys.RegistriesDirPath, "default.yaml", fmt.Sprintf(
		"default-docker:\n  lookaside: file://%s\n  lookaside-staging: file://%s\n  use-sigstore-attachments: true\n", dir, dir))
	return dir
}

// goKey writes an armored OpenPGP public key made in-process.
func goKey(t *testing.T) string {
	t.Helper()
	ent, err := openpgp.NewEntity("updatecache test", "", "test@example.invalid", nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ent.Serialize(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return writeFile(t, t.TempDir(), "key.asc", buf.String())
}

func signedBy(keyPath string) string {
	return fmt.Sprintf(`[{"type": "signedBy", "keyType": "GPGKeys", "keyPath": %q}]`, keyPath)
}

func sigstoreSigned(keyPath string) string {
	return fmt.Sprintf(`[{"type": "sigstoreSigned", "keyPath": %q, "signedIdentity": {"type": "matchRepoDigestOrExact"}}]`, keyPath)
}

const (
	accept = `[{"type": "insecureAcceptAnything"}]`
	reject = `[{"type": "reject"}]`
)

// openImage opens repo:stable and reads its image, then forgets the requests.
func openImage(t *testing.T, e *env, c *registry.Client, repo string) (*registry.Source, *registry.Image) {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	src, err := c.Open(ctx, e.ref(t, repo, "stable"), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	img, err := src.Image(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.reg.Reset()
	return src, img
}

// TestCheckPolicy: a Check's verdict is containers/image's, through a
// source of its own pinned to the checked digest.
func TestCheckPolicy(t *testing.T) {
	e := fakeEnv(t)
	lookaside(t, e)
	e.push(t, "policy/check", "stable", osImage(t, "1.0", amd64, updatecachetest.OCI, updatecachetest.Gzip))
	ctx := ctxFor(t, 30*time.Second)
	ch, err := e.client(registry.Options{}).Check(ctx, e.ref(t, "policy/check", "stable"))
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	img, err := ch.Image(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		policy string
		allow  bool
	}{{accept, true}, {reject, false}} {
		e.reg.Reset()
		v, err := ch.CheckPolicy(ctx, img, policyFile(t, tc.policy, nil))
		if err != nil || v.Allowed != tc.allow {
			t.Errorf("%s: %+v, %v; want allowed %v", tc.policy, v, err, tc.allow)
		}
		if n := e.reg.Counts(); n.ManifestGET != 1 || n.ManifestHEAD != 0 {
			t.Errorf("%s: want the source opened by digest (1 manifest GET); %v", tc.policy, n)
		}
	}
}

// TestPolicy evaluates policies on unsigned images, a single image and an
// index's instance.
func TestPolicy(t *testing.T) {
	e := fakeEnv(t)
	lookaside(t, e)
	e.push(t, "policy/single", "stable", osImage(t, "1.0", amd64, updatecachetest.OCI, updatecachetest.Gzip))
	e.push(t, "policy/multi", "stable", multiArch(t, "1.0", updatecachetest.OCI))
	host := e.reg.Host()
	key := goKey(t)
	cases := []struct {
		name       string
		policy     string
		reason     string // "" for allowed
		signatures bool   // the policy reads signatures
	}{
		{"insecureAcceptAnything", policyFile(t, accept, nil), "", false},
		{"reject", policyFile(t, reject, nil), "is rejected by policy", false},
		{"signedBy without signatures", policyFile(t, signedBy(key), nil), "A signature was required, but no signature exists", true},
		{"sigstoreSigned without signatures", policyFile(t, sigstoreSigned(key), nil), "A signature was required, but no signature exists", true},
		{"repository scope accepts", policyFile(t, reject, map[string]string{host + "/policy": accept}), "", false},
		{"other scope accepts", policyFile(t, reject, map[string]string{host + "/elsewhere": accept}), "is rejected by policy", false},
		{"tag scope", policyFile(t, reject, map[string]string{host + "/policy/single:stable": accept, host + "/policy/multi:stable": accept}), "", false},
	}
	c := e.client(registry.Options{Platform: &arm64})
	for _, repo := range []string{"policy/single", "policy/multi"} {
		src, img := openImage(t, e, c, repo)
		for _, tc := range cases {
			t.Run(repo+"/"+tc.name, func(t *testing.T) {
				e.reg.Reset()
				v, err := src.CheckPolicy(ctxFor(t, 30*time.Second), img, tc.policy)
				if err != nil {
					t.Fatal(err)
				}
				if v.Allowed != (tc.reason == "") || !strings.Contains(v.Reason, tc.reason) {
					t.Errorf("got %+v, want reason %q", v, tc.reason)
				}
				if err := v.Err(); (err == nil) != v.Allowed || (err != nil && !errors.Is(err, registry.ErrPolicyRejected)) {
					t.Errorf("Err() = %v for %+v", err, v)
				}
				// Only a requirement for signatures reads them: from the
				// lookaside directory, and with one GET of the sigstore
				// attachment tag. The manifest is never fetched again.
				wantGETs := 0
				if tc.signatures {
					wantGETs = 1
				}
				n := e.reg.Counts()
				if n.Total != wantGETs || n.ManifestGET != wantGETs || (wantGETs == 1 && !strings.HasSuffix(n.Log[0], ".sig")) {
					t.Errorf("want %d GETs of the sigstore attachment tag and nothing else; %v", wantGETs, n)
				}
			})
		}
	}
}

func TestPolicyErrors(t *testing.T) {
	e := fakeEnv(t)
	lookaside(t, e)
	e.push(t, "policy/a", "stable", osImage(t, "1.0", amd64, updatecachetest.OCI, updatecachetest.Gzip))
	e.push(t, "policy/b", "stable", osImage(t, "2.0", amd64, updatecachetest.OCI, updatecachetest.Gzip))
	ctx := ctxFor(t, 30*time.Second)
	dir := t.TempDir()

	// "" is the SystemContext's policy.
	sys := *e.sys
	sys.SignaturePolicyPath = policyFile(t, reject, nil)
	src, img := openImage(t, e, e.client(registry.Options{SystemContext: &sys}), "policy/a")
	if v, err := src.CheckPolicy(ctx, img, ""); err != nil || v.Allowed {
		t.Errorf("default policy from SystemContext: %+v, %v; want rejected", v, err)
	}

	for _, tc := range []struct {
		name, path string
		also       error
	}{
		{"missing file", filepath.Join(dir, "none.json"), fs.ErrNotExist},
		{"not JSON", writeFile(t, dir, "bad.json", "{"), nil},
		{"no requirements", writeFile(t, dir, "empty.json", `{"default": []}`), nil},
		{"unknown requirement", writeFile(t, dir, "unknown.json", `{"default": [{"type": "trustMe"}]}`), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := src.CheckPolicy(ctx, img, tc.path)
			if !errors.Is(err, registry.ErrPolicyInvalid) || (tc.also != nil && !errors.Is(err, tc.also)) {
				t.Errorf("got %v, want ErrPolicyInvalid", err)
			}
		})
	}

	t.Run("image of another source", func(t *testing.T) {
		_, other := openImage(t, e, e.client(registry.Options{}), "policy/b")
		if _, err := src.CheckPolicy(ctx, other, policyFile(t, accept, nil)); err == nil {
			t.Error("accepted an image read from another source")
		}
	})
	t.Run("tampered manifest", func(t *testing.T) {
		tampered := *img
		tampered.Manifest = bytes.Replace(img.Manifest, []byte(`"schemaVersion":2`), []byte(`"schemaVersion": 2`), 1)
		if _, err := src.CheckPolicy(ctx, &tampered, policyFile(t, accept, nil)); !errors.Is(err, registry.ErrDigestMismatch) {
			t.Errorf("got %v, want ErrDigestMismatch", err)
		}
	})
}

// gpgKeys generates OpenPGP keys with the real gpg in a throwaway
// GNUPGHOME (its agent is stopped when the test ends) and returns the
// GNUPGHOME and, per key, its fingerprint and exported public key file.
func gpgKeys(t *testing.T, names ...string) (home string, fprs, pubs []string) {
	t.Helper()
	gpg := testtool.Need(t, "gpg", "gnupg")
	// A short path: the agent's socket lives in it.
	home, err := os.MkdirTemp("", "gpg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		kill := exec.Command("gpgconf", "--kill", "gpg-agent")
		kill.Env = append(os.Environ(), "GNUPGHOME="+home)
		kill.Run()
		os.RemoveAll(home)
	})
	run := func(args ...string) []byte {
		cmd := exec.Command(gpg, append([]string{"--batch", "--no-tty", "--homedir", home}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("gpg %v: %v\n%s", args, err, stderr.String())
		}
		return out
	}
	for _, name := range names {
		uid := name + " <" + name + "@example.invalid>"
		run("--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never")
		var fpr string
		for _, line := range strings.Split(string(run("--with-colons", "--list-keys", uid)), "\n") {
			if f := strings.Split(line, ":"); f[0] == "fpr" && len(f) > 9 {
				fpr = f[9]
				break
			}
		}
		if fpr == "" {
			t.Fatalf("no fingerprint for %s", uid)
		}
		fprs = append(fprs, fpr)
		pubs = append(pubs, writeFile(t, home, name+".asc", string(run("--armor", "--export", fpr))))
	}
	return home, fprs, pubs
}

// sigstoreKey is an ECDSA P-256 key, the kind cosign and containers/image
// sign sigstore signatures with; pub is its PEM public key file.
type sigstoreKey struct {
	priv *ecdsa.PrivateKey
	pub  string
}

func newSigstoreKey(t *testing.T) sigstoreKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	return sigstoreKey{priv: priv, pub: writeFile(t, t.TempDir(), "key.pub", string(pub))}
}

// attachSigstore signs manifest d for identity with key and attaches the
// signature to repo the way cosign does (the Debian skopeo cannot sign
// with sigstore): an OCI manifest tagged sha256-HEX.sig whose layer is the
// simple-signing payload, with the signature in an annotation.
func attachSigstore(t *testing.T, e *env, repo string, d digest.Digest, identity string, key sigstoreKey) {
	t.Helper()
	payload := []byte(fmt.Sprintf(`{"critical":{"identity":{"docker-reference":%q},"image":{"docker-manifest-digest":%q},`+
		`"type":"cosign container image signature"},"optional":null}`, identity, d))
	sum := sha256.Sum256(payload)
	sig, err := ecdsa.SignASN1(rand.Reader, key.priv, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	blob := func(mediaType string, data []byte) updatecachetest.Blob {
		return updatecachetest.Blob{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data)), Data: data}
	}
	config := blob(imgspecv1.MediaTypeImageConfig, []byte(`{"architecture":"","os":"","config":{},"rootfs":{"type":"layers","diff_ids":[]}}`))
	layer := blob("application/vnd.dev.cosign.simplesigning.v1+json", payload)
	m, err := json.Marshal(imgspecv1.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: imgspecv1.MediaTypeImageManifest,
		Config:    imgspecv1.Descriptor{MediaType: config.MediaType, Digest: config.Digest, Size: config.Size},
		Layers: []imgspecv1.Descriptor{{MediaType: layer.MediaType, Digest: layer.Digest, Size: layer.Size,
			Annotations: map[string]string{"dev.cosignproject.cosign/signature": base64.StdEncoding.EncodeToString(sig)}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	att := &updatecachetest.Image{MediaType: imgspecv1.MediaTypeImageManifest, Manifest: m, ManifestDigest: digest.FromBytes(m), Config: config, Layers: []updatecachetest.Blob{layer}}
	if _, err := e.reg.Push(context.Background(), repo, "sha256-"+d.Encoded()+".sig", att); err != nil {
		t.Fatal(err)
	}
}

// TestPolicySignedImages checks verdicts on signed images in the real
// docker-registry: GPG simple signing made by skopeo (in a lookaside
// directory) and sigstore signatures attached in the registry, each with
// the right key, another key and a policy for the other format. For an
// index the policy applies to the chosen instance, as for podman: a
// signature of the index alone is not enough.
func TestPolicySignedImages(t *testing.T) {
	skopeo := testtool.Need(t, "skopeo", "skopeo")
	gnupgHome, fprs, gpgPubs := gpgKeys(t, "release", "intruder")
	sigstoreKeys := []sigstoreKey{newSigstoreKey(t), newSigstoreKey(t)}
	e := realEnv(t)
	sigDir := lookaside(t, e)
	host := e.reg.Host()
	skopeoPolicy := policyFile(t, accept, nil)
	emptyConf := writeFile(t, t.TempDir(), "registries.conf", "")

	// push copies an artifact to host/repo:stable with skopeo, signing it
	// (with --all, an index and each instance) with the first GPG key.
	push := func(repo string, a updatecachetest.Artifact, sign bool) {
		t.Helper()
		layoutDir := filepath.Join(t.TempDir(), "layout")
		if err := updatecachetest.WriteLayout(layoutDir, "latest", a); err != nil {
			t.Fatal(err)
		}
		args := []string{"--policy", skopeoPolicy, "--registries.d", e.sys.RegistriesDirPath, "--registries-conf", emptyConf,
			"copy", "--all", "--dest-tls-verify=false", "--dest-authfile", e.sys.AuthFilePath}
		if sign {
			args = append(args, "--sign-by", fprs[0])
		}
		args = append(args, "oci:"+layoutDir+":latest", "docker://"+host+"/"+repo+":stable")
		cmd := exec.Command(skopeo, args...)
		cmd.Env = append(os.Environ(), "GNUPGHOME="+gnupgHome)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("skopeo %v: %v\n%s", args, err, out)
		}
	}
	single := osImage(t, "1.0", amd64, updatecachetest.OCI, updatecachetest.Gzip)
	multi := multiArch(t, "1.0", updatecachetest.OCI)
	instance := multi.Images[1] // arm64
	push("gpg/single", single, true)
	push("gpg/multi", multi, true)
	for _, a := range []updatecachetest.Artifact{single, multi} {
		kind, d := "single", single.ManifestDigest
		if a == updatecachetest.Artifact(multi) {
			kind, d = "multi", instance.ManifestDigest
		}
		push("sigstore/"+kind, a, false)
		attachSigstore(t, e, "sigstore/"+kind, d, host+"/sigstore/"+kind+":stable", sigstoreKeys[0])
		push("unsigned/"+kind, a, false)
	}
	// An index whose own digest is signed, but not the instance.
	push("topsigned/multi", multi, false)
	attachSigstore(t, e, "topsigned/multi", multi.ManifestDigest, host+"/topsigned/multi:stable", sigstoreKeys[0])
	out, _ := exec.Command("find", sigDir, "-type", "f").CombinedOutput()
	t.Logf("lookaside signatures:\n%s", out)

	exact := func(ref string) string {
		return fmt.Sprintf(`[{"type": "signedBy", "keyType": "GPGKeys", "keyPath": %q, "signedIdentity": {"type": "exactReference", "dockerReference": %q}}]`, gpgPubs[0], ref)
	}
	cases := []struct {
		name, repo, policy string
		reason             string // "" for allowed
	}{
		{"right GPG key", "gpg", signedBy(gpgPubs[0]), ""},
		{"other GPG key", "gpg", signedBy(gpgPubs[1]), "signature"},
		{"GPG signature, sigstore policy", "gpg", sigstoreSigned(sigstoreKeys[0].pub), "no signature exists"},
		{"GPG signature for another identity", "gpg", exact(host + "/elsewhere:stable"), "not accepted"},
		{"right sigstore key", "sigstore", sigstoreSigned(sigstoreKeys[0].pub), ""},
		{"other sigstore key", "sigstore", sigstoreSigned(sigstoreKeys[1].pub), "signature"},
		{"sigstore signature, GPG policy", "sigstore", signedBy(gpgPubs[0]), "no signature exists"},
		{"unsigned, GPG policy", "unsigned", signedBy(gpgPubs[0]), "no signature exists"},
		{"unsigned, sigstore policy", "unsigned", sigstoreSigned(sigstoreKeys[0].pub), "no signature exists"},
		{"only the index signed", "topsigned", sigstoreSigned(sigstoreKeys[0].pub), "no signature exists"},
	}
	c := e.client(registry.Options{Platform: &arm64})
	for _, kind := range []string{"single", "multi"} {
		for _, tc := range cases {
			repo := tc.repo + "/" + kind
			if tc.repo == "topsigned" && kind != "multi" {
				continue
			}
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				src, img := openImage(t, e, c, repo)
				v, err := src.CheckPolicy(ctxFor(t, 30*time.Second), img, policyFile(t, tc.policy, nil))
				if err != nil {
					t.Fatal(err)
				}
				if v.Allowed != (tc.reason == "") || !strings.Contains(v.Reason, tc.reason) {
					t.Errorf("got %+v, want reason %q", v, tc.reason)
				}
				// Signatures are read; the image's manifest is not fetched again.
				n := e.reg.Counts()
				if n.Ping != 0 || n.Path("GET", "/v2/"+repo+"/manifests/"+img.ManifestDigest.String()) != 0 {
					t.Errorf("CheckPolicy fetched the manifest again: %v", n)
				}
				t.Logf("%+v; %v", v, n)
			})
		}
	}
}

// TestPolicyDeadline: signatures that cannot be fetched in time are an
// error (nothing decided), not a verdict.
func TestPolicyDeadline(t *testing.T) {
	e := fakeEnv(t)
	lookaside(t, e)
	e.push(t, "slow/os", "stable", osImage(t, "1.0", amd64, updatecachetest.OCI, updatecachetest.Gzip))
	src, img := openImage(t, e, e.client(registry.Options{}), "slow/os")
	e.reg.AddFault(updatecachetest.Fault{Kind: updatecachetest.KindManifest, Path: "sha256-", Delay: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	v, err := src.CheckPolicy(ctx, img, policyFile(t, sigstoreSigned(goKey(t)), nil))
	if !errors.Is(err, registry.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %+v, %v; want ErrUnavailable and context.DeadlineExceeded", v, err)
	}
}
