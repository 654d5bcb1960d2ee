package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/osimage/updatecache/updatecachetest"
)

// anchorModel replays, with plain HTTP, the requests ostree-ext's prepare()
// makes for an update check, as the project's notes on ostree-ext
// ("How the anchor decides in prepare()") describe them: ping, GET the tag's manifest (an index resolved to the
// platform's instance by a second GET), and for an image that is neither the
// deployed manifest nor the deployed config, GET the config. It is a model
// of the requests, not ostree-ext itself: it leaves out the TLS probe that
// containers/image (under ostree-ext, via skopeo's image proxy) makes first
// on an unverified registry.
type anchorModel struct {
	host, repo, tag string
	platform        imgspecv1.Platform
	deployed        *updatecachetest.Image
}

// maxDoc caps what the model reads of one manifest or config.
const maxDoc = 4 << 20

var manifestAccept = strings.Join([]string{
	imgspecv1.MediaTypeImageManifest, imgspecv1.MediaTypeImageIndex,
	updatecachetest.MediaTypeDockerManifest, updatecachetest.MediaTypeDockerList,
}, ", ")

// check returns whether the registry has an image other than the deployed one.
func (a *anchorModel) check(ctx context.Context) (bool, error) {
	tr := &http.Transport{Proxy: nil}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	get := func(path string, accept string) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.host+path, nil)
		if err != nil {
			return nil, err
		}
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		res, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer res.Body.Close()
		body, err := io.ReadAll(io.LimitReader(res.Body, maxDoc))
		if err != nil {
			return nil, err
		}
		if res.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s", path, res.Status)
		}
		return body, nil
	}

	if _, err := get("/v2/", ""); err != nil {
		return false, err
	}
	base := "/v2/" + a.repo
	body, err := get(base+"/manifests/"+a.tag, manifestAccept)
	if err != nil {
		return false, err
	}
	var doc struct {
		MediaType string                 `json:"mediaType"`
		Manifests []imgspecv1.Descriptor `json:"manifests"`
		Config    imgspecv1.Descriptor   `json:"config"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return false, err
	}
	if doc.Manifests != nil {
		instance, err := a.choose(doc.Manifests)
		if err != nil {
			return false, err
		}
		if body, err = get(base+"/manifests/"+instance.String(), manifestAccept); err != nil {
			return false, err
		}
		if err := json.Unmarshal(body, &doc); err != nil {
			return false, err
		}
	}
	if digest.FromBytes(body) == a.deployed.ManifestDigest || doc.Config.Digest == a.deployed.ConfigDigest() {
		return false, nil
	}
	if _, err := get(base+"/blobs/"+doc.Config.Digest.String(), ""); err != nil {
		return false, err
	}
	return true, nil
}

func (a *anchorModel) choose(instances []imgspecv1.Descriptor) (digest.Digest, error) {
	for _, d := range instances {
		if d.Platform != nil && d.Platform.OS == a.platform.OS && d.Platform.Architecture == a.platform.Architecture {
			return d.Digest, nil
		}
	}
	return "", fmt.Errorf("no instance for %s/%s", a.platform.OS, a.platform.Architecture)
}
