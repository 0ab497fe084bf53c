package fuse

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOverlayConformance applies one sequence of changes to a Strata image
// mount and to a plain kernel overlayfs over a local copy of the same
// tree, and requires the two merged trees to be identical: names, types,
// modes, sizes, contents, link counts, symlink targets, user xattrs, and
// the error (if any) of every step.
func TestOverlayConformance(t *testing.T) {
	c := newCluster(t, nil)
	whole := mount(t, c, nil)
	local := filepath.Join(t.TempDir(), "lower")
	buildTree(t, filepath.Join(whole, "img"), local)
	cl := newClient(t, c)
	strata := mountImageAt(t, cl, "/img", t.TempDir()).Mountpoint()
	kernel := mountPlainOverlay(t, local)

	stepsS, stepsK := overlayOps(strata), overlayOps(kernel)
	for i := range stepsS {
		errS, errK := stepsS[i].do(), stepsK[i].do()
		if errnoOf(errS) != errnoOf(errK) {
			t.Errorf("step %q: strata %v, kernel overlayfs %v", stepsS[i].name, errS, errK)
		}
	}
	a, b := snapshotTree(t, strata), snapshotTree(t, kernel)
	if a != b {
		t.Errorf("trees differ\n--- strata image mount:\n%s\n--- kernel overlayfs over a local copy:\n%s", a, b)
	}
}

// mountPlainOverlay mounts overlayfs over the local directory lower, with
// fresh upper and work directories, at a new mount point.
func mountPlainOverlay(t *testing.T, lower string) string {
	t.Helper()
	d := t.TempDir()
	must(t, os.Mkdir(filepath.Join(d, "upper"), 0o755))
	must(t, os.Mkdir(filepath.Join(d, "work"), 0o755))
	mp := mountDir(t)
	data := fmt.Sprintf("lowerdir=%s,upperdir=%s/upper,workdir=%s/work", lower, d, d)
	if err := unix.Mount("overlay", mp, "overlay", 0, data); err != nil {
		t.Fatalf("mount overlayfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mp, unix.MNT_DETACH) })
	return mp
}

type overlayOp struct {
	name string
	do   func() error
}

// overlayOps is the sequence of the issue: create, modify an image file,
// delete one, delete and recreate a directory, rename an image file, hard
// link, chmod, xattr; and a few that mix them.
func overlayOps(root string) []overlayOp {
	p := func(s string) string { return filepath.Join(root, s) }
	return []overlayOp{
		{"create", func() error { return os.WriteFile(p("new"), []byte("fresh"), 0o640) }},
		{"create in image dir", func() error { return os.WriteFile(p("etc/added"), []byte("a"), 0o600) }},
		{"modify image file", func() error { return appendFile(p("etc/sub/conf"), "more") }},
		{"truncate image file", func() error { return os.Truncate(p("etc/os-release"), 4) }},
		{"delete image file", func() error { return os.Remove(p("bin/tool")) }},
		{"delete image dir", func() error { return os.RemoveAll(p("gone")) }},
		{"recreate dir", func() error { return os.Mkdir(p("gone"), 0o711) }},
		{"file in recreated dir", func() error { return os.WriteFile(p("gone/z"), []byte("z"), 0o644) }},
		{"rename image file", func() error { return os.Rename(p("etc/os-release"), p("etc/os-release.old")) }},
		{"rename image dir", func() error { return os.Rename(p("etc/sub"), p("etc/sub2")) }},
		{"hard link image file", func() error { return os.Link(p("bin/tool2"), p("bin/tool3")) }},
		{"hard link new file", func() error { return os.Link(p("new"), p("new-link")) }},
		{"chmod image file", func() error { return os.Chmod(p("bin/tool2"), 0o700) }},
		{"chmod image dir", func() error { return os.Chmod(p("etc"), 0o750) }},
		{"xattr on image file", func() error { return unix.Setxattr(p("etc/os-release.old"), "user.changed", []byte("1"), 0) }},
		{"remove image xattr", func() error { return unix.Removexattr(p("etc/os-release.old"), "user.origin") }},
		{"symlink", func() error { return os.Symlink("new", p("new-sym")) }},
		{"replace symlink", func() error { return os.Rename(p("new-sym"), p("release")) }},
		{"delete missing", func() error { return os.Remove(p("no-such")) }},
		{"rmdir not empty", func() error { return syscall.Rmdir(p("etc")) }},
	}
}

func appendFile(p, s string) error {
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// snapshotTree describes a tree, one line per entry, sorted by path.
func snapshotTree(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%s mode=%#o nlink=%d uid=%d gid=%d", rel, st.Mode, st.Nlink, st.Uid, st.Gid)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" size=%d data=%q", st.Size, shorten(b))
		case unix.S_IFLNK:
			target, _ := os.Readlink(p)
			line += " -> " + target
		}
		lines = append(lines, line+userXattrs(p))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func shorten(b []byte) []byte {
	if len(b) > 64 {
		return append(append([]byte{}, b[:32]...), fmt.Sprintf("...(%d bytes, sum %d)", len(b), bytes.Count(b, []byte("c")))...)
	}
	return b
}

// userXattrs lists the user.* attributes of p (overlayfs keeps its own
// trusted.overlay.* to itself).
func userXattrs(p string) string {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if err != nil || n == 0 {
		return ""
	}
	var out []string
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if !strings.HasPrefix(name, "user.") {
			continue
		}
		v, _ := getxattr(p, name)
		out = append(out, name+"="+v)
	}
	sort.Strings(out)
	return " xattrs=" + strings.Join(out, ",")
}
