package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-hpc/strata/internal/testcluster"
)

// TestE2EDebootstrapImage is `make e2e`: build a real Debian root file
// system with debootstrap from the machine's Debian mirror, pack it as a
// gzip tarball (xattrs and capabilities included), import it, mount it
// with an empty overlay and run programs from it in a chroot; change it,
// remount with the same overlay (changes kept) and with a fresh one
// (pristine). It takes minutes (debootstrap), so it runs only with
// STRATA_E2E=1.
func TestE2EDebootstrapImage(t *testing.T) {
	if os.Getenv("STRATA_E2E") == "" {
		t.Skip("set STRATA_E2E=1 (make e2e) to build and boot a Debian image")
	}
	requireFUSE(t)
	if _, err := exec.LookPath("debootstrap"); err != nil {
		t.Fatal("debootstrap is not installed (apt-get install debootstrap)")
	}
	work := t.TempDir()
	rootfs := filepath.Join(work, "rootfs")
	cache := "/var/cache/strata-e2e/debootstrap" // kept between runs: the .debs
	os.MkdirAll(cache, 0o755)
	start := time.Now()
	cmd := exec.Command("debootstrap", "--variant=minbase", "--cache-dir="+cache, "bookworm", rootfs, debianMirror(t))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("debootstrap: %v\n%s", err, tail(out))
	}
	t.Logf("debootstrap: %v", time.Since(start).Round(time.Second))
	tarball := filepath.Join(work, "rootfs.tar.gz")
	if out, err := exec.Command("tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-C", rootfs, "-czf", tarball, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}

	c := testcluster.New(t, testcluster.Options{TLSDir: testTLSDir, Meta: 3, Data: 6})
	meta := strings.Join(c.MetaAddrs(), ",")
	t.Setenv("STRATA_LOG_LEVEL", "error")
	t.Log(runOK(t, "image", "import", "--meta", meta, "debian:12", tarball))
	t.Log(runOK(t, "image", "show", "--meta", meta, "debian:12"))

	overlay := t.TempDir()
	mp, stop := startImageMount(t, meta, "debian:12", overlay)
	got := chroot(t, mp, "ls /; cat /etc/os-release")
	if !strings.Contains(got, "usr") || !strings.Contains(got, "Debian GNU/Linux 12") {
		t.Fatalf("chroot: %q", got)
	}
	chroot(t, mp, "echo strata > /etc/motd; useradd -m alice; rm /etc/issue; dpkg -l | wc -l > /root/packages")
	stop()

	mp, stop = startImageMount(t, meta, "debian:12", overlay)
	if got := chroot(t, mp, "cat /etc/motd; id alice; test ! -e /etc/issue && echo issue-gone"); !strings.Contains(got, "strata") || !strings.Contains(got, "uid=1000(alice)") || !strings.Contains(got, "issue-gone") {
		t.Errorf("after remount: %q", got)
	}
	stop()

	mp, stop = startImageMount(t, meta, "debian:12", t.TempDir())
	if got := chroot(t, mp, "cat /etc/issue; id alice 2>&1 || true"); !strings.Contains(got, "Debian") || strings.Contains(got, "uid=1000") {
		t.Errorf("fresh overlay: %q", got)
	}
	stop()
}

// debianMirror is the first Debian mirror of the machine's APT sources.
func debianMirror(t *testing.T) string {
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*")
	files = append([]string{"/etc/apt/sources.list"}, files...)
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) == 0 || fields[0] != "URIs:" && fields[0] != "deb" {
				continue // deb822 "URIs:" lines and one-line "deb URL suite" entries
			}
			for _, u := range fields[1:] {
				if strings.HasPrefix(u, "http") && !strings.Contains(u, "security") {
					fh.Close()
					return u
				}
			}
		}
		fh.Close()
	}
	return "http://deb.debian.org/debian"
}

func tail(b []byte) string {
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
