package main

import (
	"runtime/debug"
	"strings"

	"github.com/osimage/updatecache"
)

// versionText is what --version prints: the module's version, the importer
// version written into merge commits, and the source revision and Go
// version from the build information. A build with -buildvcs=false (or
// outside a checkout) records no revision.
func versionText() string {
	info, _ := debug.ReadBuildInfo()
	return describeBuild(info)
}

// describeBuild renders the build information (nil when there is none).
func describeBuild(info *debug.BuildInfo) string {
	version, revision, modified, goVersion := "unknown", "unknown", "", "unknown"
	if info != nil {
		version, goVersion = info.Main.Version, info.GoVersion
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = " (modified)"
				}
			}
		}
	}
	return strings.Join([]string{
		"updatecache " + version,
		"importer: " + updatecache.ImporterVersion,
		"revision: " + revision + modified,
		"go: " + goVersion,
	}, "\n")
}
