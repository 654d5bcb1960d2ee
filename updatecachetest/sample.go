package updatecachetest

import (
	"fmt"
	"io/fs"
	"math/rand/v2"
	"strings"
	"time"
)

// SampleKernel is the kernel version SampleCommit ships.
const SampleKernel = "6.9.7-200.fc40.x86_64"

// SampleCommit returns the spec of a small OS commit shaped like the ones
// Fedora CoreOS and bootc images carry, with what makes such trees hard to
// carry through a container image: a kernel and initramfs under
// usr/lib/modules/SampleKernel/ (so `ostree admin deploy` accepts it),
// SELinux labels (security.selinux) on every entry, a file capability
// (security.capability), setuid and setgid programs, hard links, a
// zero-size file, a 0700 directory owned by another user, symlinks
// (including the top-level bin, lib and sbin links), configuration under
// usr/etc, empty directories (sysroot among them), a file larger than
// 256 KiB and names longer than a tar header holds. The metadata has
// version, ostree.bootable and ostree.linux set, as rpm-ostree writes them.
func SampleCommit(version string) CommitSpec {
	label := func(t string) map[string][]byte {
		return map[string][]byte{"security.selinux": []byte("system_u:object_r:" + t + ":s0\x00")}
	}
	withXattr := func(m map[string][]byte, k string, v []byte) map[string][]byte {
		m[k] = v
		return m
	}
	dir := func(p string, mode fs.FileMode, t string) CommitEntry {
		return CommitEntry{Path: p, Mode: fs.ModeDir | mode, Xattrs: label(t)}
	}
	file := func(p string, mode fs.FileMode, t, content string) CommitEntry {
		return CommitEntry{Path: p, Mode: mode, Content: []byte(content), Xattrs: label(t)}
	}
	link := func(p, target string) CommitEntry {
		return CommitEntry{Path: p, Mode: fs.ModeSymlink, Target: target, Xattrs: label("bin_t")}
	}
	modules := "usr/lib/modules/" + SampleKernel
	longDir := "usr/share/doc/" + strings.Repeat("long-package-name-", 6) + "1.0"
	// cap_net_raw+ep as a VFS v2 capability.
	capNetRaw := []byte{0x01, 0, 0, 0x02, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	big := make([]byte, 300<<10)
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range big {
		big[i] = byte(rng.IntN(64))
	}
	entries := []CommitEntry{
		dir("", 0o755, "root_t"),
		link("bin", "usr/bin"),
		link("lib", "usr/lib"),
		link("lib64", "usr/lib64"),
		link("sbin", "usr/sbin"),
		dir("boot", 0o755, "boot_t"),
		dir("dev", 0o755, "device_t"),
		dir("proc", 0o555, "proc_t"),
		dir("run", 0o755, "var_run_t"),
		dir("sys", 0o555, "sysfs_t"),
		dir("sysroot", 0o755, "root_t"),
		dir("tmp", fs.ModeSticky|0o777, "tmp_t"),
		dir("var", 0o755, "var_t"),
		dir("usr", 0o755, "usr_t"),
		dir("usr/bin", 0o755, "bin_t"),
		file("usr/bin/bash", 0o755, "shell_exec_t", "#!bash\n"),
		link("usr/bin/sh", "bash"),
		file("usr/bin/gzip", 0o755, "bin_t", "gzip binary\n"),
		{Path: "usr/bin/gunzip", Link: "usr/bin/gzip"},
		{Path: "usr/bin/zcat", Link: "usr/bin/gzip"},
		{Path: "usr/bin/ping", Mode: 0o755, Content: []byte("ping binary\n"), Xattrs: withXattr(label("ping_exec_t"), "security.capability", capNetRaw)},
		file("usr/bin/passwd", 0o755|fs.ModeSetuid, "passwd_exec_t", "passwd binary\n"),
		{Path: "usr/bin/write", Mode: 0o755 | fs.ModeSetgid, GID: 5, Content: []byte("write binary\n"), Xattrs: label("bin_t")},
		link("usr/bin/denormal", "../lib//os-release"),
		dir("usr/lib", 0o755, "lib_t"),
		dir("usr/lib64", 0o755, "lib_t"),
		file("usr/lib/os-release", 0o644, "lib_t", fmt.Sprintf("NAME=Sample OS\nID=sample\nVERSION_ID=%s\n", version)),
		{Path: "usr/lib/libbig.so.1", Mode: 0o755, Content: big, Xattrs: label("lib_t")},
		dir(modules, 0o755, "modules_object_t"),
		file(modules+"/vmlinuz", 0o644, "boot_t", "sample kernel "+SampleKernel+"\n"),
		file(modules+"/initramfs.img", 0o644, "boot_t", "sample initramfs "+SampleKernel+"\n"),
		file(modules+"/modules.dep", 0o644, "modules_object_t", ""),
		dir("usr/sbin", 0o755, "bin_t"),
		dir("usr/share", 0o755, "usr_t"),
		dir("usr/share/empty", 0o755, "usr_t"),
		{Path: "usr/share/polkit-1/rules.d", Mode: fs.ModeDir | 0o700, UID: 998, GID: 998, Xattrs: label("polkit_etc_t")},
		{Path: "usr/share/polkit-1/rules.d/50-default.rules", Mode: 0o640, UID: 998, GID: 998, Content: []byte("// rules\n"), Xattrs: label("polkit_etc_t")},
		dir(longDir, 0o755, "usr_t"),
		file(longDir+"/"+strings.Repeat("README-with-a-long-name-", 4)+"md", 0o644, "usr_t", "long names\n"),
		dir("usr/etc", 0o755, "etc_t"),
		link("usr/etc/os-release", "../lib/os-release"),
		file("usr/etc/hostname.sample", 0o644, "etc_t", "sample\n"),
		file("usr/etc/passwd", 0o644, "passwd_file_t", "root:x:0:0:root:/root:/bin/bash\n"),
		file("usr/etc/shadow", 0o600, "shadow_t", "root:!::0:99999:7:::\n"),
		dir("usr/etc/sudoers.d", 0o750, "etc_t"),
		file("usr/etc/sudoers.d/wheel", 0o440, "etc_t", "%wheel ALL=(ALL) ALL\n"),
	}
	return CommitSpec{
		Entries:   entries,
		Subject:   "Sample OS " + version,
		Timestamp: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Version:   version,
		Bootable:  true,
		Linux:     SampleKernel,
	}
}
