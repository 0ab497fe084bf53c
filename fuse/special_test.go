package fuse

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMknodAndFrozen: device nodes (an overlayfs whiteout is char 0/0),
// FIFOs and sockets made through the kernel keep their type and device
// number; a frozen tree refuses changes through the mount with EPERM.
func TestMknodAndFrozen(t *testing.T) {
	needFUSE(t)
	c := newCluster(t, nil)
	mp := mount(t, c, nil)
	// Modes without group/other write bits: the kernel applies the umask.
	for _, m := range []struct {
		name string
		mode uint32
		dev  int
	}{
		{"whiteout", syscall.S_IFCHR | 0o600, 0},
		{"null", syscall.S_IFCHR | 0o644, int(unix.Mkdev(1, 3))},
		{"sda", syscall.S_IFBLK | 0o640, int(unix.Mkdev(8, 0))},
		{"fifo", syscall.S_IFIFO | 0o644, 0},
		{"sock", syscall.S_IFSOCK | 0o755, 0},
	} {
		p := filepath.Join(mp, m.name)
		must(t, syscall.Mknod(p, m.mode, m.dev))
		var st syscall.Stat_t
		must(t, syscall.Lstat(p, &st))
		if st.Mode != m.mode || st.Rdev != uint64(m.dev) {
			t.Errorf("%s: mode %o rdev %d, want %o %d", m.name, st.Mode, st.Rdev, m.mode, m.dev)
		}
	}
	// The type survives a fresh mount (it comes from the metadata service).
	mp2 := mount(t, c, nil)
	var st syscall.Stat_t
	must(t, syscall.Lstat(filepath.Join(mp2, "null"), &st))
	if st.Mode&syscall.S_IFMT != syscall.S_IFCHR || st.Rdev != uint64(unix.Mkdev(1, 3)) {
		t.Errorf("null on a second mount: mode %o rdev %d", st.Mode, st.Rdev)
	}

	must(t, os.MkdirAll(filepath.Join(mp, "img", "etc"), 0o755))
	must(t, os.WriteFile(filepath.Join(mp, "img", "etc", "f"), []byte("data"), 0o644))
	cl := newClient(t, c)
	if _, err := cl.FreezePath(t.Context(), "/img"); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"create": os.WriteFile(filepath.Join(mp2, "img", "etc", "g"), nil, 0o644),
		"write":  os.WriteFile(filepath.Join(mp2, "img", "etc", "f"), []byte("x"), 0o644),
		"chmod":  os.Chmod(filepath.Join(mp2, "img", "etc", "f"), 0o600),
		"remove": os.Remove(filepath.Join(mp2, "img", "etc", "f")),
		"mknod":  syscall.Mknod(filepath.Join(mp2, "img", "wh"), syscall.S_IFCHR, 0),
	} {
		if !errors.Is(err, syscall.EPERM) {
			t.Errorf("%s in a frozen tree through FUSE: %v, want EPERM", name, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(mp2, "img", "etc", "f")); err != nil || string(b) != "data" {
		t.Errorf("read in a frozen tree: %q %v", b, err)
	}
}
