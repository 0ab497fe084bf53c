package client

import (
	"errors"
	"fmt"
	"slices"
	"syscall"
	"testing"

	"github.com/strata-hpc/strata/proto/stratapb"
)

func names(entries []*stratapb.DirEntry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.Name)
	}
	return out
}

func TestNamespaceOps(t *testing.T) {
	e := newEnv(t, 6, testPolicy())
	ctx := ctxT(t)
	c := e.c
	check := func(what string, err error, want syscall.Errno) {
		t.Helper()
		if want == 0 && err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if want != 0 && !errors.Is(err, want) {
			t.Fatalf("%s: err = %v, want %v", what, err, want)
		}
	}
	_, err := c.Mkdir(ctx, "/d", 0o755)
	check("mkdir /d", err, 0)
	_, err = c.Mkdir(ctx, "/d", 0o755)
	check("mkdir /d again", err, syscall.EEXIST)
	_, err = c.Mkdir(ctx, "/", 0o755)
	check("mkdir /", err, syscall.EEXIST)
	_, err = c.Mkdir(ctx, "/nope/x", 0o755)
	check("mkdir under missing parent", err, syscall.ENOENT)
	check("mkdirall", c.MkdirAll(ctx, "/d/e/f", 0o755), 0)
	check("mkdirall existing", c.MkdirAll(ctx, "/d/e/f", 0o755), 0)
	check("mkdirall root", c.MkdirAll(ctx, "/", 0o755), 0)
	e.put("/d/file", []byte("x"))
	check("mkdirall over a file", c.MkdirAll(ctx, "/d/file/g", 0o755), syscall.ENOTDIR)
	_, err = c.Mkdir(ctx, "/d/file/g", 0o755)
	check("mkdir under a file", err, syscall.ENOTDIR)

	for i := range 10 {
		e.put(fmt.Sprintf("/d/e/f%02d", i), nil)
	}
	list, err := c.ReadDir(ctx, "/d/e")
	check("readdir", err, 0)
	want := []string{"f", "f00", "f01", "f02", "f03", "f04", "f05", "f06", "f07", "f08", "f09"}
	if got := names(list); !slices.Equal(got, want) {
		t.Fatalf("readdir (pages of 3) = %v, want %v", got, want)
	}
	if list[0].Attr == nil || list[0].Attr.Type != stratapb.FileType_DIRECTORY {
		t.Fatalf("readdir entry has no attributes: %v", list[0])
	}
	_, err = c.ReadDir(ctx, "/d/file")
	check("readdir of a file", err, syscall.ENOTDIR)

	check("remove non-empty dir", c.Remove(ctx, "/d/e"), syscall.ENOTEMPTY)
	check("remove file", c.Remove(ctx, "/d/e/f00"), 0)
	check("remove empty dir", c.Remove(ctx, "/d/e/f"), 0)
	check("remove missing", c.Remove(ctx, "/d/e/f00"), syscall.ENOENT)
	check("remove root", c.Remove(ctx, "/"), syscall.EBUSY)

	check("rename", c.Rename(ctx, "/d/e/f01", "/d/moved"), 0)
	_, err = c.Stat(ctx, "/d/moved")
	check("stat renamed", err, 0)
	_, err = c.Stat(ctx, "/d/e/f01")
	check("stat old name", err, syscall.ENOENT)

	check("link", c.Link(ctx, "/d/moved", "/d/hard"), 0)
	a1, _ := c.Stat(ctx, "/d/moved")
	a2, _ := c.Stat(ctx, "/d/hard")
	if a1.Ino != a2.Ino || a2.Nlink != 2 {
		t.Fatalf("hard link: inos %d/%d nlink %d", a1.Ino, a2.Ino, a2.Nlink)
	}
	check("link a directory", c.Link(ctx, "/d/e", "/d/e2"), syscall.EPERM)
	check("symlink empty target", c.Symlink(ctx, "", "/d/s"), syscall.ENOENT)
	check("symlink NUL target", c.Symlink(ctx, "a\x00b", "/d/s"), syscall.EINVAL)

	// Remove on a symlink removes the link, not its target.
	check("symlink", c.Symlink(ctx, "/d/e", "/d/sl"), 0)
	check("remove symlink", c.Remove(ctx, "/d/sl"), 0)
	_, err = c.Stat(ctx, "/d/e")
	check("target survives", err, 0)

	check("removeall", c.RemoveAll(ctx, "/d"), 0)
	_, err = c.Stat(ctx, "/d")
	check("stat after removeall", err, syscall.ENOENT)
	check("removeall missing", c.RemoveAll(ctx, "/d"), 0)
	check("removeall under missing", c.RemoveAll(ctx, "/x/y/z"), 0)
	check("removeall root", c.RemoveAll(ctx, "/"), syscall.EBUSY)
	check("removeall relative", c.RemoveAll(ctx, "d"), syscall.EINVAL)
}

func TestInodeAPI(t *testing.T) {
	e := newEnv(t, 6, testPolicy())
	ctx := ctxT(t)
	attr := e.put("/f", []byte("abc"))
	got, err := e.c.Lookup(ctx, rootIno, "f")
	if err != nil || got.Ino != attr.Ino {
		t.Fatalf("Lookup = %v, %v; want ino %d", got, err, attr.Ino)
	}
	if _, err := e.c.Lookup(ctx, rootIno, "nope"); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("Lookup missing: %v", err)
	}
	if _, err := e.c.Lookup(ctx, rootIno, "a/b"); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("Lookup a/b: %v", err)
	}
	if got, err := e.c.GetAttr(ctx, attr.Ino); err != nil || got.Size != 3 {
		t.Fatalf("GetAttr = %v, %v", got, err)
	}
	if _, err := e.c.GetAttr(ctx, 999); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("GetAttr missing: %v", err)
	}
}

func TestSetPolicy(t *testing.T) {
	e := newEnv(t, 6, testPolicy())
	ctx := ctxT(t)
	if _, err := e.c.Mkdir(ctx, "/wide", 0o755); err != nil {
		t.Fatal(err)
	}
	pol := &stratapb.StripePolicy{DataShards: 3, ParityShards: 1, ChunkSize: 32 << 10, SmallThreshold: 100}
	if err := e.c.SetPolicy(ctx, "/wide", pol); err != nil {
		t.Fatal(err)
	}
	data := randBytes(100<<10, 3)
	attr := e.put("/wide/f", data)
	if attr.Policy.DataShards != 3 || attr.Policy.ChunkSize != 32<<10 {
		t.Fatalf("file policy %v, want inherited 3+1/32K", attr.Policy)
	}
	if got := e.get("/wide/f"); string(got) != string(data) {
		t.Fatal("3+1 file reads back different")
	}
	bad := &stratapb.StripePolicy{DataShards: 0, ParityShards: 1, ChunkSize: 1}
	if err := e.c.SetPolicy(ctx, "/wide", bad); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("bad policy: %v", err)
	}
}

// TestRetriesReuseRequestID loses the reply of every mutation once: the
// client must resend with the same header, so the fake (like the real
// metaserver) answers from its dedup table instead of applying again.
func TestRetriesReuseRequestID(t *testing.T) {
	e := newEnv(t, 6, testPolicy())
	ctx := ctxT(t)
	e.meta.mu.Lock()
	e.meta.drop["Mkdir"] = 1
	e.meta.mu.Unlock()
	if _, err := e.c.Mkdir(ctx, "/once", 0o755); err != nil {
		t.Fatalf("mkdir with a lost reply: %v (a retry with a new request id would see EEXIST)", err)
	}
	data := randBytes(300<<10, 9)
	e.meta.mu.Lock()
	e.meta.drop["Create"] = 1
	e.meta.drop["AllocateChunks"] = 2
	e.meta.drop["CommitChunks"] = 2
	e.meta.mu.Unlock()
	e.put("/once/f", data)
	if got := e.get("/once/f"); string(got) != string(data) {
		t.Fatal("file written through lost replies reads back different")
	}
	e.meta.mu.Lock()
	defer e.meta.mu.Unlock()
	if left := e.meta.drop["CommitChunks"] + e.meta.drop["AllocateChunks"] + e.meta.drop["Create"]; left != 0 {
		t.Fatalf("%d lost replies never happened", left)
	}
}
