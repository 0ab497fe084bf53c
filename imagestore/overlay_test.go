package imagestore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-hpc/strata/client"
)

// makeUpper builds an overlayfs upper layer by hand: changed files, a
// whiteout (char 0/0) for a deleted file, an opaque directory, a symlink,
// a hard link, odd owners and modes, xattrs.
func makeUpper(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	u := filepath.Join(dir, "upper")
	must(t, os.MkdirAll(filepath.Join(u, "etc/ssh"), 0o755))
	must(t, os.MkdirAll(filepath.Join(u, "var/lib/opaque"), 0o755))
	must(t, os.WriteFile(filepath.Join(u, "etc/hostname"), []byte("node1\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(u, "etc/ssh/key"), []byte(strings.Repeat("k", 300000)), 0o600))
	must(t, os.Lchown(filepath.Join(u, "etc/ssh/key"), 0, 101))
	must(t, unix.Mknod(filepath.Join(u, "etc/motd"), unix.S_IFCHR, 0)) // whiteout
	must(t, unix.Setxattr(filepath.Join(u, "var/lib/opaque"), "trusted.overlay.opaque", []byte("y"), 0))
	must(t, os.WriteFile(filepath.Join(u, "var/lib/opaque/new"), []byte("n"), 0o640))
	must(t, os.Symlink("/etc/hostname", filepath.Join(u, "etc/name")))
	must(t, os.Link(filepath.Join(u, "etc/hostname"), filepath.Join(u, "etc/hostname.bak")))
	must(t, unix.Setxattr(filepath.Join(u, "etc/hostname"), "user.note", []byte("set by node1"), 0))
	return dir
}

func describeUpper(t *testing.T, dir string) string {
	return describeLocal(t, filepath.Join(dir, "upper"))
}

// TestOverlayPushPull: an upper layer (whiteouts, opaque directories,
// links, xattrs) pushed and pulled elsewhere comes back exactly; a second
// push sends only what changed; per-node sub-overlays are separate, and a
// node that never pushed starts empty.
func TestOverlayPushPull(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	dir := makeUpper(t)
	want := describeUpper(t, dir)
	if !strings.Contains(want, "etc/motd char 0 0:0 0,0") || !strings.Contains(want, "trusted.overlay.opaque=79") {
		t.Fatalf("the test upper layer lacks a whiteout or an opaque dir:\n%s", want)
	}
	if _, err := s.Push(ctx, "ov", "", dir); !errors.Is(err, ErrNotFound) {
		t.Fatalf("push to a missing overlay: %v", err)
	}
	must(t, s.CreateOverlay(ctx, "ov", client.Owner{Uid: 1000, Gid: 1000}))
	if err := s.CreateOverlay(ctx, "ov", client.Owner{}); !errors.Is(err, ErrExists) {
		t.Errorf("create twice: %v", err)
	}
	first, err := s.Push(ctx, "ov", "", dir)
	must(t, err)
	if !first.Full || first.Written != 6 { // the non-directories
		t.Errorf("first push: %+v", first)
	}

	other := t.TempDir()
	_, err = s.Pull(ctx, "ov", "", other, PullOptions{})
	must(t, err)
	if got := describeUpper(t, other); got != want {
		t.Fatalf("pulled upper layer differs\n--- pulled:\n%s\n--- pushed:\n%s", got, want)
	}

	// Incremental: one file changed, one removed.
	must(t, os.WriteFile(filepath.Join(dir, "upper/var/lib/opaque/new"), []byte("changed"), 0o640))
	must(t, os.Remove(filepath.Join(dir, "upper/etc/name")))
	second, err := s.Push(ctx, "ov", "", dir)
	must(t, err)
	if second.Full || second.Written != 1 || second.Removed != 1 || second.Bytes != int64(len("changed")) {
		t.Errorf("second push: %+v, want 1 written (7 bytes), 1 removed, incremental", second)
	}
	nothing, err := s.Push(ctx, "ov", "", dir)
	must(t, err)
	if nothing.Written != 0 || nothing.Removed != 0 || nothing.Bytes != 0 {
		t.Errorf("push with no change: %+v", nothing)
	}
	if _, err := s.Pull(ctx, "ov", "", other, PullOptions{}); !errors.Is(err, ErrExists) {
		t.Errorf("pull over a non-empty upper layer: %v", err)
	}
	_, err = s.Pull(ctx, "ov", "", other, PullOptions{Force: true})
	must(t, err)
	if got, want := describeUpper(t, other), describeUpper(t, dir); got != want {
		t.Errorf("pull after the incremental push differs\n--- pulled:\n%s\n--- local:\n%s", got, want)
	}
	// A push from the pulled copy (another node) compares everything and
	// finds nothing to do.
	fromOther, err := s.Push(ctx, "ov", "", other)
	must(t, err)
	if fromOther.Written != 0 || fromOther.Removed != 0 {
		t.Errorf("push of an identical pulled copy: %+v", fromOther)
	}

	// Per-node sub-overlays.
	node1 := makeUpper(t)
	must(t, os.WriteFile(filepath.Join(node1, "upper/etc/role"), []byte("head"), 0o644))
	_, err = s.Push(ctx, "ov", "node1", node1)
	must(t, err)
	back := t.TempDir()
	_, err = s.Pull(ctx, "ov", "node1", back, PullOptions{})
	must(t, err)
	if got, want := describeUpper(t, back), describeUpper(t, node1); got != want {
		t.Errorf("node1's sub-overlay differs\n%s\n---\n%s", got, want)
	}
	fresh := t.TempDir()
	res, err := s.Pull(ctx, "ov", "node4", fresh, PullOptions{})
	must(t, err)
	if !res.Empty || !emptyDir(filepath.Join(fresh, "upper")) {
		t.Errorf("node4 never pushed: %+v", res)
	}
	ovs, err := s.ListOverlays(ctx)
	must(t, err)
	if len(ovs) != 1 || strings.Join(ovs[0].Subs, ",") != "default,nodes/node1" || ovs[0].Uid != 1000 {
		t.Errorf("list: %+v", ovs)
	}
	must(t, s.RemoveOverlay(ctx, "ov"))
	if ovs, _ := s.ListOverlays(ctx); len(ovs) != 0 {
		t.Errorf("list after rm: %+v", ovs)
	}
}
