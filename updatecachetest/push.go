package updatecachetest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// HTTPOptions configure the registry client of Push, PushManifest and
// DeleteManifest.
type HTTPOptions struct {
	// Client sends the requests; nil means a private client whose idle
	// connections are closed when the call returns.
	Client *http.Client
	// Username and Password, if set, are sent as basic auth, or to the
	// token realm of a registry that asks for a bearer token.
	Username, Password string
	// TLS, if set, makes the client speak HTTPS, with this configuration
	// (e.g. RootCAs trusting a test Certificate) unless Client is set.
	TLS *tls.Config
}

// manifestTypes is the Accept header for manifest requests.
var manifestTypes = strings.Join([]string{
	imgspecv1.MediaTypeImageManifest, imgspecv1.MediaTypeImageIndex,
	MediaTypeDockerManifest, MediaTypeDockerList,
}, ", ")

// remote talks to one repository of a registry.
type remote struct {
	base   *url.URL // http://host or https://host
	repo   string
	client *http.Client
	opts   HTTPOptions
	bearer string // a token from the registry's realm, once asked for
}

// withRemote runs fn with a client for repo at host and releases the
// client's connections afterwards.
func withRemote(host, repo string, opts HTTPOptions, fn func(*remote) error) error {
	r := &remote{base: &url.URL{Scheme: "http", Host: host}, repo: repo, client: opts.Client, opts: opts}
	if opts.TLS != nil {
		r.base.Scheme = "https"
	}
	if r.client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = nil // the registries are on loopback
		tr.TLSClientConfig = opts.TLS
		r.client = &http.Client{Transport: tr}
		defer tr.CloseIdleConnections()
	}
	return fn(r)
}

// do sends one request and returns the response if its status is one of
// ok; any other status is an error quoting the registry's body.
func (r *remote) do(ctx context.Context, method, target string, header http.Header, body []byte, ok ...int) (*http.Response, error) {
	u, err := r.base.Parse(target)
	if err != nil {
		return nil, err
	}
	res, err := r.send(ctx, method, u, header, body)
	if err != nil {
		return nil, err
	}
	if challenge := res.Header.Get("WWW-Authenticate"); res.StatusCode == http.StatusUnauthorized &&
		r.bearer == "" && strings.HasPrefix(strings.ToLower(challenge), "bearer ") {
		drain(res)
		if r.bearer, err = r.token(ctx, challenge); err != nil {
			return nil, err
		}
		if res, err = r.send(ctx, method, u, header, body); err != nil {
			return nil, err
		}
	}
	for _, code := range ok {
		if res.StatusCode == code {
			return res, nil
		}
	}
	defer res.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(res.Body, 1024))
	return nil, fmt.Errorf("%s %s: %s: %s", method, u.Path, res.Status, bytes.TrimSpace(msg))
}

// send makes one request, authorised with the bearer token if there is
// one, else with the basic credentials if any.
func (r *remote) send(ctx context.Context, method string, u *url.URL, header http.Header, body []byte) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	switch {
	case r.bearer != "":
		req.Header.Set("Authorization", "Bearer "+r.bearer)
	case r.opts.Username != "" || r.opts.Password != "":
		req.SetBasicAuth(r.opts.Username, r.opts.Password)
	}
	return r.client.Do(req)
}

// token asks the realm of a bearer challenge for push, pull and delete
// access to the repository, with the basic credentials if any.
func (r *remote) token(ctx context.Context, challenge string) (string, error) {
	params := map[string]string{}
	for _, kv := range strings.Split(challenge[len("bearer "):], ",") {
		if k, v, ok := strings.Cut(strings.TrimSpace(kv), "="); ok {
			params[strings.ToLower(k)] = strings.Trim(v, `"`)
		}
	}
	realm, err := url.Parse(params["realm"])
	if err != nil || realm.Host == "" {
		return "", fmt.Errorf("bearer challenge %q: bad realm", challenge)
	}
	q := realm.Query()
	q.Set("service", params["service"])
	q.Set("scope", "repository:"+r.repo+":pull,push,delete")
	realm.RawQuery = q.Encode()
	res, err := r.send(ctx, http.MethodGet, realm, nil, nil)
	if err != nil {
		return "", err
	}
	defer drain(res)
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("token from %s: %s", realm.Host, res.Status)
	}
	var doc struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&doc); err != nil || doc.Token == "" {
		return "", fmt.Errorf("token from %s: no token (%v)", realm.Host, err)
	}
	return doc.Token, nil
}

// drain reads and closes a response body so the connection can be reused.
func drain(res *http.Response) {
	io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20))
	res.Body.Close()
}

func (r *remote) path(kind, ref string) string { return "/v2/" + r.repo + "/" + kind + "/" + ref }

// pushBlob uploads b unless the registry has it: a HEAD, then a POST to
// open an upload and one monolithic PUT.
func (r *remote) pushBlob(ctx context.Context, b Blob) error {
	res, err := r.do(ctx, http.MethodHead, r.path("blobs", b.Digest.String()), nil, nil, http.StatusOK, http.StatusNotFound)
	if err != nil {
		return err
	}
	drain(res)
	if res.StatusCode == http.StatusOK {
		return nil
	}
	res, err = r.do(ctx, http.MethodPost, r.path("blobs", "uploads/"), nil, nil, http.StatusAccepted)
	if err != nil {
		return err
	}
	drain(res)
	loc, err := url.Parse(res.Header.Get("Location"))
	if err != nil || res.Header.Get("Location") == "" {
		return fmt.Errorf("upload of %s: bad Location %q", b.Digest, res.Header.Get("Location"))
	}
	q := loc.Query()
	q.Set("digest", b.Digest.String())
	loc.RawQuery = q.Encode()
	header := http.Header{"Content-Type": {"application/octet-stream"}}
	res, err = r.do(ctx, http.MethodPut, loc.String(), header, b.Data, http.StatusCreated)
	if err != nil {
		return err
	}
	drain(res)
	return nil
}

func (r *remote) putManifest(ctx context.Context, reference, mediaType string, data []byte) error {
	res, err := r.do(ctx, http.MethodPut, r.path("manifests", reference), http.Header{"Content-Type": {mediaType}}, data, http.StatusCreated)
	if err != nil {
		return err
	}
	drain(res)
	return nil
}

// pushImage pushes img's blobs, then its manifest by digest.
func (r *remote) pushImage(ctx context.Context, img *Image) error {
	for _, b := range img.blobs() {
		if err := r.pushBlob(ctx, b); err != nil {
			return err
		}
	}
	return r.putManifest(ctx, img.ManifestDigest.String(), img.MediaType, img.Manifest)
}

// Push pushes an *Image or *Index to repo in the registry at host (over
// plain HTTP unless opts.TLS is set): blobs first (skipping those the registry has), an index's
// images before the index, and finally the top manifest under tag (by
// digest only when tag is ""). It returns the top manifest's digest.
func Push(ctx context.Context, host, repo, tag string, a Artifact, opts HTTPOptions) (digest.Digest, error) {
	mediaType, data, d := a.topManifest()
	err := withRemote(host, repo, opts, func(r *remote) error {
		var images []*Image
		switch a := a.(type) {
		case *Image:
			images = []*Image{a}
		case *Index:
			images = a.Images
		}
		for _, img := range images {
			if err := r.pushImage(ctx, img); err != nil {
				return err
			}
		}
		if tag == "" {
			return r.putManifest(ctx, d.String(), mediaType, data)
		}
		return r.putManifest(ctx, tag, mediaType, data)
	})
	if err != nil {
		return "", fmt.Errorf("updatecachetest: pushing to %s/%s: %w", host, repo, err)
	}
	return d, nil
}

// PushManifest stores data as a manifest under reference (a tag or digest)
// with the given Content-Type, unchecked: tests use it for documents no
// builder makes (schema 1, unknown media types, broken JSON). Registries
// that validate manifests may refuse them.
func PushManifest(ctx context.Context, host, repo, reference, mediaType string, data []byte, opts HTTPOptions) error {
	err := withRemote(host, repo, opts, func(r *remote) error {
		return r.putManifest(ctx, reference, mediaType, data)
	})
	if err != nil {
		return fmt.Errorf("updatecachetest: pushing manifest to %s/%s: %w", host, repo, err)
	}
	return nil
}

// DeleteManifest deletes the manifest d from repo and every tag of repo
// that still points at it, so the image is gone by tag and by digest on
// registries that untag on delete (distribution) and those that do not.
func DeleteManifest(ctx context.Context, host, repo string, d digest.Digest, opts HTTPOptions) error {
	err := withRemote(host, repo, opts, func(r *remote) error {
		res, err := r.do(ctx, http.MethodDelete, r.path("manifests", d.String()), nil, nil, http.StatusAccepted)
		if err != nil {
			return err
		}
		drain(res)
		res, err = r.do(ctx, http.MethodGet, "/v2/"+repo+"/tags/list", nil, nil, http.StatusOK, http.StatusNotFound)
		if err != nil {
			return err
		}
		var list struct {
			Tags []string `json:"tags"`
		}
		if res.StatusCode == http.StatusOK {
			err = json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&list)
		}
		drain(res)
		if err != nil {
			return fmt.Errorf("tags list: %w", err)
		}
		for _, tag := range list.Tags {
			res, err := r.do(ctx, http.MethodHead, r.path("manifests", tag), http.Header{"Accept": {manifestTypes}}, nil, http.StatusOK, http.StatusNotFound)
			if err != nil {
				return err
			}
			drain(res)
			if res.StatusCode != http.StatusOK || res.Header.Get("Docker-Content-Digest") != d.String() {
				continue
			}
			if res, err = r.do(ctx, http.MethodDelete, r.path("manifests", tag), nil, nil, http.StatusAccepted); err != nil {
				return err
			}
			drain(res)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("updatecachetest: deleting %s from %s/%s: %w", d, host, repo, err)
	}
	return nil
}

// Push pushes a to repo:tag in this registry; see the package function Push.
func (r *Registry) Push(ctx context.Context, repo, tag string, a Artifact) (digest.Digest, error) {
	return Push(ctx, r.host, repo, tag, a, HTTPOptions{})
}

// DeleteManifest deletes d and the tags pointing at it from repo in this
// registry; see the package function DeleteManifest.
func (r *Registry) DeleteManifest(ctx context.Context, repo string, d digest.Digest) error {
	return DeleteManifest(ctx, r.host, repo, d, HTTPOptions{})
}
