package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-hpc/strata/internal/testcluster"
)

// smallRootfs is a tree of real system files: /bin/sh, ls and cat with
// the libraries ldd lists, and an /etc/os-release.
func smallRootfs(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "rootfs")
	for _, prog := range []string{"/bin/sh", "/bin/ls", "/bin/cat", "/bin/rm", "/bin/mkdir", "/usr/bin/id"} {
		files := []string{prog}
		out, err := exec.Command("ldd", prog).Output()
		if err != nil {
			t.Fatalf("ldd %s: %v", prog, err)
		}
		for _, f := range strings.Fields(string(out)) {
			if strings.HasPrefix(f, "/") {
				files = append(files, f)
			}
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(root, f)
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, b, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	// A setuid-root copy of id: an image's su, passwd and mount need
	// setuid to work through the mount.
	b, _ := os.ReadFile(filepath.Join(root, "usr/bin/id"))
	if err := os.WriteFile(filepath.Join(root, "usr/bin/suid-id"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(filepath.Join(root, "usr/bin/suid-id"), 0o4755); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(root, "dev"), 0o755)
	if err := unix.Mknod(filepath.Join(root, "dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/os-release"), []byte("PRETTY_NAME=\"Strata test image\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// runOK runs a strata command in-process and fails the test on a non-zero
// exit; it returns stdout.
func runOK(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(context.Background(), args, &out, &errb); code != 0 {
		t.Fatalf("strata %s: exit %d: %s", strings.Join(args, " "), code, errb.String())
	}
	return out.String()
}

// startImageMount runs `strata mount --image` in the background and
// returns once the overlay is mounted; stop unmounts (by interrupt) and
// waits for the command to end.
func startImageMount(t *testing.T, meta, image, overlay string, extra ...string) (mp string, stop func()) {
	t.Helper()
	base, err := os.MkdirTemp("", "strata-image-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(base, 0o755)
	mp = filepath.Join(base, "mnt")
	os.Mkdir(mp, 0o755)
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan int, 1)
	var errb bytes.Buffer
	go func() {
		args := append([]string{"mount", "--meta", meta, "--cache-dir", t.TempDir(), "--image", image, "--overlay", overlay}, extra...)
		exited <- run(ctx, append(args, mp), io.Discard, &errb)
	}()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case code := <-exited:
			if code != 0 {
				t.Errorf("strata mount --image exited %d: %s", code, errb.String())
			}
		case <-time.After(30 * time.Second):
			t.Errorf("strata mount --image did not exit after interrupt")
		}
		for _, p := range []string{mp, filepath.Join(overlay, "lower")} {
			if isStrataMount(p) {
				t.Errorf("%s left mounted", p)
				umountOne(p, true)
			}
		}
		os.RemoveAll(base)
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(30 * time.Second)
	for !isStrataMount(mp) {
		select {
		case code := <-exited:
			t.Fatalf("strata mount --image exited %d: %s", code, errb.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("image mount did not appear")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return mp, stop
}

func chroot(t *testing.T, root, script string) string {
	t.Helper()
	out, err := exec.Command("chroot", root, "/bin/sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("chroot %s /bin/sh -c %q: %v: %s", root, script, err, out)
	}
	return string(out)
}

// TestImageImportMountChroot: import a tree of real system files, mount it
// with an empty overlay, run programs from it in a chroot; changes made
// there survive a remount with the same overlay, and a fresh overlay shows
// the pristine image.
func TestImageImportMountChroot(t *testing.T) {
	requireFUSE(t)
	c := testcluster.New(t, testcluster.Options{TLSDir: testTLSDir, Meta: 1, Data: 6})
	meta := strings.Join(c.MetaAddrs(), ",")
	t.Setenv("STRATA_LOG_LEVEL", "error")
	out := runOK(t, "image", "import", "--meta", meta, "small:1", smallRootfs(t))
	if !strings.Contains(out, "imported small:1") {
		t.Errorf("import said %q", out)
	}
	if out := runOK(t, "image", "list", "--meta", meta); !strings.Contains(out, "small:1") || !strings.Contains(out, "ready") {
		t.Errorf("image list: %q", out)
	}
	if out := runOK(t, "image", "show", "--meta", meta, "small:1"); !strings.Contains(out, "shared:") || !strings.Contains(out, "files:") {
		t.Errorf("image show: %q", out)
	}

	overlay := t.TempDir()
	mp, stop := startImageMount(t, meta, "small:1", overlay)
	got := chroot(t, mp, "ls /; cat /etc/os-release; echo discarded > /dev/null && echo dev-null-works")
	if !strings.Contains(got, "etc") || !strings.Contains(got, "Strata test image") || !strings.Contains(got, "dev-null-works") || strings.Contains(got, "discarded") {
		t.Errorf("chroot output: %q", got)
	}
	if out, err := exec.Command("chroot", "--userspec=65534:65534", mp, "/usr/bin/suid-id", "-u").CombinedOutput(); err != nil || string(out) != "0\n" {
		t.Errorf("setuid program run as nobody: euid %q, %v (want 0)", out, err)
	}
	chroot(t, mp, "echo installed > /etc/motd; rm /etc/os-release; echo new > /etc/os-release")
	stop()

	mp, stop = startImageMount(t, meta, "small:1", overlay)
	if got := chroot(t, mp, "cat /etc/motd /etc/os-release"); got != "installed\nnew\n" {
		t.Errorf("after remount with the same overlay: %q", got)
	}
	stop()

	mp, stop = startImageMount(t, meta, "small:1", t.TempDir())
	if got := chroot(t, mp, "cat /etc/os-release; ls /etc"); got != "PRETTY_NAME=\"Strata test image\"\nos-release\n" {
		t.Errorf("fresh overlay: %q", got)
	}
	// `strata umount` takes down the overlay and the image below it.
	runOK(t, "umount", mp)
	stop()
}

// TestImageCommandErrors: bad names and missing images fail with a clear
// message and the usage exit code where the input is at fault.
func TestImageCommandErrors(t *testing.T) {
	requireFUSE(t)
	c := testcluster.New(t, testcluster.Options{TLSDir: testTLSDir, Meta: 1, Data: 6})
	meta := strings.Join(c.MetaAddrs(), ",")
	src := t.TempDir()
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"image", "import", "--meta", meta, "a/b:1", src}, 2, "'/'"},
		{[]string{"image", "import", "--meta", meta, "my image:1", src}, 2, "white space"},
		{[]string{"image", "import", "--meta", meta, "noTag", src}, 2, "NAME:TAG"},
		{[]string{"image", "show", "--meta", meta, "none:1"}, 1, "not found"},
		{[]string{"image", "rm", "--meta", meta, "none:1"}, 1, "not found"},
		{[]string{"image", "frobnicate"}, 2, "unknown image command"},
		{[]string{"mount", "--meta", meta, "--image", "x:1", t.TempDir()}, 2, "go together"},
		{[]string{"mount", "--meta", meta, "--image", "a/b:1", "--overlay", t.TempDir(), t.TempDir()}, 2, "'/'"},
	}
	for _, tc := range cases {
		var errb bytes.Buffer
		code := run(context.Background(), tc.args, io.Discard, &errb)
		if code != tc.code || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("strata %s: exit %d, %q; want exit %d with %q", strings.Join(tc.args, " "), code, errb.String(), tc.code, tc.want)
		}
	}
	runOK(t, "image", "import", "--meta", meta, "dup:1", src)
	var errb bytes.Buffer
	if code := run(context.Background(), []string{"image", "import", "--meta", meta, "dup:1", src}, io.Discard, &errb); code != 1 || !strings.Contains(errb.String(), "already exists") {
		t.Errorf("import over an existing tag: exit %d, %q", code, errb.String())
	}
}

// TestOverlayPushPullMounted: changes made in an image mount (a new file,
// a deleted image file, a directory removed and recreated) are pushed as
// one node's sub-overlay, pulled into a new directory, and a mount with it
// shows exactly those changes.
func TestOverlayPushPullMounted(t *testing.T) {
	requireFUSE(t)
	c := testcluster.New(t, testcluster.Options{TLSDir: testTLSDir, Meta: 1, Data: 6})
	meta := strings.Join(c.MetaAddrs(), ",")
	t.Setenv("STRATA_LOG_LEVEL", "error")
	runOK(t, "image", "import", "--meta", meta, "base:1", smallRootfs(t))
	dir := t.TempDir()
	mp, stop := startImageMount(t, meta, "base:1", dir)
	chroot(t, mp, "echo hello > /greeting; rm -r /etc; mkdir /etc; echo only > /etc/only; rm /bin/mkdir")
	stop()

	runOK(t, "overlay", "create", "--meta", meta, "cluster")
	if out := runOK(t, "overlay", "push", "--meta", meta, "--node", "n1", "cluster", dir); !strings.Contains(out, "pushed cluster") {
		t.Errorf("push: %q", out)
	}
	if out := runOK(t, "overlay", "list", "--meta", meta); !strings.Contains(out, "nodes/n1") {
		t.Errorf("overlay list: %q", out)
	}
	restored := t.TempDir()
	runOK(t, "overlay", "pull", "--meta", meta, "--node", "n1", "cluster", restored)
	mp, stop = startImageMount(t, meta, "base:1", restored)
	const want = "hello\nonly\ncat\nls\nrm\nsh\n"
	if got := chroot(t, mp, "cat /greeting; ls /etc; ls /bin"); got != want {
		t.Errorf("mount with the pulled overlay: %q", got)
	}
	stop()
	// A node's next activation: mount pulls its sub-overlay into a new
	// directory by itself.
	mp, stop = startImageMount(t, meta, "base:1", filepath.Join(t.TempDir(), "ov"), "--pull", "cluster", "--node", "n1")
	if got := chroot(t, mp, "cat /greeting; ls /etc; ls /bin"); got != want {
		t.Errorf("mount --pull: %q", got)
	}
	stop()
	// Pulling into a directory in use is refused.
	mp, stop = startImageMount(t, meta, "base:1", restored)
	var errb bytes.Buffer
	if code := run(context.Background(), []string{"overlay", "pull", "--meta", meta, "--force", "--node", "n1", "cluster", restored}, io.Discard, &errb); code == 0 || !strings.Contains(errb.String(), "in use") {
		t.Errorf("pull into a mounted overlay: exit %d, %q", code, errb.String())
	}
	stop()
	runOK(t, "overlay", "rm", "--meta", meta, "cluster")
}
