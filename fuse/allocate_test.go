package fuse

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestFallocateAndSetgid: fallocate mode 0 grows a file (the new range
// reads as zeros, the old bytes stay), KEEP_SIZE keeps its size, other
// modes answer EOPNOTSUPP; a file and a directory made in a set-group-ID
// directory take its group, and the directory the bit.
func TestFallocateAndSetgid(t *testing.T) {
	c := newCluster(t, smallChunks())
	mp := mount(t, c, nil)
	p := filepath.Join(mp, "f")
	must(t, os.WriteFile(p, []byte("hello"), 0o644))
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	must(t, syscall.Fallocate(int(f.Fd()), 0, 0, 200<<10))
	must(t, syscall.Fallocate(int(f.Fd()), 1 /* KEEP_SIZE */, 0, 1<<20))
	if err := syscall.Fallocate(int(f.Fd()), 0x3 /* PUNCH_HOLE|KEEP_SIZE */, 0, 10); err != syscall.EOPNOTSUPP {
		t.Errorf("punch hole: %v, want EOPNOTSUPP", err)
	}
	must(t, f.Close())
	got, err := os.ReadFile(p)
	must(t, err)
	want := append([]byte("hello"), make([]byte, 200<<10-5)...)
	if !bytes.Equal(got, want) {
		t.Fatalf("after fallocate: %d bytes, want %d (hello then zeros)", len(got), len(want))
	}

	d := filepath.Join(mp, "proj")
	must(t, os.Mkdir(d, 0o755))
	must(t, os.Chown(d, 0, 4242))
	must(t, os.Chmod(d, 0o775|os.ModeSetgid)) // os.Chmod ignores a bare 0o2000
	must(t, os.WriteFile(filepath.Join(d, "x"), nil, 0o644))
	must(t, os.Mkdir(filepath.Join(d, "sub"), 0o755))
	for _, name := range []string{"x", "sub"} {
		st, err := os.Stat(filepath.Join(d, name))
		must(t, err)
		sys := st.Sys().(*syscall.Stat_t)
		if sys.Gid != 4242 {
			t.Errorf("%s: gid %d, want the directory's 4242", name, sys.Gid)
		}
		if name == "sub" && st.Mode()&os.ModeSetgid == 0 {
			t.Errorf("sub: mode %v, want the setgid bit inherited", st.Mode())
		}
	}
}
