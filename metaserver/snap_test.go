package metaserver

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"syscall"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// FSM-level tests of the snap primitives: reference counts, content
// chunks, frozen trees, clones, snapshots and their snapshot records. The
// same behaviour through a real cluster is in client/snap_test.go.

// withServers registers dataservers 1..6 so that chunks can be committed.
func (tf *testFSM) withServers() *testFSM {
	for id := uint32(1); id <= 6; id++ {
		tf.f.st.servers[id] = &dataServer{id: id, uuid: fmt.Sprint("u", id), addr: fmt.Sprint("ds", id)}
	}
	return tf
}

// writeChunk allocates a chunk id and commits a replicated chunk of data
// at index of file ino, with its content hash when hashed.
func (tf *testFSM) writeChunk(ino, index uint64, data []byte, hashed bool) uint64 {
	tf.t.Helper()
	resp, err := tf.apply(CmdAllocateChunks, nil, &stratapb.AllocateChunksRequest{Ino: ino, Count: 1})
	if err != nil {
		tf.t.Fatal(err)
	}
	id := resp.(*stratapb.AllocateChunksResponse).Allocations[0].ChunkId
	c := &stratapb.Chunk{Index: index, Id: id, Size: uint32(len(data)), Scheme: stratapb.Scheme_REPLICATED,
		DataShards: 1, ParityShards: 2, ShardSize: uint32(len(data)), Servers: []uint32{1, 2, 3}}
	if hashed {
		h := sha256.Sum256(data)
		c.Hash = h[:]
	}
	if _, err := tf.apply(CmdCommitChunks, nil, &stratapb.CommitChunksRequest{Ino: ino, Chunks: []*stratapb.ChunkCommit{{Chunk: c}}, MinSize: index*4<<20 + uint64(len(data))}); err != nil {
		tf.t.Fatal(err)
	}
	return id
}

func (tf *testFSM) share(ino, index uint64, id uint64, data []byte) error {
	h := sha256.Sum256(data)
	_, err := tf.apply(CmdCommitChunks, nil, &stratapb.CommitChunksRequest{Ino: ino, Chunks: []*stratapb.ChunkCommit{
		{Shared: true, Chunk: &stratapb.Chunk{Index: index, Id: id, Hash: h[:]}},
	}})
	return err
}

func (tf *testFSM) lookupHash(data []byte) uint64 {
	h := sha256.Sum256(data)
	resp, err := tf.f.st.lookupChunks(&stratapb.LookupChunksRequest{Hashes: [][]byte{h[:]}})
	if err != nil {
		tf.t.Fatal(err)
	}
	return resp.Chunks[0].Id
}

func TestFSMRefcountsAndContentChunks(t *testing.T) {
	tf := newTestFSM(t).withServers()
	st := tf.f.st
	a, b := tf.create(rootIno, "a"), tf.create(rootIno, "b")
	data := []byte("the same bytes twice")
	id := tf.writeChunk(a, 0, data, true)
	if got := tf.lookupHash(data); got != id {
		t.Fatalf("lookup: got chunk %d, want %d", got, id)
	}
	stored := st.stored
	if err := tf.share(b, 0, id, data); err != nil {
		t.Fatal(err)
	}
	if st.refs[id] != 2 || st.stored != stored || st.inodes[b].chunks[0].size != uint32(len(data)) {
		t.Fatalf("after share: refs=%d stored=%d (was %d)", st.refs[id], st.stored, stored)
	}
	// A non-shared commit may not name a chunk held elsewhere.
	c := st.inodes[a].chunks[0].proto()
	c.Index = 1
	_, err := tf.apply(CmdCommitChunks, nil, &stratapb.CommitChunksRequest{Ino: b, Chunks: []*stratapb.ChunkCommit{{Chunk: c}}})
	wantErrno(t, err, syscall.EINVAL)
	// Removing one holder keeps the chunk; removing the last frees it.
	tf.apply(CmdUnlink, nil, &stratapb.UnlinkRequest{Parent: rootIno, Name: "a"})
	if len(st.garbage) != 0 || st.refs[id] != 1 || tf.lookupHash(data) != id {
		t.Fatalf("after first unlink: garbage=%d refs=%d", len(st.garbage), st.refs[id])
	}
	tf.apply(CmdUnlink, nil, &stratapb.UnlinkRequest{Parent: rootIno, Name: "b"})
	if len(st.garbage) != 1 || st.garbage[0].id != id || len(st.refs) != 0 || st.stored != 0 || tf.lookupHash(data) != 0 {
		t.Fatalf("after last unlink: garbage=%v refs=%v stored=%d", st.garbage, st.refs, st.stored)
	}
	// Sharing a freed chunk is refused: the client must write it again.
	d := tf.create(rootIno, "d")
	wantErrno(t, tf.share(d, 0, id, data), syscall.ESTALE)
	// Bad hashes are refused.
	_, err = tf.f.st.lookupChunks(&stratapb.LookupChunksRequest{Hashes: [][]byte{[]byte("short")}})
	wantErrno(t, err, syscall.EINVAL)
}

// TestFSMSharedInSameCommit: a commit may bring a content chunk and share
// it at another index at once (a file repeating a chunk).
func TestFSMSharedInSameCommit(t *testing.T) {
	tf := newTestFSM(t).withServers()
	f := tf.create(rootIno, "f")
	resp, _ := tf.apply(CmdAllocateChunks, nil, &stratapb.AllocateChunksRequest{Ino: f, Count: 1})
	id := resp.(*stratapb.AllocateChunksResponse).Allocations[0].ChunkId
	h := sha256.Sum256([]byte("x"))
	_, err := tf.apply(CmdCommitChunks, nil, &stratapb.CommitChunksRequest{Ino: f, MinSize: 2<<20 + 1, Chunks: []*stratapb.ChunkCommit{
		{Chunk: &stratapb.Chunk{Index: 0, Id: id, Size: 1, Scheme: stratapb.Scheme_REPLICATED, DataShards: 1, ParityShards: 2, ShardSize: 1, Servers: []uint32{1, 2, 3}, Hash: h[:]}},
		{Shared: true, Chunk: &stratapb.Chunk{Index: 1, Id: id, Hash: h[:]}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if tf.f.st.refs[id] != 2 || len(tf.f.st.inodes[f].chunks) != 2 {
		t.Fatalf("refs=%d chunks=%d", tf.f.st.refs[id], len(tf.f.st.inodes[f].chunks))
	}
}

func TestFSMFrozenTree(t *testing.T) {
	tf := newTestFSM(t).withServers()
	img := tf.mkdir(rootIno, "img")
	sub := tf.mkdir(img, "sub")
	f := tf.create(sub, "f")
	tf.writeChunk(f, 0, []byte("data"), false)
	out := tf.create(rootIno, "outside")
	if _, err := tf.apply(CmdFreeze, nil, &stratapb.FreezeRequest{Ino: img}); err != nil {
		t.Fatal(err)
	}
	perm := map[string]func() error{
		"create": func() error {
			_, err := tf.apply(CmdCreate, nil, &stratapb.CreateRequest{Parent: sub, Name: "new"})
			return err
		},
		"create-truncate": func() error {
			_, err := tf.apply(CmdCreate, nil, &stratapb.CreateRequest{Parent: sub, Name: "f", Truncate: true})
			return err
		},
		"mkdir": func() error {
			_, err := tf.apply(CmdMkdir, nil, &stratapb.MkdirRequest{Parent: img, Name: "d"})
			return err
		},
		"symlink": func() error {
			_, err := tf.apply(CmdSymlink, nil, &stratapb.SymlinkRequest{Parent: img, Name: "l", Target: "x"})
			return err
		},
		"mknod": func() error {
			_, err := tf.apply(CmdMknod, nil, &stratapb.MknodRequest{Parent: img, Name: "c", Type: stratapb.FileType_CHARDEV})
			return err
		},
		"allocate": func() error {
			_, err := tf.apply(CmdAllocateChunks, nil, &stratapb.AllocateChunksRequest{Ino: f, Count: 1})
			return err
		},
		"commit": func() error {
			c := tf.f.st.inodes[f].chunks[0].proto()
			_, err := tf.apply(CmdCommitChunks, nil, &stratapb.CommitChunksRequest{Ino: f, Chunks: []*stratapb.ChunkCommit{{Chunk: c}}})
			return err
		},
		"setattr": func() error {
			_, err := tf.apply(CmdSetAttr, nil, &stratapb.SetAttrRequest{Ino: f, Valid: uint32(stratapb.SetAttrMask_SETATTR_MODE), Mode: 0o600})
			return err
		},
		"truncate": func() error {
			_, err := tf.apply(CmdSetAttr, nil, &stratapb.SetAttrRequest{Ino: f, Valid: uint32(stratapb.SetAttrMask_SETATTR_SIZE)})
			return err
		},
		"setxattr": func() error {
			_, err := tf.apply(CmdSetXattr, nil, &stratapb.SetXattrRequest{Ino: sub, Name: "user.a", Value: []byte("v")})
			return err
		},
		"removexattr": func() error {
			_, err := tf.apply(CmdRemoveXattr, nil, &stratapb.RemoveXattrRequest{Ino: sub, Name: "user.a"})
			return err
		},
		"unlink": func() error {
			_, err := tf.apply(CmdUnlink, nil, &stratapb.UnlinkRequest{Parent: sub, Name: "f"})
			return err
		},
		"rmdir": func() error {
			_, err := tf.apply(CmdRmdir, nil, &stratapb.RmdirRequest{Parent: img, Name: "sub"})
			return err
		},
		"rename-out": func() error {
			_, err := tf.apply(CmdRename, nil, &stratapb.RenameRequest{SrcParent: sub, SrcName: "f", DstParent: rootIno, DstName: "g"})
			return err
		},
		"rename-in": func() error {
			_, err := tf.apply(CmdRename, nil, &stratapb.RenameRequest{SrcParent: rootIno, SrcName: "outside", DstParent: sub, DstName: "o"})
			return err
		},
		"link-into": func() error {
			_, err := tf.apply(CmdLink, nil, &stratapb.LinkRequest{Ino: out, NewParent: sub, NewName: "o"})
			return err
		},
		"link-out-of": func() error {
			_, err := tf.apply(CmdLink, nil, &stratapb.LinkRequest{Ino: f, NewParent: rootIno, NewName: "o"})
			return err
		},
		"remove-tree": func() error {
			_, err := tf.apply(CmdRemoveTree, nil, &stratapb.RemoveTreeRequest{Parent: rootIno, Name: "img"})
			return err
		},
		"clone-into": func() error {
			_, err := tf.apply(CmdCloneTree, nil, &stratapb.CloneTreeRequest{Src: out, DstParent: sub, DstName: "c"})
			return err
		},
	}
	before := tf.f.st.digest()
	for name, op := range perm {
		if err := op(); !isErrno(err, syscall.EPERM) {
			t.Errorf("%s in a frozen tree: got %v, want EPERM", name, err)
		}
	}
	if tf.f.st.digest() != before {
		t.Fatal("a refused mutation changed the state")
	}
	// Reads work; the tree's root may be moved as a whole; and it can be
	// removed whole with allow_frozen.
	if _, err := tf.f.st.getChunks(&stratapb.GetChunksRequest{Ino: f}); err != nil {
		t.Fatal(err)
	}
	if _, err := tf.apply(CmdRename, nil, &stratapb.RenameRequest{SrcParent: rootIno, SrcName: "img", DstParent: rootIno, DstName: "img2"}); err != nil {
		t.Fatalf("moving the frozen root: %v", err)
	}
	resp, err := tf.apply(CmdRemoveTree, nil, &stratapb.RemoveTreeRequest{Parent: rootIno, Name: "img2", AllowFrozen: true})
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.(*stratapb.RemoveTreeResponse); r.Inodes != 3 || r.FreedChunks != 1 {
		t.Fatalf("remove tree: %v", r)
	}
}

func isErrno(err error, want syscall.Errno) bool {
	ne, ok := errnoOf(err)
	return ok && ne.errno == want
}

// snapTree makes /src with files, a subdirectory, a hard link, a symlink
// and a device, and returns src and the file with data.
func (tf *testFSM) snapTree() (src, f uint64) {
	src = tf.mkdir(rootIno, "src")
	sub := tf.mkdir(src, "sub")
	f = tf.create(sub, "f")
	tf.writeChunk(f, 0, []byte("file data"), false)
	tf.apply(CmdLink, nil, &stratapb.LinkRequest{Ino: f, NewParent: src, NewName: "hard"})
	tf.apply(CmdSymlink, nil, &stratapb.SymlinkRequest{Parent: src, Name: "ln", Target: "sub/f"})
	tf.apply(CmdMknod, nil, &stratapb.MknodRequest{Parent: src, Name: "null", Type: stratapb.FileType_CHARDEV, Mode: 0o666, Rdev: 1<<8 | 3})
	tf.apply(CmdSetXattr, nil, &stratapb.SetXattrRequest{Ino: f, Name: "user.k", Value: []byte("v")})
	return src, f
}

func TestFSMSnapshots(t *testing.T) {
	tf := newTestFSM(t).withServers()
	st := tf.f.st
	src, f := tf.snapTree()
	fileChunk := st.inodes[f].chunks[0].id
	resp, err := tf.apply(CmdCreateSnapshot, nil, &stratapb.CreateSnapshotRequest{Src: src, Name: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	info := resp.(*stratapb.CreateSnapshotResponse).Snapshot
	// src, sub, f (two links), ln, null: 5 inodes.
	if info.Inodes != 5 || info.SourcePath != "/src" || info.LogicalBytes != 9 || st.refs[fileChunk] != 2 {
		t.Fatalf("snapshot info %v, refs %d", info, st.refs[fileChunk])
	}
	root := st.inodes[info.RootIno]
	if !root.frozen() || !root.pinned() || st.inodes[root.parent].children["s1"] != root.ino {
		t.Fatal("snapshot root not frozen, pinned and at /.snapshots/s1")
	}
	copyF := st.inodes[st.inodes[root.children["sub"]].children["f"]]
	if copyF.nlink != 2 || root.children["hard"] != copyF.ino || string(copyF.xattrs["user.k"]) != "v" {
		t.Fatalf("hard link or xattr not kept: nlink=%d", copyF.nlink)
	}
	if dev := st.inodes[root.children["null"]]; dev.typ != stratapb.FileType_CHARDEV || dev.rdev != 1<<8|3 {
		t.Fatal("device not copied")
	}
	// Bad input: clear errors, nothing changed.
	before := st.digest()
	for name, c := range map[string]struct {
		t   CommandType
		req proto.Message
		err syscall.Errno
	}{
		"missing source": {CmdCreateSnapshot, &stratapb.CreateSnapshotRequest{Src: 9999, Name: "x"}, syscall.ENOENT},
		"not a dir":      {CmdCreateSnapshot, &stratapb.CreateSnapshotRequest{Src: f, Name: "x"}, syscall.ENOTDIR},
		"duplicate":      {CmdCreateSnapshot, &stratapb.CreateSnapshotRequest{Src: src, Name: "s1"}, syscall.EEXIST},
		"slash":          {CmdCreateSnapshot, &stratapb.CreateSnapshotRequest{Src: src, Name: "a/b"}, syscall.EINVAL},
		"restore exists": {CmdRestoreSnapshot, &stratapb.RestoreSnapshotRequest{Name: "s1", DstParent: rootIno, DstName: "src"}, syscall.EEXIST},
		"restore none":   {CmdRestoreSnapshot, &stratapb.RestoreSnapshotRequest{Name: "nope", DstParent: rootIno, DstName: "r"}, syscall.ENOENT},
		"delete none":    {CmdDeleteSnapshot, &stratapb.DeleteSnapshotRequest{Name: "nope"}, syscall.ENOENT},
		"rm area":        {CmdRemoveTree, &stratapb.RemoveTreeRequest{Parent: rootIno, Name: SnapshotDir, AllowFrozen: true}, syscall.EPERM},
		"rename area":    {CmdRename, &stratapb.RenameRequest{SrcParent: rootIno, SrcName: SnapshotDir, DstParent: rootIno, DstName: "x"}, syscall.EPERM},
		"rm snapshot":    {CmdRemoveTree, &stratapb.RemoveTreeRequest{Parent: root.parent, Name: "s1", AllowFrozen: true}, syscall.EPERM},
	} {
		_, err := tf.apply(c.t, nil, c.req)
		if !isErrno(err, c.err) {
			t.Errorf("%s: got %v, want %v", name, err, c.err)
		}
	}
	if st.digest() != before {
		t.Fatal("refused snapshot commands changed the state")
	}
	// Restore: a writable copy sharing chunks.
	resp, err = tf.apply(CmdRestoreSnapshot, nil, &stratapb.RestoreSnapshotRequest{Name: "s1", DstParent: rootIno, DstName: "back"})
	if err != nil {
		t.Fatal(err)
	}
	back := st.inodes[resp.(*stratapb.RestoreSnapshotResponse).Attr.Ino]
	if back.frozen() || back.pinned() || st.refs[fileChunk] != 3 {
		t.Fatalf("restored copy frozen=%v pinned=%v refs=%d", back.frozen(), back.pinned(), st.refs[fileChunk])
	}
	// Deleting the snapshot frees nothing that others hold.
	resp, err = tf.apply(CmdDeleteSnapshot, nil, &stratapb.DeleteSnapshotRequest{Name: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.(*stratapb.DeleteSnapshotResponse); r.Inodes != 5 || r.FreedChunks != 0 || st.refs[fileChunk] != 2 || len(st.snaps) != 0 {
		t.Fatalf("delete: %v refs=%d", r, st.refs[fileChunk])
	}
}

// TestFSMSnapStateRoundTrip: reference counts, content chunks, frozen and
// pinned flags, devices and named snapshots survive an FSM snapshot and
// restore; a snapshot whose counts disagree with the chunk lists is refused.
func TestFSMSnapStateRoundTrip(t *testing.T) {
	tf := newTestFSM(t).withServers()
	src, _ := tf.snapTree()
	a, b := tf.create(rootIno, "a"), tf.create(rootIno, "b")
	data := []byte("dedup me")
	id := tf.writeChunk(a, 0, data, true)
	if err := tf.share(b, 0, id, data); err != nil {
		t.Fatal(err)
	}
	if _, err := tf.apply(CmdCreateSnapshot, nil, &stratapb.CreateSnapshotRequest{Src: src, Name: "s1"}); err != nil {
		t.Fatal(err)
	}
	st := tf.f.st
	snap, err := tf.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	f2 := newTestFSM(t)
	if err := f2.f.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	r := f2.f.st
	if r.digest() != st.digest() || r.stored != st.stored || len(r.refs) != len(st.refs) || len(r.snaps) != 1 {
		t.Fatalf("restored: stored %d/%d refs %d/%d snaps %d", r.stored, st.stored, len(r.refs), len(st.refs), len(r.snaps))
	}
	for k, v := range st.refs {
		if r.refs[k] != v {
			t.Fatalf("chunk %d: %d refs restored, %d before", k, r.refs[k], v)
		}
	}
	if f2.lookupHash(data) != id || r.refs[id] != 2 {
		t.Fatal("content chunk lost")
	}
	// The restored FSM goes on: deleting the snapshot and the files frees.
	if _, err := f2.apply(CmdDeleteSnapshot, nil, &stratapb.DeleteSnapshotRequest{Name: "s1"}); err != nil {
		t.Fatal(err)
	}

	// Counts that disagree with the chunk lists: refused.
	bad := st.clone()
	bad.refs[id] = 7
	var buf bytes.Buffer
	if err := bad.writeSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	if err := newTestFSM(t).f.Restore(io.NopCloser(&buf)); err == nil {
		t.Fatal("snapshot with wrong reference counts accepted")
	}
}

// TestFSMRelocateSharedShard: moving a shard of a shared chunk updates
// every holder and the content table.
func TestFSMRelocateSharedShard(t *testing.T) {
	tf := newTestFSM(t).withServers()
	st := tf.f.st
	src, f := tf.snapTree()
	data := []byte("shared content")
	a, b := tf.create(rootIno, "a"), tf.create(rootIno, "b")
	id := tf.writeChunk(a, 0, data, true)
	if err := tf.share(b, 0, id, data); err != nil {
		t.Fatal(err)
	}
	if _, err := tf.apply(CmdCloneTree, nil, &stratapb.CloneTreeRequest{Src: src, DstParent: rootIno, DstName: "copy"}); err != nil {
		t.Fatal(err)
	}
	fid := st.inodes[f].chunks[0].id
	if n := st.relocateShard(fid, 1, 2, 5); n != 2 {
		t.Fatalf("file chunk held twice: %d copies moved", n)
	}
	if n := st.relocateShard(id, 0, 1, 6); n != 3 { // a, b and the content table
		t.Fatalf("content chunk: %d copies moved", n)
	}
	if st.inodes[b].chunks[0].servers[0] != 6 || st.byHash[st.hashOf[id]].servers[0] != 6 {
		t.Fatal("a holder kept the old place")
	}
}

// TestFSMSnapshotOfRoot: a snapshot of the tenant's root leaves the
// snapshot area (and so every earlier snapshot) out.
func TestFSMSnapshotOfRoot(t *testing.T) {
	tf := newTestFSM(t).withServers()
	tf.snapTree()
	for _, name := range []string{"r1", "r2"} {
		resp, err := tf.apply(CmdCreateSnapshot, nil, &stratapb.CreateSnapshotRequest{Src: rootIno, Name: name})
		if err != nil {
			t.Fatal(err)
		}
		// root, src, sub, f, ln, null: 6 inodes, whatever the area holds.
		if info := resp.(*stratapb.CreateSnapshotResponse).Snapshot; info.Inodes != 6 || info.SourcePath != "/" {
			t.Fatalf("snapshot %s of the root: %v", name, info)
		}
	}
	if _, err := tf.apply(CmdCloneTree, nil, &stratapb.CloneTreeRequest{Src: rootIno, DstParent: rootIno, DstName: "x"}); !isErrno(err, syscall.EINVAL) {
		t.Fatalf("clone of the root into itself: %v, want EINVAL", err)
	}
}
