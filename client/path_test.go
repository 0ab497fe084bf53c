package client

import (
	"context"
	"errors"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/strata-hpc/strata/proto/stratapb"
)

func TestSplitPath(t *testing.T) {
	name255 := strings.Repeat("n", 255)
	name256 := strings.Repeat("n", 256)
	path4096 := "/" + strings.Repeat("a/", 2047) + "b" // 4096 bytes
	path4097 := path4096 + "c"
	tests := []struct {
		path  string
		want  []string
		errno syscall.Errno
		msg   string
	}{
		{path: "/", want: nil},
		{path: "/a", want: []string{"a"}},
		{path: "/a/b/c", want: []string{"a", "b", "c"}},
		{path: "//a///b/", want: []string{"a", "b"}},
		{path: "/a/./b/.", want: []string{"a", "b"}},
		{path: "/a/../b", want: []string{"b"}},
		{path: "/a/b/../..", want: nil},
		{path: "/" + name255, want: []string{name255}},
		{path: path4096, want: strings.Split(path4096[1:], "/")},
		{path: "", errno: syscall.EINVAL, msg: "empty path"},
		{path: "a/b", errno: syscall.EINVAL, msg: "absolute"},
		{path: "./a", errno: syscall.EINVAL, msg: "absolute"},
		{path: "/..", errno: syscall.EINVAL, msg: "above the root"},
		{path: "/a/../../etc", errno: syscall.EINVAL, msg: "above the root"},
		{path: "/a/b/../../..", errno: syscall.EINVAL, msg: "above the root"},
		{path: "/a\x00b", errno: syscall.EINVAL, msg: "NUL"},
		{path: "/" + name256, errno: syscall.ENAMETOOLONG, msg: "256 bytes"},
		{path: "/a/" + name256 + "/..", errno: syscall.ENAMETOOLONG, msg: "256 bytes"},
		{path: path4097, errno: syscall.ENAMETOOLONG, msg: "4097 bytes"},
	}
	for _, tt := range tests {
		got, err := splitPath("stat", tt.path)
		label := shortQuote(tt.path)
		if tt.errno != 0 {
			if !errors.Is(err, tt.errno) {
				t.Errorf("%s: err = %v, want %v", label, err, tt.errno)
			} else if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("%s: error %q does not mention %q", label, err, tt.msg)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %v, %v; want %v", label, got, err, tt.want)
		}
	}
}

func TestCheckName(t *testing.T) {
	for _, name := range []string{"", ".", "..", "a/b", "a\x00", strings.Repeat("x", 256)} {
		if checkName("lookup", 1, name) == nil {
			t.Errorf("checkName(%q) accepted", shortQuote(name))
		}
	}
	if err := checkName("lookup", 1, strings.Repeat("x", 255)); err != nil {
		t.Errorf("255-byte name rejected: %v", err)
	}
}

// testResolveSymlinks walks paths through symlinks. Absolute targets
// name the test's directory: "/../../<root>/a" climbs above the namespace
// root, which stays there, and comes down again.
func testResolveSymlinks(t *testing.T, e *env) {
	ctx := ctxT(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(e.c.MkdirAll(ctx, e.p("/a/b/c"), 0o755))
	e.put("/a/b/c/file", []byte("hello"))
	must(e.c.Symlink(ctx, "b/c", e.p("/a/rel")))               // relative
	must(e.c.Symlink(ctx, e.p("/a/b"), e.p("/abs")))           // absolute
	must(e.c.Symlink(ctx, "../../a/b/c/file", e.p("/a/b/up"))) // climbs with ..
	must(e.c.Symlink(ctx, "/../.."+e.p("/a"), e.p("/above")))  // .. at the root stays there
	must(e.c.Symlink(ctx, "loop2", e.p("/loop1")))
	must(e.c.Symlink(ctx, "loop1", e.p("/loop2")))
	must(e.c.Symlink(ctx, e.p("/nowhere"), e.p("/dangling")))
	must(e.c.Symlink(ctx, e.p("/a/b/c/file"), e.p("/tofile")))

	fileIno := func() uint64 {
		a, err := e.c.Lstat(ctx, e.p("/a/b/c/file"))
		must(err)
		return a.Ino
	}()
	tests := []struct {
		path   string
		follow bool
		typ    stratapb.FileType
		ino    uint64
		errno  syscall.Errno
	}{
		{path: "/a/rel/file", follow: true, ino: fileIno},
		{path: "/abs/c/file", follow: false, ino: fileIno},
		{path: "/a/b/up", follow: true, ino: fileIno},
		{path: "/a/b/up", follow: false, typ: stratapb.FileType_SYMLINK},
		{path: "/above/b/c/file", follow: true, ino: fileIno},
		{path: "/abs", follow: true, typ: stratapb.FileType_DIRECTORY},
		{path: "/abs", follow: false, typ: stratapb.FileType_SYMLINK},
		{path: "/loop1", follow: true, errno: syscall.ELOOP},
		{path: "/loop1", follow: false, typ: stratapb.FileType_SYMLINK},
		{path: "/loop1/x", follow: false, errno: syscall.ELOOP},
		{path: "/dangling", follow: true, errno: syscall.ENOENT},
		{path: "/dangling", follow: false, typ: stratapb.FileType_SYMLINK},
		{path: "/tofile/x", follow: true, errno: syscall.ENOTDIR},
		{path: "/a/b/c/file/x", follow: true, errno: syscall.ENOTDIR},
		{path: "/a/missing/x", follow: true, errno: syscall.ENOENT},
	}
	for _, tt := range tests {
		stat := e.c.Lstat
		if tt.follow {
			stat = e.c.Stat
		}
		attr, err := stat(ctx, e.p(tt.path))
		switch {
		case tt.errno != 0:
			if !errors.Is(err, tt.errno) {
				t.Errorf("%s (follow=%v): err = %v, want %v", tt.path, tt.follow, err, tt.errno)
			}
		case err != nil:
			t.Errorf("%s (follow=%v): %v", tt.path, tt.follow, err)
		case tt.ino != 0 && attr.Ino != tt.ino:
			t.Errorf("%s (follow=%v): ino %d, want %d", tt.path, tt.follow, attr.Ino, tt.ino)
		case tt.typ != 0 && attr.Type != tt.typ:
			t.Errorf("%s (follow=%v): type %v, want %v", tt.path, tt.follow, attr.Type, tt.typ)
		}
	}
	// The namespace root itself.
	for _, stat := range []func(context.Context, string) (*stratapb.Attr, error){e.c.Stat, e.c.Lstat} {
		if attr, err := stat(ctx, "/"); err != nil || attr.Ino != rootIno || attr.Type != stratapb.FileType_DIRECTORY {
			t.Errorf("stat /: %v, %v; want the root directory (inode %d)", attr, err, rootIno)
		}
	}
}

// testSymlinkHopLimit: 40 hops resolve, 41 fail with ELOOP.
func testSymlinkHopLimit(t *testing.T, e *env) {
	ctx := ctxT(t)
	if _, err := e.c.Mkdir(ctx, e.p("/target"), 0o755); err != nil {
		t.Fatal(err)
	}
	prev := e.p("/target")
	for i := range 41 {
		link := e.p("/l" + strings.Repeat("x", i))
		if err := e.c.Symlink(ctx, prev, link); err != nil {
			t.Fatal(err)
		}
		_, err := e.c.Stat(ctx, link)
		if hops := i + 1; hops <= maxSymlinkHops && err != nil {
			t.Fatalf("%d hops: %v", hops, err)
		} else if hops > maxSymlinkHops && !errors.Is(err, syscall.ELOOP) {
			t.Fatalf("%d hops: err = %v, want ELOOP", hops, err)
		}
		prev = link
	}
}

// FuzzSplitPath checks the user path rules against a model: a path
// splitPath accepts is absolute, its components are real names (no "",
// ".", "..", '/', NUL, none over 255 bytes) and it never climbs above the
// root; anything else is a clear EINVAL or ENAMETOOLONG.
func FuzzSplitPath(f *testing.F) {
	for _, s := range []string{"/", "/a/b", "a", "/../x", "/a/../../b", "/a\x00", "//a//./b/", "/" + strings.Repeat("x", 256), "/" + strings.Repeat("a/", 2100), ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		parts, err := splitPath("fuzz", p)
		if err != nil {
			if !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENAMETOOLONG) {
				t.Fatalf("splitPath(%q): %v is neither EINVAL nor ENAMETOOLONG", p, err)
			}
			return
		}
		if p[0] != '/' || len(p) > maxPathLen {
			t.Fatalf("splitPath accepted %q", p)
		}
		for _, c := range parts {
			if c == "" || c == "." || c == ".." || len(c) > maxNameLen || strings.ContainsAny(c, "/\x00") {
				t.Fatalf("splitPath(%q) gave component %q", p, c)
			}
			if checkName("fuzz", 1, c) != nil {
				t.Fatalf("splitPath(%q) gave %q, which checkName refuses", p, c)
			}
		}
	})
}
