package client

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/strata-hpc/strata/proto/stratapb"
)

func names(entries []*stratapb.DirEntry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.Name)
	}
	return out
}

// readDirPad is how many extra entries testNamespaceOps puts in a
// directory so that listing and removing it take more than one ReadDir
// page (readDirPage entries).
const readDirPad = readDirPage + 1

func testNamespaceOps(t *testing.T, e *env) {
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
	_, err := c.Mkdir(ctx, e.p("/d"), 0o755)
	check("mkdir /d", err, 0)
	_, err = c.Mkdir(ctx, e.p("/d"), 0o755)
	check("mkdir /d again", err, syscall.EEXIST)
	_, err = c.Mkdir(ctx, "/", 0o755)
	check("mkdir /", err, syscall.EEXIST)
	_, err = c.Mkdir(ctx, e.p("/nope/x"), 0o755)
	check("mkdir under missing parent", err, syscall.ENOENT)
	check("mkdirall", c.MkdirAll(ctx, e.p("/d/e/f"), 0o755), 0)
	check("mkdirall existing", c.MkdirAll(ctx, e.p("/d/e/f"), 0o755), 0)
	check("mkdirall root", c.MkdirAll(ctx, "/", 0o755), 0)
	e.put("/d/file", []byte("x"))
	check("mkdirall over a file", c.MkdirAll(ctx, e.p("/d/file/g"), 0o755), syscall.ENOTDIR)
	_, err = c.Mkdir(ctx, e.p("/d/file/g"), 0o755)
	check("mkdir under a file", err, syscall.ENOTDIR)

	// Ten named files, and enough others that the listing spans pages.
	want := []string{"f"}
	for i := range 10 {
		e.put(fmt.Sprintf("/d/e/f%02d", i), nil)
		want = append(want, fmt.Sprintf("f%02d", i))
	}
	var wg sync.WaitGroup
	padErrs := make(chan error, readDirPad)
	sem := make(chan struct{}, 32)
	for i := range readDirPad {
		want = append(want, fmt.Sprintf("p%04d", i))
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := c.Put(ctx, e.p(fmt.Sprintf("/d/e/p%04d", i)), bytes.NewReader(nil), PutOptions{}); err != nil {
				padErrs <- err
			}
		})
	}
	wg.Wait()
	close(padErrs)
	for err := range padErrs {
		t.Fatal(err)
	}
	list, err := c.ReadDir(ctx, e.p("/d/e"))
	check("readdir", err, 0)
	if got := names(list); !slices.Equal(got, want) {
		t.Fatalf("readdir (%d entries, pages of %d) = %d entries, want %d in order", len(want), readDirPage, len(got), len(want))
	}
	if list[0].Attr == nil || list[0].Attr.Type != stratapb.FileType_DIRECTORY {
		t.Fatalf("readdir entry has no attributes: %v", list[0])
	}
	for _, ent := range list[1:] {
		if ent.Attr == nil || ent.Attr.Type != stratapb.FileType_REGULAR || ent.Attr.Ino != ent.Ino {
			t.Fatalf("readdir entry %v: want a regular file's attributes", ent)
		}
	}
	_, err = c.ReadDir(ctx, e.p("/d/file"))
	check("readdir of a file", err, syscall.ENOTDIR)

	check("remove non-empty dir", c.Remove(ctx, e.p("/d/e")), syscall.ENOTEMPTY)
	check("remove file", c.Remove(ctx, e.p("/d/e/f00")), 0)
	check("remove empty dir", c.Remove(ctx, e.p("/d/e/f")), 0)
	check("remove missing", c.Remove(ctx, e.p("/d/e/f00")), syscall.ENOENT)
	check("remove root", c.Remove(ctx, "/"), syscall.EBUSY)

	check("rename", c.Rename(ctx, e.p("/d/e/f01"), e.p("/d/moved")), 0)
	_, err = c.Stat(ctx, e.p("/d/moved"))
	check("stat renamed", err, 0)
	_, err = c.Stat(ctx, e.p("/d/e/f01"))
	check("stat old name", err, syscall.ENOENT)

	check("link", c.Link(ctx, e.p("/d/moved"), e.p("/d/hard")), 0)
	a1, _ := c.Stat(ctx, e.p("/d/moved"))
	a2, _ := c.Stat(ctx, e.p("/d/hard"))
	if a1.Ino != a2.Ino || a2.Nlink != 2 {
		t.Fatalf("hard link: inos %d/%d nlink %d", a1.Ino, a2.Ino, a2.Nlink)
	}
	check("link a directory", c.Link(ctx, e.p("/d/e"), e.p("/d/e2")), syscall.EPERM)
	check("symlink empty target", c.Symlink(ctx, "", e.p("/d/s")), syscall.ENOENT)
	check("symlink NUL target", c.Symlink(ctx, "a\x00b", e.p("/d/s")), syscall.EINVAL)

	// Remove on a symlink removes the link, not its target.
	check("symlink", c.Symlink(ctx, e.p("/d/e"), e.p("/d/sl")), 0)
	check("remove symlink", c.Remove(ctx, e.p("/d/sl")), 0)
	_, err = c.Stat(ctx, e.p("/d/e"))
	check("target survives", err, 0)

	check("removeall", c.RemoveAll(ctx, e.p("/d")), 0)
	e.forget("/d")
	_, err = c.Stat(ctx, e.p("/d"))
	check("stat after removeall", err, syscall.ENOENT)
	if left, err := c.ReadDir(ctx, e.p("/")); err != nil || len(left) != 0 {
		t.Fatalf("after removeall the test's directory holds %v (%v)", names(left), err)
	}
	check("removeall missing", c.RemoveAll(ctx, e.p("/d")), 0)
	check("removeall under missing", c.RemoveAll(ctx, e.p("/x/y/z")), 0)
	check("removeall root", c.RemoveAll(ctx, "/"), syscall.EBUSY)
	check("removeall relative", c.RemoveAll(ctx, "d"), syscall.EINVAL)
}

func testInodeAPI(t *testing.T, e *env) {
	ctx := ctxT(t)
	attr := e.put("/f", []byte("abc"))
	dir, err := e.c.Stat(ctx, e.p("/"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.c.Lookup(ctx, dir.Ino, "f")
	if err != nil || got.Ino != attr.Ino {
		t.Fatalf("Lookup = %v, %v; want ino %d", got, err, attr.Ino)
	}
	if got, err := e.c.Lookup(ctx, rootIno, e.root[1:]); err != nil || got.Ino != dir.Ino {
		t.Fatalf("Lookup in the root = %v, %v; want ino %d", got, err, dir.Ino)
	}
	if _, err := e.c.Lookup(ctx, dir.Ino, "nope"); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("Lookup missing: %v", err)
	}
	if _, err := e.c.Lookup(ctx, dir.Ino, "a/b"); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("Lookup a/b: %v", err)
	}
	if got, err := e.c.GetAttr(ctx, attr.Ino); err != nil || got.Size != 3 {
		t.Fatalf("GetAttr = %v, %v", got, err)
	}
	if _, err := e.c.GetAttr(ctx, 1<<60); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("GetAttr missing: %v", err)
	}
}

func testSetPolicy(t *testing.T, e *env) {
	ctx := ctxT(t)
	if _, err := e.c.Mkdir(ctx, e.p("/wide"), 0o755); err != nil {
		t.Fatal(err)
	}
	pol := &stratapb.StripePolicy{DataShards: 3, ParityShards: 1, ChunkSize: 32 << 10, SmallThreshold: 100}
	if err := e.c.SetPolicy(ctx, e.p("/wide"), pol); err != nil {
		t.Fatal(err)
	}
	data := randBytes(100<<10, 3)
	attr := e.put("/wide/f", data)
	if !proto.Equal(attr.Policy, pol) {
		t.Fatalf("file policy %v, want inherited %v", attr.Policy, pol)
	}
	for _, ch := range e.chunks(attr.Ino).Chunks {
		if ch.DataShards != 3 || ch.ParityShards != 1 || len(ch.Servers) != 4 {
			t.Fatalf("chunk %v, want a 3+1 stripe", ch)
		}
	}
	if got := e.get("/wide/f"); !bytes.Equal(got, data) {
		t.Fatal("3+1 file reads back different")
	}
	bad := &stratapb.StripePolicy{DataShards: 0, ParityShards: 1, ChunkSize: 1}
	if err := e.c.SetPolicy(ctx, e.p("/wide"), bad); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("bad policy: %v", err)
	}
	// The server has its own rules: 1000 bytes is no multiple of 4 KiB.
	odd := &stratapb.StripePolicy{DataShards: 2, ParityShards: 1, ChunkSize: 1000}
	if err := e.c.SetPolicy(ctx, e.p("/wide"), odd); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("policy the server refuses: %v", err)
	}
}

// testRetriesReuseRequestID loses the reply of mutations after the real
// leader applied them: the client must resend with the same header, so
// that the metaserver answers from its table of applied requests instead
// of applying again (a second Mkdir would fail EEXIST).
func testRetriesReuseRequestID(t *testing.T, e *env) {
	ctx := ctxT(t)
	tap := newMetaTap(t, e.cl)
	tc := tap.client()
	tap.loseReplies(stratapb.Meta_Mkdir_FullMethodName, 1)
	if _, err := tc.Mkdir(ctx, e.p("/once"), 0o755); err != nil {
		t.Fatalf("mkdir with a lost reply: %v (a retry with a new request id would see EEXIST)", err)
	}
	data := randBytes(300<<10, 9)
	tap.loseReplies(stratapb.Meta_Create_FullMethodName, 1)
	tap.loseReplies(stratapb.Meta_AllocateChunks_FullMethodName, 2)
	tap.loseReplies(stratapb.Meta_CommitChunks_FullMethodName, 2)
	if _, err := tc.Put(ctx, e.p("/once/f"), bytes.NewReader(data), PutOptions{}); err != nil {
		t.Fatal(err)
	}
	e.record("/once/f", data)
	if got := e.get("/once/f"); !bytes.Equal(got, data) {
		t.Fatal("file written through lost replies reads back different")
	}
	if left := tap.pendingLosses(); left != 0 {
		t.Fatalf("%d lost replies never happened", left)
	}
	for _, method := range []string{stratapb.Meta_Mkdir_FullMethodName, stratapb.Meta_Create_FullMethodName,
		stratapb.Meta_AllocateChunks_FullMethodName, stratapb.Meta_CommitChunks_FullMethodName} {
		calls := tap.callsOf(method)
		for i, c := range calls {
			if !c.lost {
				continue
			}
			if c.code != 0 {
				t.Errorf("%s: the leader refused the call whose reply was lost: %v", method, c.errno)
			}
			retried := slices.ContainsFunc(calls[i+1:], func(r tapCall) bool {
				return !r.lost && r.code == 0 && proto.Equal(r.header, c.header)
			})
			if !retried || c.header.GetRequestId() == 0 {
				t.Errorf("%s: lost reply to request %v not retried with the same header", method, c.header)
			}
		}
	}
}
