// Command labelcommit labels a commit with the SELinux policy its own tree
// ships, as updatecache labels an image's merge commit, and writes the
// labelled commit (importer.RelabelCommit: what `ostree commit
// --tree=ref=COMMIT --selinux-policy=CHECKOUT` does), for bench/label.sh.
// It prints the new commit with its root dirtree and dirmeta, the time
// taken and the process's peak RSS.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"syscall"
	"time"

	"github.com/osimage/updatecache/bench/internal/cpuprofile"
	"github.com/osimage/updatecache/internal/importer"
	"github.com/osimage/updatecache/internal/ostree"
)

func main() {
	repoPath := flag.String("repo", "", "repository")
	rev := flag.String("commit", "", "commit (or ref) to label")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile here")
	flag.Parse()
	defer cpuprofile.Start(*cpuProfile)()
	start := time.Now()
	repo, err := ostree.Open(*repoPath)
	if err != nil {
		log.Fatal(err)
	}
	sum, err := repo.ResolveRef(*rev)
	if err != nil {
		log.Fatal(err)
	}
	c, err := repo.ReadCommit(sum)
	if err != nil {
		log.Fatal(err)
	}
	root, err := repo.OpenMutableTree(c.RootTree, c.RootMeta)
	if err != nil {
		log.Fatal(err)
	}
	policy, err := importer.LoadTreePolicy(repo, root)
	if err != nil || policy == nil {
		log.Fatalf("no usable policy in %s: %v", *rev, err)
	}
	labelled, err := importer.RelabelCommit(context.Background(), repo, sum, policy)
	if err != nil {
		log.Fatal(err)
	}
	elapsed := time.Since(start)
	lc, err := repo.ReadCommit(labelled)
	if err != nil {
		log.Fatal(err)
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("commit %s\ntree %s\nmeta %s\nseconds %.3f\npeak_rss_kib %d\n", labelled, lc.RootTree, lc.RootMeta, elapsed.Seconds(), ru.Maxrss)
}
