package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/osimage/updatecache"
)

// The JSON documents follow bootc's status conventions: an image status is
// {imageDigest, version, timestamp, architecture}; absent values are null.

type imageStatusJSON struct {
	ImageDigest  string     `json:"imageDigest"`
	Version      *string    `json:"version"`
	Timestamp    *time.Time `json:"timestamp"`
	Architecture *string    `json:"architecture"`
}

type deployedJSON struct {
	imageStatusJSON
	MergeCommit string `json:"mergeCommit"`
}

type cachedUpdateJSON struct {
	imageStatusJSON
	CheckedAt    *time.Time               `json:"checkedAt"`
	ManifestDiff updatecache.ManifestDiff `json:"manifestDiff"`
	ToFetch      updatecache.FetchSize    `json:"toFetch"`
	Downgrade    bool                     `json:"downgrade,omitempty"`
	// PlatformChanged is set when the update is for another platform.
	PlatformChanged bool `json:"platformChanged,omitempty"`
	// Signature is present only when the check verified signatures.
	Signature *signatureJSON `json:"signature,omitempty"`
}

type signatureJSON struct {
	Allowed bool   `json:"allowed"`
	Reason  string `json:"reason,omitempty"`
}

type checkResultJSON struct {
	Image           string            `json:"image"`
	Outcome         string            `json:"outcome"`
	UpdateAvailable bool              `json:"updateAvailable"`
	Persisted       bool              `json:"persisted"`
	Reason          string            `json:"reason,omitempty"`
	Deployed        *deployedJSON     `json:"deployed"`
	CachedUpdate    *cachedUpdateJSON `json:"cachedUpdate"`
}

type imageJSON struct {
	Image        string            `json:"image"`
	Deployed     *deployedJSON     `json:"deployed"`
	CachedUpdate *cachedUpdateJSON `json:"cachedUpdate"`
}

type statusResultJSON struct {
	Images []imageJSON `json:"images"`
}

func optional[T comparable](v T) *T {
	var zero T
	if v == zero {
		return nil
	}
	return &v
}

func imageStatus(img *updatecache.Image) imageStatusJSON {
	return imageStatusJSON{
		ImageDigest:  img.ManifestDigest.String(),
		Version:      optional(img.Version),
		Timestamp:    optional(img.Timestamp),
		Architecture: optional(img.Architecture),
	}
}

func deployedStatus(d *updatecache.Deployed) *deployedJSON {
	if d == nil {
		return nil
	}
	return &deployedJSON{imageStatusJSON: imageStatus(&d.Image), MergeCommit: d.MergeCommit}
}

func cachedStatus(u *updatecache.CachedUpdate) *cachedUpdateJSON {
	if u == nil {
		return nil
	}
	c := &cachedUpdateJSON{imageStatusJSON: imageStatus(&u.Image), CheckedAt: optional(u.CheckedAt), ManifestDiff: u.Diff,
		ToFetch: u.ToFetch, Downgrade: u.Downgrade, PlatformChanged: u.PlatformChanged}
	if v := u.Signature; v != nil {
		c.Signature = &signatureJSON{Allowed: v.Allowed, Reason: v.Reason}
	}
	return c
}

func checkJSON(res *updatecache.PrepareResult) checkResultJSON {
	return checkResultJSON{
		Image:           res.Image,
		Outcome:         res.Outcome.String(),
		UpdateAvailable: res.UpdateAvailable(),
		Persisted:       res.Persisted(),
		Reason:          res.Reason,
		Deployed:        deployedStatus(res.Deployed),
		CachedUpdate:    cachedStatus(res.CachedUpdate),
	}
}

func statusJSON(states []*updatecache.ImageState) statusResultJSON {
	out := statusResultJSON{Images: []imageJSON{}}
	for _, st := range states {
		out.Images = append(out.Images, imageJSON{Image: st.Image, Deployed: deployedStatus(st.Deployed), CachedUpdate: cachedStatus(st.CachedUpdate)})
	}
	return out
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeCheck prints a check result the way bootc upgrade --check does.
func writeCheck(w io.Writer, res *updatecache.PrepareResult) error {
	ew := &errWriter{w: w}
	if !res.UpdateAvailable() {
		ew.printf("No changes in: %s\n", res.Image)
	} else {
		ew.printf("Update available for: %s\n", res.Image)
		writeUpdate(ew, res.CachedUpdate)
	}
	if res.Reason != "" && (res.UpdateAvailable() && !res.Persisted()) {
		ew.printf("Not cached: %s\n", res.Reason)
	}
	return ew.err
}

func writeUpdate(ew *errWriter, u *updatecache.CachedUpdate) {
	if u.Version != "" {
		ew.printf("  Version: %s\n", u.Version)
	}
	ew.printf("  Digest: %s\n", u.ManifestDigest)
	if !u.Timestamp.IsZero() {
		ew.printf("  Timestamp: %s\n", u.Timestamp.Format(time.RFC3339))
	}
	switch v := u.Signature; {
	case v == nil:
	case v.Allowed:
		ew.printf("  Signature: accepted by the policy\n")
	default:
		ew.printf("  Signature: rejected by the policy: %s\n", v.Reason)
	}
	d := u.Diff
	ew.printf("Total new layers: %-4d  Size: %s\n", d.Total, humanSize(d.TotalSize))
	ew.printf("Removed layers:   %-4d  Size: %s\n", d.NRemoved, humanSize(d.RemovedSize))
	ew.printf("Added layers:     %-4d  Size: %s\n", d.NAdded, humanSize(d.AddedSize))
	ew.printf("To download:      %-4d  Size: %s\n", u.ToFetch.Layers, humanSize(u.ToFetch.Size))
	if d.NAdded == 0 && d.NRemoved == 0 && u.ConfigChanged {
		ew.printf("Only the image configuration changed.\n")
	}
	if u.PlatformChanged {
		ew.printf("The update is for another platform: %s.\n", u.Platform())
	}
	if u.Downgrade {
		ew.printf("This is a downgrade: the update is older than the deployed image.\n")
	}
}

func writeStatus(w io.Writer, states []*updatecache.ImageState) error {
	ew := &errWriter{w: w}
	if len(states) == 0 {
		ew.printf("No images deployed.\n")
	}
	for i, st := range states {
		if i > 0 {
			ew.printf("\n")
		}
		ew.printf("Image: %s\n", st.Image)
		if d := st.Deployed; d == nil {
			ew.printf("  Not deployed\n")
		} else {
			ew.printf("  Deployed: %s\n", describe(&d.Image))
			ew.printf("  Merge commit: %s\n", d.MergeCommit)
		}
		if u := st.CachedUpdate; u == nil {
			ew.printf("No cached update.\n")
		} else {
			ew.printf("Cached update (checked %s):\n", describeTime(u.CheckedAt))
			writeUpdate(ew, u)
		}
	}
	return ew.err
}

func describe(img *updatecache.Image) string {
	s := img.ManifestDigest.String()
	if img.Version != "" {
		s = img.Version + " (" + s + ")"
	}
	return s
}

func describeTime(t time.Time) string {
	if t.IsZero() {
		return "at an unknown time"
	}
	return t.Format(time.RFC3339)
}

// humanSize formats bytes in SI units, as bootc and rpm-ostree do.
func humanSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

// errWriter keeps the first write error so printing code stays linear.
// It escapes the text of the arguments (see escapeText): every line it
// prints may carry an image's or a registry's words.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = io.WriteString(e.w, safef(format, args...))
	}
}

// clearJSON is what clear --json prints: the cached update removed, or
// null when there was none.
type clearJSON struct {
	Image   string            `json:"image"`
	Cleared *cachedUpdateJSON `json:"cleared"`
}

func writeClear(w io.Writer, image string, cleared *updatecache.CachedUpdate) error {
	ew := &errWriter{w: w}
	if cleared == nil {
		ew.printf("No cached update for: %s\n", image)
	} else {
		ew.printf("Cleared the cached update of: %s\n  Was: %s\n", image, describe(&cleared.Image))
	}
	return ew.err
}

type pruneResultJSON struct {
	DryRun         bool     `json:"dryRun"`
	RefsDeleted    []string `json:"refsDeleted"`
	ObjectsDeleted int      `json:"objectsDeleted"`
	BytesFreed     int64    `json:"bytesFreed"`
	TmpRemoved     []string `json:"tmpRemoved"`
	TmpBytesFreed  int64    `json:"tmpBytesFreed"`
}

func pruneJSON(res *updatecache.PruneResult, dryRun bool) pruneResultJSON {
	nonNil := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	return pruneResultJSON{DryRun: dryRun, RefsDeleted: nonNil(res.RefsDeleted), ObjectsDeleted: res.ObjectsDeleted,
		BytesFreed: res.BytesFreed, TmpRemoved: nonNil(res.TmpRemoved), TmpBytesFreed: res.TmpBytesFreed}
}

func writePrune(w io.Writer, res *updatecache.PruneResult, dryRun bool) error {
	ew := &errWriter{w: w}
	verb := "Removed"
	if dryRun {
		verb = "Would remove"
	}
	for _, r := range res.RefsDeleted {
		ew.printf("%s ref %s\n", verb, r)
	}
	ew.printf("%s %d refs and %d objects, freeing %s\n", verb, len(res.RefsDeleted), res.ObjectsDeleted, humanSize(res.BytesFreed))
	if len(res.TmpRemoved) > 0 {
		ew.printf("%s %d leftovers of interrupted writes from tmp/, freeing %s\n", verb, len(res.TmpRemoved), humanSize(res.TmpBytesFreed))
	}
	return ew.err
}
