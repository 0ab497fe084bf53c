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
)

// TestMountpointErrors checks that a bad mount point is refused with a
// clear error before anything is mounted.
func TestMountpointErrors(t *testing.T) {
	c := newCluster(t, nil)
	cl := newClient(t, c)
	base := t.TempDir()
	file := filepath.Join(base, "file")
	must(t, os.WriteFile(file, nil, 0o644))
	full := filepath.Join(base, "full")
	must(t, os.MkdirAll(filepath.Join(full, "x"), 0o755))
	busy := mount(t, c, nil)

	cases := []struct {
		mp   string
		want syscall.Errno
		msg  string
	}{
		{filepath.Join(base, "missing"), syscall.ENOENT, "does not exist"},
		{file, syscall.ENOTDIR, "not a directory"},
		{full, syscall.ENOTEMPTY, "not empty"},
		{busy, syscall.EBUSY, "already a mount point"},
	}
	for _, tc := range cases {
		fsys, err := Mount(context.Background(), cl, tc.mp, DefaultOptions())
		if err == nil {
			fsys.Unmount()
			t.Errorf("mount on %s succeeded", tc.mp)
			continue
		}
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("mount on %s: %v; want %v (%q)", tc.mp, err, tc.want, tc.msg)
		}
	}
}

// TestUnlinkOpenFile checks NFS-style silly rename: a file unlinked while
// open stays readable and writable through the descriptor, is invisible
// in listings, and is gone once closed.
func TestUnlinkOpenFile(t *testing.T) {
	c := newCluster(t, nil)
	mp := mount(t, c, nil)
	p := filepath.Join(mp, "f")
	data := bytes.Repeat([]byte("0123456789"), 100000)
	must(t, os.WriteFile(p, data, 0o644))
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	must(t, os.Remove(p))
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat after unlink: %v", err)
	}
	if ents, _ := os.ReadDir(mp); len(ents) != 0 {
		t.Errorf("listing after unlink shows %v", ents)
	}
	var st syscall.Stat_t
	must(t, syscall.Fstat(int(f.Fd()), &st))
	if st.Nlink != 0 || st.Size != int64(len(data)) {
		t.Errorf("fstat after unlink: nlink %d size %d", st.Nlink, st.Size)
	}
	if _, err := f.WriteAt([]byte("XYZ"), 5); err != nil {
		t.Fatal(err)
	}
	copy(data[5:], "XYZ")
	got := make([]byte, len(data))
	if _, err := f.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
		t.Errorf("read after unlink: %v, equal %v", err, bytes.Equal(got, data))
	}
	must(t, f.Close())
	// Release runs after close returns; the hidden name goes soon after.
	cl := newClient(t, c)
	deadline := time.Now().Add(5 * time.Second)
	for {
		ents, err := cl.ReadDirAt(context.Background(), rootIno, false)
		must(t, err)
		if len(ents) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after close, the server still lists %v", ents[0].GetName())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStatfsXattr checks that statfs reports the cluster's capacity and
// that extended attributes round-trip.
func TestStatfsXattr(t *testing.T) {
	c := newCluster(t, nil)
	mp := mount(t, c, nil)
	var st syscall.Statfs_t
	must(t, syscall.Statfs(mp, &st))
	if st.Blocks == 0 || st.Bfree == 0 || st.Bfree > st.Blocks || st.Namelen != 255 {
		t.Errorf("statfs: blocks %d free %d namelen %d", st.Blocks, st.Bfree, st.Namelen)
	}
	p := filepath.Join(mp, "x")
	must(t, os.WriteFile(p, nil, 0o644))
	must(t, syscall.Setxattr(p, "user.a", []byte("1"), 0))
	must(t, syscall.Setxattr(p, "user.b", []byte("two"), 0))
	if err := syscall.Setxattr(p, "user.a", []byte("x"), 1 /* XATTR_CREATE */); !errors.Is(err, syscall.EEXIST) {
		t.Errorf("XATTR_CREATE on a set name: %v", err)
	}
	buf := make([]byte, 64)
	n, err := syscall.Getxattr(p, "user.b", buf)
	if err != nil || string(buf[:n]) != "two" {
		t.Errorf("getxattr: %q %v", buf[:n], err)
	}
	n, err = syscall.Listxattr(p, buf)
	if err != nil || string(buf[:n]) != "user.a\x00user.b\x00" {
		t.Errorf("listxattr: %q %v", buf[:n], err)
	}
	must(t, syscall.Removexattr(p, "user.a"))
	if _, err := syscall.Getxattr(p, "user.a", buf); !errors.Is(err, syscall.ENODATA) {
		t.Errorf("getxattr after remove: %v", err)
	}
}
