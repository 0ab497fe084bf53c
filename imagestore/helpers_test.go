package imagestore

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/internal/testcluster"
	"github.com/strata-hpc/strata/proto/stratapb"
)

func newStore(t *testing.T) (*Store, *client.Client) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("image tests keep owners and device nodes: they run as root")
	}
	c := testcluster.New(t, testcluster.Options{Meta: 1, Data: 6})
	cl, err := client.New(client.Config{MetaAddrs: c.MetaAddrs(), TLS: c.ClientTLS(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return New(cl, nil), cl
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// capV2 is a security.capability value (VFS_CAP_REVISION_2) granting
// cap_net_raw, effective, as `setcap cap_net_raw+ep` writes it.
var capV2 = []byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

// makeRootfs builds a small tree with every kind of entry an image keeps:
// odd modes and owners, setuid, symlinks (absolute and relative), hard
// links, a FIFO, a socket-less set of device nodes, user xattrs and a file
// capability; plus the real /bin/sh with the libraries it needs.
func makeRootfs(t *testing.T) string {
	t.Helper()
	r := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"etc/skel", "usr/bin", "dev", "var/empty", "lib64", "lib/x86_64-linux-gnu"} {
		must(t, os.MkdirAll(filepath.Join(r, d), 0o755))
	}
	write := func(p, data string, mode os.FileMode, uid, gid int) {
		full := filepath.Join(r, p)
		must(t, os.WriteFile(full, []byte(data), 0o600))
		must(t, os.Lchown(full, uid, gid)) // before chmod: chown clears setuid
		must(t, unix.Chmod(full, uint32(mode)))
	}
	write("etc/os-release", "PRETTY_NAME=\"Strata test\"\nID=strata\n", 0o644, 0, 0)
	write("etc/shadow", "root:*:19000:0:99999:7:::\n", 0o640, 0, 42)
	write("usr/bin/su", "not really su", 0o4755, 0, 0)
	write("usr/bin/ping", "not really ping", 0o755, 0, 0)
	write("etc/skel/.bashrc", strings.Repeat("# comment line\n", 5000), 0o644, 1000, 1000)
	write("var/empty/.keep", "", 0o600, 65534, 65534)
	must(t, unix.Chmod(filepath.Join(r, "var/empty"), 0o1777))
	must(t, os.Link(filepath.Join(r, "usr/bin/ping"), filepath.Join(r, "usr/bin/ping6")))
	must(t, os.Symlink("/usr/bin/su", filepath.Join(r, "usr/bin/su-abs")))
	must(t, os.Symlink("../etc/os-release", filepath.Join(r, "usr/os-release")))
	must(t, unix.Mkfifo(filepath.Join(r, "dev/initctl"), 0o600))
	must(t, unix.Mknod(filepath.Join(r, "dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(t, unix.Mknod(filepath.Join(r, "dev/loop0"), unix.S_IFBLK|0o660, int(unix.Mkdev(7, 0))))
	must(t, unix.Lchown(filepath.Join(r, "dev/loop0"), 0, 6))
	must(t, unix.Chmod(filepath.Join(r, "dev/null"), 0o666))
	must(t, unix.Chmod(filepath.Join(r, "dev/loop0"), 0o660))
	must(t, unix.Setxattr(filepath.Join(r, "etc/os-release"), "user.mime_type", []byte("text/plain"), 0))
	must(t, unix.Setxattr(filepath.Join(r, "usr/bin/ping"), "security.capability", capV2, 0))
	copyWithLibs(t, "/bin/sh", r)
	copyWithLibs(t, "/bin/ls", r)
	copyWithLibs(t, "/bin/cat", r)
	return r
}

// copyWithLibs copies a program and the shared libraries ldd lists into
// root at the paths the loader asks for (the host's /bin -> usr/bin
// becomes a real directory there).
func copyWithLibs(t *testing.T, prog, root string) {
	t.Helper()
	files := []string{prog}
	out, err := exec.Command("ldd", prog).Output()
	must(t, err)
	for _, line := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(line) {
			if strings.HasPrefix(f, "/") {
				files = append(files, f)
			}
		}
	}
	for _, f := range files {
		dst := filepath.Join(root, f)
		must(t, os.MkdirAll(filepath.Dir(dst), 0o755))
		b, err := os.ReadFile(f)
		must(t, err)
		must(t, os.WriteFile(dst, b, 0o755))
	}
}

// describeLocal lists a local tree, one line per entry.
func describeLocal(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	inodes := map[uint64]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		must(t, unix.Lstat(p, &st))
		kind, extra := "", ""
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			kind = "dir"
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			must(t, err)
			kind, extra = "file", fmt.Sprintf(" size=%d sum=%x", len(b), sum(b))
			if first, ok := inodes[st.Ino]; ok {
				extra += " link-of=" + first
			} else if st.Nlink > 1 {
				inodes[st.Ino] = rel
			}
		case unix.S_IFLNK:
			target, _ := os.Readlink(p)
			kind, extra = "symlink", " -> "+target
		case unix.S_IFCHR:
			kind, extra = "char", fmt.Sprintf(" %d,%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		case unix.S_IFBLK:
			kind, extra = "block", fmt.Sprintf(" %d,%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		case unix.S_IFIFO:
			kind = "fifo"
		}
		mode := st.Mode & 0o7777
		if kind == "symlink" {
			mode = 0o777
		}
		lines = append(lines, fmt.Sprintf("%s %s %#o %d:%d%s%s", rel, kind, mode, st.Uid, st.Gid, extra, localXattrs(p)))
		return nil
	})
	must(t, err)
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func localXattrs(p string) string {
	buf := make([]byte, 4096)
	n, _ := unix.Llistxattr(p, buf)
	if n <= 0 {
		return ""
	}
	names := splitNul(buf[:n])
	sort.Strings(names)
	var out []string
	for _, name := range names {
		v, _ := getXattr(p, name)
		out = append(out, fmt.Sprintf("%s=%x", name, v))
	}
	return " xattrs=" + strings.Join(out, ",")
}

func sum(b []byte) uint32 {
	var h uint32 = 2166136261
	for _, c := range b {
		h = (h ^ uint32(c)) * 16777619
	}
	return h
}

// describeStrata lists a tree in Strata in describeLocal's format.
func describeStrata(t *testing.T, cl *client.Client, root string) string {
	t.Helper()
	ctx := context.Background()
	a, err := cl.Lstat(ctx, root)
	must(t, err)
	var lines []string
	inodes := map[uint64]string{}
	var walk func(rel string, a *stratapb.Attr)
	walk = func(rel string, a *stratapb.Attr) {
		kind, extra := "", ""
		switch a.GetType() {
		case stratapb.FileType_DIRECTORY:
			kind = "dir"
		case stratapb.FileType_REGULAR:
			var buf bytes.Buffer
			_, err := cl.Get(ctx, root+"/"+rel, &buf)
			must(t, err)
			kind, extra = "file", fmt.Sprintf(" size=%d sum=%x", buf.Len(), sum(buf.Bytes()))
			if first, ok := inodes[a.GetIno()]; ok {
				extra += " link-of=" + first
			} else if a.GetNlink() > 1 {
				inodes[a.GetIno()] = rel
			}
		case stratapb.FileType_SYMLINK:
			kind, extra = "symlink", " -> "+a.GetSymlinkTarget()
		case stratapb.FileType_CHARDEV:
			kind, extra = "char", fmt.Sprintf(" %d,%d", unix.Major(uint64(a.GetRdev())), unix.Minor(uint64(a.GetRdev())))
		case stratapb.FileType_BLOCKDEV:
			kind, extra = "block", fmt.Sprintf(" %d,%d", unix.Major(uint64(a.GetRdev())), unix.Minor(uint64(a.GetRdev())))
		case stratapb.FileType_FIFO:
			kind = "fifo"
		}
		mode := a.GetMode()
		if kind == "symlink" {
			mode = 0o777
		}
		lines = append(lines, fmt.Sprintf("%s %s %#o %d:%d%s%s", rel, kind, mode, a.GetUid(), a.GetGid(), extra, strataXattrs(t, cl, a.GetIno())))
		if a.GetType() != stratapb.FileType_DIRECTORY {
			return
		}
		ents, err := cl.ReadDirAt(ctx, a.GetIno(), true)
		must(t, err)
		for _, e := range ents {
			walk(filepath.Join(rel, e.GetName()), e.GetAttr())
		}
	}
	walk(".", a)
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func strataXattrs(t *testing.T, cl *client.Client, ino uint64) string {
	names, err := cl.ListXattr(context.Background(), ino)
	must(t, err)
	if len(names) == 0 {
		return ""
	}
	sort.Strings(names)
	var out []string
	for _, n := range names {
		v, err := cl.GetXattr(context.Background(), ino, n)
		must(t, err)
		out = append(out, fmt.Sprintf("%s=%x", n, v))
	}
	return " xattrs=" + strings.Join(out, ",")
}

func mustRef(t *testing.T, s string) Ref {
	t.Helper()
	r, err := ParseRef(s)
	must(t, err)
	return r
}

func importPath(t *testing.T, s *Store, ref, src string) *ImportResult {
	t.Helper()
	source, err := OpenSource(src)
	must(t, err)
	defer source.Close()
	res, err := s.Import(context.Background(), mustRef(t, ref), source, ImportOptions{})
	if err != nil {
		t.Fatalf("import %s from %s: %v", ref, src, err)
	}
	return res
}

// tarball packs dir with GNU tar (xattrs and capabilities included), then
// compresses it with compress ("" for none, "gzip", "zstd").
func tarball(t *testing.T, dir, compress string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "rootfs.tar")
	cmd := exec.Command("tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-C", dir, "-cf", out, ".")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, b)
	}
	if compress != "" {
		if b, err := exec.Command(compress, "-q", out).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", compress, err, b)
		}
		out += map[string]string{"gzip": ".gz", "zstd": ".zst"}[compress]
		if compress == "zstd" {
			os.Remove(strings.TrimSuffix(out, ".zst"))
		}
	}
	return out
}

var _ = syscall.ENOENT
