package fuse

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-hpc/strata/client"
)

// mountImageAt mounts the Strata directory at p as an image with overlay
// directory dir at a new mount point, and takes it down when the test
// ends.
func mountImageAt(t *testing.T, cl *client.Client, p, dir string) *ImageMount {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := cl.Lstat(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	o := DefaultOptions()
	o.Logger = testLogger()
	im, err := MountImage(ctx, cl, mountDir(t), ImageOptions{RootIno: a.GetIno(), OverlayDir: dir, FUSE: o})
	if err != nil {
		t.Fatalf("mount image: %v", err)
	}
	ourMounts.Store(im.lower.Mountpoint(), true)
	t.Cleanup(func() { unmountImage(t, im) })
	return im
}

// unmountImage unmounts, retrying while busy, and detaches as a last
// resort; a second call (after the test's own unmount) does nothing.
func unmountImage(t *testing.T, im *ImageMount) {
	if ok, _ := isMountpoint(im.lower.Mountpoint()); !ok {
		return
	}
	var err error
	for try := 0; try < 50; try++ {
		if err = im.Unmount(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("unmount image %s: %v; detaching", im.Mountpoint(), err)
	if err := im.Detach(); err != nil {
		t.Error(err)
	}
}

// buildTree writes a small tree through the whole-FS mount at mp (so it
// exists in Strata) and the same tree into a local directory.
func buildTree(t *testing.T, roots ...string) {
	t.Helper()
	for _, r := range roots {
		must(t, os.MkdirAll(filepath.Join(r, "etc/sub"), 0o755))
		must(t, os.MkdirAll(filepath.Join(r, "bin"), 0o755))
		must(t, os.MkdirAll(filepath.Join(r, "gone/deep"), 0o750))
		must(t, os.WriteFile(filepath.Join(r, "etc/os-release"), []byte("NAME=strata-test\n"), 0o644))
		must(t, os.WriteFile(filepath.Join(r, "etc/sub/conf"), bytes.Repeat([]byte("c"), 100000), 0o600))
		must(t, os.WriteFile(filepath.Join(r, "bin/tool"), []byte("#!/bin/sh\necho hi\n"), 0o755))
		must(t, os.WriteFile(filepath.Join(r, "gone/deep/x"), []byte("x"), 0o644))
		must(t, os.WriteFile(filepath.Join(r, "gone/y"), []byte("y"), 0o644))
		must(t, os.Link(filepath.Join(r, "bin/tool"), filepath.Join(r, "bin/tool2")))
		must(t, os.Symlink("/etc/os-release", filepath.Join(r, "release")))
		must(t, unix.Setxattr(filepath.Join(r, "etc/os-release"), "user.origin", []byte("image"), 0))
	}
}

func readString(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestImageOverlay: an image mounted with an overlay reads the image,
// keeps changes in the upper directory only (the image in Strata stays as
// it was), refuses writes to the lower mount, keeps the changes across a
// remount with the same overlay, and shows the pristine image with a
// fresh one.
func TestImageOverlay(t *testing.T) {
	c := newCluster(t, nil)
	whole := mount(t, c, nil)
	buildTree(t, filepath.Join(whole, "img"))
	cl := newClient(t, c)
	dir := t.TempDir()

	im := mountImageAt(t, cl, "/img", dir)
	mp := im.Mountpoint()
	if got := readString(t, filepath.Join(mp, "etc/os-release")); got != "NAME=strata-test\n" {
		t.Fatalf("os-release through the overlay: %q", got)
	}
	must(t, os.WriteFile(filepath.Join(mp, "etc/os-release"), []byte("NAME=changed\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(mp, "new-file"), []byte("new"), 0o640))
	must(t, os.Remove(filepath.Join(mp, "bin/tool")))
	must(t, os.RemoveAll(filepath.Join(mp, "gone")))
	must(t, os.Mkdir(filepath.Join(mp, "gone"), 0o700))
	if err := os.WriteFile(filepath.Join(dir, lowerName, "etc/x"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("write to the lower mount: %v, want EROFS", err)
	}
	// The deletion is a whiteout in the upper layer, the recreated
	// directory is opaque.
	var st unix.Stat_t
	must(t, unix.Lstat(filepath.Join(dir, UpperName, "bin/tool"), &st))
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("upper bin/tool: mode %#o rdev %d, want a 0/0 whiteout", st.Mode, st.Rdev)
	}
	if v, err := getxattr(filepath.Join(dir, UpperName, "gone"), "trusted.overlay.opaque"); err != nil || v != "y" {
		t.Errorf("upper gone/: opaque xattr %q, %v", v, err)
	}
	var img bytes.Buffer
	if _, err := cl.Get(context.Background(), "/img/etc/os-release", &img); err != nil || img.String() != "NAME=strata-test\n" {
		t.Fatalf("the image in Strata changed: %q, %v", img.String(), err)
	}
	must(t, im.Unmount())

	again := mountImageAt(t, cl, "/img", dir).Mountpoint()
	if got := readString(t, filepath.Join(again, "etc/os-release")); got != "NAME=changed\n" {
		t.Errorf("after remount: os-release %q", got)
	}
	if _, err := os.Stat(filepath.Join(again, "bin/tool")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after remount: deleted bin/tool: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(again, "gone")); len(ents) != 0 {
		t.Errorf("after remount: recreated gone/ shows %d image entries", len(ents))
	}
	fresh := mountImageAt(t, cl, "/img", t.TempDir()).Mountpoint()
	if got := readString(t, filepath.Join(fresh, "etc/os-release")); got != "NAME=strata-test\n" {
		t.Errorf("fresh overlay: os-release %q", got)
	}
	if _, err := os.Stat(filepath.Join(fresh, "new-file")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("fresh overlay shows new-file: %v", err)
	}
}

func getxattr(p, name string) (string, error) {
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(p, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// TestImageOverlayRefusesBadUpperFS: an overlay directory on ramfs (no
// extended attributes) is refused with a clear error, and nothing stays
// mounted.
func TestImageOverlayRefusesBadUpperFS(t *testing.T) {
	c := newCluster(t, nil)
	cl := newClient(t, c)
	must(t, cl.MkdirAll(context.Background(), "/img", 0o755))
	if _, err := cl.Put(context.Background(), "/img/f", strings.NewReader("x"), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	a, err := cl.Lstat(context.Background(), "/img")
	if err != nil {
		t.Fatal(err)
	}
	ram := t.TempDir()
	if err := unix.Mount("ramfs", ram, "ramfs", 0, ""); err != nil {
		t.Skipf("cannot mount ramfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(ram, unix.MNT_DETACH) })
	mp := mountDir(t)
	_, err = MountImage(context.Background(), cl, mp, ImageOptions{RootIno: a.GetIno(), OverlayDir: filepath.Join(ram, "ov"), FUSE: DefaultOptions()})
	if err == nil || !strings.Contains(err.Error(), "extended attributes") {
		t.Fatalf("mount with the overlay on ramfs: %v, want an error about extended attributes", err)
	}
	for _, p := range []string{mp, filepath.Join(ram, "ov", lowerName)} {
		if ok, _ := isMountpoint(p); ok {
			t.Errorf("%s left mounted", p)
		}
	}
}
