package metaserver

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"syscall"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// testFSM drives an FSM directly with encoded log entries, as raft would.
type testFSM struct {
	t     *testing.T
	f     *FSM
	index uint64
	now   int64
}

func newTestFSM(t *testing.T) *testFSM {
	return &testFSM{t: t, f: newFSM(policyFromProto(DefaultPolicy()), slog.New(slog.NewTextHandler(io.Discard, nil))), now: 1e18}
}

func (tf *testFSM) applyRaw(data []byte) *applyResult {
	tf.index++
	r := tf.f.Apply(&raft.Log{Index: tf.index, Type: raft.LogCommand, Data: data})
	res, ok := r.(*applyResult)
	if !ok {
		tf.t.Fatalf("Apply returned %T", r)
	}
	return res
}

func (tf *testFSM) apply(t CommandType, hdr *stratapb.RequestHeader, req proto.Message) (proto.Message, error) {
	tf.now += 1000
	data, err := encodeCommand(t, hdr, tf.now, req)
	if err != nil {
		tf.t.Fatal(err)
	}
	res := tf.applyRaw(data)
	return res.resp, res.err
}

func (tf *testFSM) mkdir(parent uint64, name string) uint64 {
	resp, err := tf.apply(CmdMkdir, nil, &stratapb.MkdirRequest{Parent: parent, Name: name, Mode: 0o755})
	if err != nil {
		tf.t.Fatalf("mkdir %s: %v", name, err)
	}
	return resp.(*stratapb.MkdirResponse).Attr.Ino
}

func (tf *testFSM) create(parent uint64, name string) uint64 {
	resp, err := tf.apply(CmdCreate, nil, &stratapb.CreateRequest{Parent: parent, Name: name, Mode: 0o644})
	if err != nil {
		tf.t.Fatalf("create %s: %v", name, err)
	}
	return resp.(*stratapb.CreateResponse).Attr.Ino
}

func wantErrno(t *testing.T, err error, want syscall.Errno) {
	t.Helper()
	if want == 0 {
		if err != nil {
			t.Fatalf("unexpected error %v", err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("got %v, want %v", err, want)
	}
}

func TestNamespaceErrors(t *testing.T) {
	tf := newTestFSM(t)
	d := tf.mkdir(rootIno, "d")
	f := tf.create(d, "f")
	sub := tf.mkdir(d, "sub")
	long := string(bytes.Repeat([]byte("x"), 256))
	cases := []struct {
		name string
		typ  CommandType
		req  proto.Message
		want syscall.Errno
	}{
		{"mkdir exists", CmdMkdir, &stratapb.MkdirRequest{Parent: rootIno, Name: "d"}, syscall.EEXIST},
		{"mkdir in file", CmdMkdir, &stratapb.MkdirRequest{Parent: f, Name: "x"}, syscall.ENOTDIR},
		{"mkdir no parent", CmdMkdir, &stratapb.MkdirRequest{Parent: 9999, Name: "x"}, syscall.ENOENT},
		{"name too long", CmdCreate, &stratapb.CreateRequest{Parent: rootIno, Name: long}, syscall.ENAMETOOLONG},
		{"name with slash", CmdCreate, &stratapb.CreateRequest{Parent: rootIno, Name: "a/b"}, syscall.EINVAL},
		{"name with NUL", CmdCreate, &stratapb.CreateRequest{Parent: rootIno, Name: "a\x00b"}, syscall.EINVAL},
		{"name dotdot", CmdCreate, &stratapb.CreateRequest{Parent: rootIno, Name: ".."}, syscall.EINVAL},
		{"create exclusive exists", CmdCreate, &stratapb.CreateRequest{Parent: d, Name: "f", Exclusive: true}, syscall.EEXIST},
		{"create over dir", CmdCreate, &stratapb.CreateRequest{Parent: d, Name: "sub"}, syscall.EISDIR},
		{"rmdir not empty", CmdRmdir, &stratapb.RmdirRequest{Parent: rootIno, Name: "d"}, syscall.ENOTEMPTY},
		{"rmdir file", CmdRmdir, &stratapb.RmdirRequest{Parent: d, Name: "f"}, syscall.ENOTDIR},
		{"unlink dir", CmdUnlink, &stratapb.UnlinkRequest{Parent: d, Name: "sub"}, syscall.EISDIR},
		{"unlink missing", CmdUnlink, &stratapb.UnlinkRequest{Parent: d, Name: "nope"}, syscall.ENOENT},
		{"rename into own child", CmdRename, &stratapb.RenameRequest{SrcParent: rootIno, SrcName: "d", DstParent: sub, DstName: "x"}, syscall.EINVAL},
		{"rename dir over file", CmdRename, &stratapb.RenameRequest{SrcParent: d, SrcName: "sub", DstParent: d, DstName: "f"}, syscall.ENOTDIR},
		{"rename file over dir", CmdRename, &stratapb.RenameRequest{SrcParent: d, SrcName: "f", DstParent: d, DstName: "sub"}, syscall.EISDIR},
		{"rename noreplace", CmdRename, &stratapb.RenameRequest{SrcParent: d, SrcName: "f", DstParent: rootIno, DstName: "d", Flags: renameNoReplace}, syscall.EEXIST},
		{"link dir", CmdLink, &stratapb.LinkRequest{Ino: sub, NewParent: rootIno, NewName: "l"}, syscall.EPERM},
		{"truncate dir", CmdSetAttr, &stratapb.SetAttrRequest{Ino: d, Valid: uint32(stratapb.SetAttrMask_SETATTR_SIZE)}, syscall.EISDIR},
		{"truncate huge", CmdSetAttr, &stratapb.SetAttrRequest{Ino: f, Valid: uint32(stratapb.SetAttrMask_SETATTR_SIZE), Size: MaxFileSize + 1}, syscall.EFBIG},
		{"symlink empty", CmdSymlink, &stratapb.SymlinkRequest{Parent: rootIno, Name: "s"}, syscall.EINVAL},
		{"commit unallocated", CmdCommitChunks, &stratapb.CommitChunksRequest{Ino: f, Chunks: []*stratapb.ChunkCommit{{Chunk: &stratapb.Chunk{Id: 777}}}}, syscall.EINVAL},
		{"bad policy", CmdMkdir, &stratapb.MkdirRequest{Parent: rootIno, Name: "p", Policy: &stratapb.StripePolicy{DataShards: 0}}, syscall.EINVAL},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := tf.f.st.digest()
			_, err := tf.apply(tc.typ, nil, tc.req)
			wantErrno(t, err, tc.want)
			if after := tf.f.st.digest(); after != before {
				t.Fatalf("failed command changed the state")
			}
		})
	}
}

func TestRenameAndLinks(t *testing.T) {
	tf := newTestFSM(t)
	a := tf.mkdir(rootIno, "a")
	b := tf.mkdir(rootIno, "b")
	f := tf.create(a, "f")
	tf.create(b, "g")
	if _, err := tf.apply(CmdLink, nil, &stratapb.LinkRequest{Ino: f, NewParent: b, NewName: "f2"}); err != nil {
		t.Fatal(err)
	}
	// Rename over an existing file replaces it atomically.
	if _, err := tf.apply(CmdRename, nil, &stratapb.RenameRequest{SrcParent: a, SrcName: "f", DstParent: b, DstName: "g"}); err != nil {
		t.Fatal(err)
	}
	st := tf.f.st
	if st.inodes[b].children["g"] != f || st.inodes[f].nlink != 2 {
		t.Fatalf("rename over file: g=%d nlink=%d", st.inodes[b].children["g"], st.inodes[f].nlink)
	}
	if _, ok := st.inodes[a].children["f"]; ok {
		t.Fatal("source still present")
	}
	// Moving a directory fixes both parents' link counts.
	tf.mkdir(a, "sub")
	if _, err := tf.apply(CmdRename, nil, &stratapb.RenameRequest{SrcParent: a, SrcName: "sub", DstParent: b, DstName: "sub"}); err != nil {
		t.Fatal(err)
	}
	if st.inodes[a].nlink != 2 || st.inodes[b].nlink != 3 {
		t.Fatalf("nlink a=%d b=%d", st.inodes[a].nlink, st.inodes[b].nlink)
	}
	// Exchange swaps.
	tf.create(a, "x")
	if _, err := tf.apply(CmdRename, nil, &stratapb.RenameRequest{SrcParent: a, SrcName: "x", DstParent: b, DstName: "sub", Flags: renameExchange}); err != nil {
		t.Fatal(err)
	}
	if !st.inodes[st.inodes[a].children["x"]].isDir() {
		t.Fatal("exchange did not swap")
	}
}

func TestUnknownVersionRefusedNotApplied(t *testing.T) {
	tf := newTestFSM(t)
	tf.mkdir(rootIno, "d")
	before := tf.f.st.digest()
	data, _ := encodeCommand(CmdMkdir, nil, 1, &stratapb.MkdirRequest{Parent: rootIno, Name: "new"})
	for _, bad := range [][]byte{
		append([]byte{EncodingVersion + 1}, data[1:]...),      // unknown version
		append([]byte{EncodingVersion, 0x7f}, data[2:]...),    // unknown type
		append([]byte{EncodingVersion, byte(CmdMkdir)}, 0xff), // garbage payload
		{EncodingVersion},
		nil,
	} {
		res := tf.applyRaw(bad)
		if res.err == nil {
			t.Fatalf("entry %x was not refused", bad)
		}
	}
	if !errors.Is(tf.applyRaw(append([]byte{9}, data[1:]...)).err, ErrUnknownVersion) {
		t.Fatal("unknown version not reported as such")
	}
	// An unknown command marked ignorable is skipped, without error.
	if res := tf.applyRaw(append([]byte{EncodingVersion, byte(IgnorableFlag | 0x7e)}, data[2:]...)); res.err != nil {
		t.Fatalf("ignorable command: %v", res.err)
	}
	if tf.f.st.digest() != before {
		t.Fatal("refused entries changed the state")
	}
}

func TestRetriedRequestAppliedOnce(t *testing.T) {
	tf := newTestFSM(t)
	hdr := &stratapb.RequestHeader{ClientId: "c1", RequestId: 7}
	req := &stratapb.CreateRequest{Parent: rootIno, Name: "f", Exclusive: true}
	r1, err := tf.apply(CmdCreate, hdr, req)
	if err != nil {
		t.Fatal(err)
	}
	// The same request again (a retry after a lost reply) gets the first
	// answer, not EEXIST, and allocates nothing.
	next := tf.f.st.nextIno
	r2, err := tf.apply(CmdCreate, hdr, req)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if !proto.Equal(r1, r2) || tf.f.st.nextIno != next {
		t.Fatal("retry was applied again")
	}
	// A new request id is a new operation.
	_, err = tf.apply(CmdCreate, &stratapb.RequestHeader{ClientId: "c1", RequestId: 8}, req)
	wantErrno(t, err, syscall.EEXIST)
}

func TestTruncateAndChunks(t *testing.T) {
	tf := newTestFSM(t)
	st := tf.f.st
	st.servers[1] = &dataServer{id: 1, uuid: "u1", addr: "x"}
	f := tf.create(rootIno, "f")
	resp, err := tf.apply(CmdAllocateChunks, nil, &stratapb.AllocateChunksRequest{Ino: f, Count: 3})
	if err != nil {
		t.Fatal(err)
	}
	var commits []*stratapb.ChunkCommit
	for i, a := range resp.(*stratapb.AllocateChunksResponse).Allocations {
		commits = append(commits, &stratapb.ChunkCommit{Chunk: &stratapb.Chunk{
			Index: uint64(i), Id: a.ChunkId, Size: 4 << 20, Scheme: stratapb.Scheme_REPLICATED,
			DataShards: 1, ShardSize: 4 << 20, Servers: []uint32{1},
		}})
	}
	if _, err := tf.apply(CmdCommitChunks, nil, &stratapb.CommitChunksRequest{Ino: f, Chunks: commits, MinSize: 12 << 20}); err != nil {
		t.Fatal(err)
	}
	if st.inodes[f].size != 12<<20 || len(st.inodes[f].chunks) != 3 {
		t.Fatalf("size %d chunks %d", st.inodes[f].size, len(st.inodes[f].chunks))
	}
	// Truncate into the middle of chunk 1: chunk 2 becomes garbage, chunk 1
	// keeps only 1 MiB.
	_, err = tf.apply(CmdSetAttr, nil, &stratapb.SetAttrRequest{Ino: f, Valid: uint32(stratapb.SetAttrMask_SETATTR_SIZE), Size: 5 << 20})
	if err != nil {
		t.Fatal(err)
	}
	n := st.inodes[f]
	if len(n.chunks) != 2 || n.chunks[1].size != 1<<20 || len(st.garbage) != 1 || st.logical != 5<<20 {
		t.Fatalf("after truncate: chunks=%d size1=%d garbage=%d logical=%d", len(n.chunks), n.chunks[1].size, len(st.garbage), st.logical)
	}
	// A commit that expects another chunk id fails, all or nothing.
	_, err = tf.apply(CmdCommitChunks, nil, &stratapb.CommitChunksRequest{Ino: f, Chunks: []*stratapb.ChunkCommit{
		{Chunk: commits[0].Chunk, CheckExpected: true, ExpectedId: 12345},
	}})
	wantErrno(t, err, syscall.ESTALE)
	// Unlinking the file makes all its chunks garbage.
	if _, err := tf.apply(CmdUnlink, nil, &stratapb.UnlinkRequest{Parent: rootIno, Name: "f"}); err != nil {
		t.Fatal(err)
	}
	if len(st.garbage) != 3 || len(st.refs) != 0 || st.logical != 0 {
		t.Fatalf("after unlink: garbage=%d chunks=%d logical=%d", len(st.garbage), len(st.refs), st.logical)
	}
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	tf := newTestFSM(t)
	tf.f.st.servers[1] = &dataServer{id: 1, uuid: "u1", addr: "x", labels: map[string]string{"rack": "r1"}}
	tf.f.st.byUUID["u1"] = 1
	for i := 0; i < 50; i++ {
		d := tf.mkdir(rootIno, "dir"+string(rune('a'+i%26))+string(rune('a'+i/26)))
		for j := 0; j < 5; j++ {
			tf.apply(CmdCreate, &stratapb.RequestHeader{ClientId: "c", RequestId: uint64(i*10 + j)}, &stratapb.CreateRequest{Parent: d, Name: "f" + string(rune('0'+j))})
		}
	}
	tf.apply(CmdSymlink, nil, &stratapb.SymlinkRequest{Parent: rootIno, Name: "ln", Target: "/x/y"})
	tf.apply(CmdSetXattr, nil, &stratapb.SetXattrRequest{Ino: rootIno, Name: "user.k", Value: []byte("v")})
	snap, err := tf.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	atSnapshot := tf.f.st.digest()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	// Changes after the snapshot must not leak into it.
	tf.mkdir(rootIno, "after")
	f2 := newTestFSM(t)
	if err := f2.f.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if _, ok := f2.f.st.inodes[rootIno].children["after"]; ok {
		t.Fatal("snapshot saw a later change")
	}
	if f2.f.st.digest() != atSnapshot {
		t.Fatal("restored namespace differs")
	}
	if f2.f.st.servers[1].labels["rack"] != "r1" || f2.f.st.dedup.len() != tf.f.st.dedup.len() {
		t.Fatal("dataservers or dedup table lost")
	}
	// A retried request is still recognised after restore.
	_, err = f2.apply(CmdCreate, &stratapb.RequestHeader{ClientId: "c", RequestId: 0}, &stratapb.CreateRequest{Parent: 2, Name: "f0", Exclusive: true})
	if err != nil {
		t.Fatalf("dedup entry not restored: %v", err)
	}
}

func TestRestoreRejectsCorruptSnapshots(t *testing.T) {
	tf := newTestFSM(t)
	tf.mkdir(rootIno, "d")
	snap, _ := tf.f.Snapshot()
	sink := &memSink{}
	snap.Persist(sink)
	good := sink.Bytes()
	for name, bad := range map[string][]byte{
		"empty":     nil,
		"truncated": good[:len(good)/2],
		"garbage":   []byte("\x05hello"),
		"huge len":  {0xff, 0xff, 0xff, 0xff, 0x0f},
	} {
		t.Run(name, func(t *testing.T) {
			f := newTestFSM(t)
			before := f.f.st.digest()
			if err := f.f.Restore(io.NopCloser(bytes.NewReader(bad))); err == nil {
				t.Fatal("corrupt snapshot accepted")
			}
			if f.f.st.digest() != before {
				t.Fatal("failed restore changed the state")
			}
		})
	}
}

type memSink struct{ bytes.Buffer }

func (m *memSink) ID() string    { return "mem" }
func (m *memSink) Cancel() error { return nil }
func (m *memSink) Close() error  { return nil }

func FuzzDecodeCommand(f *testing.F) {
	data, _ := encodeCommand(CmdMkdir, &stratapb.RequestHeader{ClientId: "c"}, 1, &stratapb.MkdirRequest{Parent: 1, Name: "x"})
	f.Add(data)
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		tf := newTestFSM(&testing.T{})
		tf.applyRaw(b) // must not panic, whatever the bytes
	})
}

func FuzzRestoreSnapshot(f *testing.F) {
	tf := newTestFSM(&testing.T{})
	tf.f.st.inodes[rootIno].children["x"] = rootIno + 1
	tf.f.st.inodes[rootIno+1] = &inode{ino: rootIno + 1, typ: stratapb.FileType_REGULAR, nlink: 1}
	tf.f.st.nextIno = rootIno + 2
	snap, _ := tf.f.Snapshot()
	sink := &memSink{}
	snap.Persist(sink)
	f.Add(sink.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := readSnapshot(bytes.NewReader(b), policyFromProto(DefaultPolicy()))
		if err == nil {
			st.digest() // a snapshot that passed the checks must be usable
		}
	})
}

func TestUnknownTenantRefused(t *testing.T) {
	tf := newTestFSM(t)
	before := tf.f.st.digest()
	_, err := tf.apply(CmdMkdir, &stratapb.RequestHeader{Tenant: "acme"}, &stratapb.MkdirRequest{Parent: rootIno, Name: "x"})
	wantErrno(t, err, syscall.ENOENT)
	if tf.f.st.digest() != before {
		t.Fatal("request of an unknown tenant changed the state")
	}
	if _, err := tf.apply(CmdMkdir, &stratapb.RequestHeader{Tenant: defaultTenant}, &stratapb.MkdirRequest{Parent: rootIno, Name: "x"}); err != nil {
		t.Fatalf("default tenant by name: %v", err)
	}
}
