package metaserver

import (
	"bytes"
	"crypto/sha256"
	"io"
	"strings"
	"syscall"
	"testing"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// allocID reserves one chunk id against file ino (as an importer does
// against its scratch file).
func (tf *testFSM) allocID(ino uint64) uint64 {
	tf.t.Helper()
	resp, err := tf.apply(CmdAllocateChunks, nil, &stratapb.AllocateChunksRequest{Ino: ino, Count: 1})
	if err != nil {
		tf.t.Fatal(err)
	}
	return resp.(*stratapb.AllocateChunksResponse).Allocations[0].ChunkId
}

func newChunkCommit(id uint64, data []byte) *stratapb.ChunkCommit {
	h := sha256.Sum256(data)
	return &stratapb.ChunkCommit{Chunk: &stratapb.Chunk{Id: id, Size: uint32(len(data)), Scheme: stratapb.Scheme_REPLICATED,
		DataShards: 1, ParityShards: 2, ShardSize: uint32(len(data)), Servers: []uint32{1, 2, 3}, Hash: h[:]}}
}

func sharedCommit(id uint64, data []byte) *stratapb.ChunkCommit {
	h := sha256.Sum256(data)
	return &stratapb.ChunkCommit{Shared: true, Chunk: &stratapb.Chunk{Id: id, Hash: h[:]}}
}

// importTree is a batch with one entry of each kind: a directory, a file
// with a new content chunk, a second file sharing it (in the same batch),
// a symlink, a device, a hard link and an xattr, all below the new
// directory.
func importTree(tf *testFSM, parent uint64, data []byte) []*stratapb.ImportEntry {
	id := tf.allocID(tf.create(rootIno, "anchor-"+tf.t.Name()))
	return []*stratapb.ImportEntry{
		{Parent: parent, Name: "etc", Type: stratapb.FileType_DIRECTORY, Mode: 0o750, Uid: 0, Gid: 4, MtimeNs: 11},
		{ParentIndex: 1, Name: "passwd", Type: stratapb.FileType_REGULAR, Mode: 0o644, Uid: 0, Gid: 0, MtimeNs: 22,
			Size: uint64(len(data)), Chunks: []*stratapb.ChunkCommit{newChunkCommit(id, data)},
			Xattrs: map[string][]byte{"security.capability": {1, 2, 3}}},
		{ParentIndex: 1, Name: "passwd-", Type: stratapb.FileType_REGULAR, Mode: 0o600, Uid: 7, Gid: 8, MtimeNs: 33,
			Size: uint64(len(data)), Chunks: []*stratapb.ChunkCommit{sharedCommit(id, data)}},
		{ParentIndex: 1, Name: "localtime", Type: stratapb.FileType_SYMLINK, SymlinkTarget: "/usr/share/zoneinfo/UTC", Uid: 5, Gid: 6, MtimeNs: 44},
		{ParentIndex: 1, Name: "null", Type: stratapb.FileType_CHARDEV, Mode: 0o666, Rdev: 259, MtimeNs: 55},
		{ParentIndex: 1, Name: "passwd.link", LinkIndex: 2},
	}
}

func TestFSMImportBatch(t *testing.T) {
	tf := newTestFSM(t).withServers()
	root := tf.mkdir(rootIno, "rootfs")
	data := []byte("root:x:0:0:root:/root:/bin/sh\n")
	resp, err := tf.apply(CmdImportBatch, nil, &stratapb.ImportBatchRequest{Entries: importTree(tf, root, data)})
	if err != nil {
		t.Fatal(err)
	}
	inos := resp.(*stratapb.ImportBatchResponse).Inos
	st := tf.f.st
	etc, passwd, passwd2, link, null := st.inodes[inos[0]], st.inodes[inos[1]], st.inodes[inos[2]], st.inodes[inos[3]], st.inodes[inos[4]]
	switch {
	case st.inodes[root].children["etc"] != etc.ino || etc.children["passwd"] != passwd.ino || etc.children["passwd.link"] != passwd.ino:
		t.Fatalf("names: %v", etc.children)
	case etc.mode != 0o750 || etc.gid != 4 || etc.parent != root || etc.nlink != 2:
		t.Fatalf("directory attributes: %+v", etc)
	case passwd.nlink != 2 || inos[5] != passwd.ino || passwd.mtime != 22 || passwd.size != uint64(len(data)):
		t.Fatalf("file: nlink %d size %d mtime %d", passwd.nlink, passwd.size, passwd.mtime)
	case !bytes.Equal(passwd.xattrs["security.capability"], []byte{1, 2, 3}):
		t.Fatalf("xattrs: %v", passwd.xattrs)
	case passwd2.mode != 0o600 || passwd2.uid != 7 || passwd2.gid != 8 || len(passwd2.chunks) != 1:
		t.Fatalf("second file: %+v", passwd2)
	case link.target != "/usr/share/zoneinfo/UTC" || link.uid != 5 || link.mode != 0o777:
		t.Fatalf("symlink: %+v", link)
	case null.typ != stratapb.FileType_CHARDEV || null.rdev != 259 || null.mode != 0o666:
		t.Fatalf("device: %+v", null)
	}
	id := passwd.chunks[0].id
	if st.refs[id] != 2 || passwd2.chunks[0].id != id || tf.lookupHash(data) != id {
		t.Fatalf("content chunk %d: %d refs, shared as %d", id, st.refs[id], passwd2.chunks[0].id)
	}

	// An attributes entry sets the directory's times after its children.
	if _, err := tf.apply(CmdImportBatch, nil, &stratapb.ImportBatchRequest{Entries: []*stratapb.ImportEntry{
		{SetAttrIno: etc.ino, Mode: 0o755, Uid: 1, Gid: 2, MtimeNs: 99},
	}}); err != nil {
		t.Fatal(err)
	}
	if etc.mode != 0o755 || etc.uid != 1 || etc.mtime != 99 {
		t.Fatalf("attributes entry: %+v", etc)
	}

	// A snapshot of the state restores to the same state.
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
	if f2.f.st.digest() != st.digest() {
		t.Fatal("restored state differs")
	}
}

// TestFSMImportBatchAllOrNothing: a batch with one bad entry, wherever it
// is, changes nothing.
func TestFSMImportBatchAllOrNothing(t *testing.T) {
	tf := newTestFSM(t).withServers()
	root := tf.mkdir(rootIno, "rootfs")
	tf.create(root, "taken")
	data := []byte("some data")
	cases := []struct {
		name string
		bad  func(es []*stratapb.ImportEntry) []*stratapb.ImportEntry
		want syscall.Errno
	}{
		{"name exists", func(es []*stratapb.ImportEntry) []*stratapb.ImportEntry {
			return append(es, &stratapb.ImportEntry{Parent: root, Name: "taken", Type: stratapb.FileType_FIFO})
		}, syscall.EEXIST},
		{"name twice in the batch", func(es []*stratapb.ImportEntry) []*stratapb.ImportEntry {
			return append(es, &stratapb.ImportEntry{ParentIndex: 1, Name: "null", Type: stratapb.FileType_FIFO})
		}, syscall.EEXIST},
		{"forward parent", func(es []*stratapb.ImportEntry) []*stratapb.ImportEntry {
			return append(es, &stratapb.ImportEntry{ParentIndex: uint32(len(es) + 1), Name: "x", Type: stratapb.FileType_FIFO})
		}, syscall.EINVAL},
		{"parent is a file", func(es []*stratapb.ImportEntry) []*stratapb.ImportEntry {
			return append(es, &stratapb.ImportEntry{ParentIndex: 2, Name: "x", Type: stratapb.FileType_FIFO})
		}, syscall.EINVAL},
		{"chunk never allocated", func(es []*stratapb.ImportEntry) []*stratapb.ImportEntry {
			return append(es, &stratapb.ImportEntry{ParentIndex: 1, Name: "x", Type: stratapb.FileType_REGULAR, Size: 9,
				Chunks: []*stratapb.ChunkCommit{newChunkCommit(1<<40, data)}})
		}, syscall.EINVAL},
		{"chunk id twice", func(es []*stratapb.ImportEntry) []*stratapb.ImportEntry {
			c := es[1].Chunks[0]
			return append(es, &stratapb.ImportEntry{ParentIndex: 1, Name: "x", Type: stratapb.FileType_REGULAR, Size: 9,
				Chunks: []*stratapb.ChunkCommit{{Chunk: c.Chunk}}})
		}, syscall.EINVAL},
		{"link to a directory", func(es []*stratapb.ImportEntry) []*stratapb.ImportEntry {
			return append(es, &stratapb.ImportEntry{ParentIndex: 1, Name: "x", LinkIndex: 1})
		}, syscall.EPERM},
		{"bad name", func(es []*stratapb.ImportEntry) []*stratapb.ImportEntry {
			return append(es, &stratapb.ImportEntry{ParentIndex: 1, Name: "a/b", Type: stratapb.FileType_FIFO})
		}, syscall.EINVAL},
		{"xattr too big", func(es []*stratapb.ImportEntry) []*stratapb.ImportEntry {
			return append(es, &stratapb.ImportEntry{ParentIndex: 1, Name: "x", Type: stratapb.FileType_FIFO,
				Xattrs: map[string][]byte{"user.big": make([]byte, MaxXattrValue+1)}})
		}, syscall.E2BIG},
		{"data on a symlink", func(es []*stratapb.ImportEntry) []*stratapb.ImportEntry {
			return append(es, &stratapb.ImportEntry{ParentIndex: 1, Name: "x", Type: stratapb.FileType_SYMLINK, SymlinkTarget: "y", Size: 3})
		}, syscall.EINVAL},
		{"bad first entry", func(es []*stratapb.ImportEntry) []*stratapb.ImportEntry {
			return append([]*stratapb.ImportEntry{{Parent: 999999, Name: "x", Type: stratapb.FileType_DIRECTORY}}, es...)
		}, syscall.ENOENT},
	}
	for _, c := range cases {
		es := c.bad(importTree(tf, root, data))
		before, next := tf.f.st.digest(), tf.f.st.nextIno
		_, err := tf.apply(CmdImportBatch, nil, &stratapb.ImportBatchRequest{Entries: es})
		if !isErrno(err, c.want) {
			t.Fatalf("%s: got %v, want %v", c.name, err, c.want)
		}
		if tf.f.st.digest() != before || tf.f.st.nextIno != next {
			t.Fatalf("%s: a refused batch changed the state", c.name)
		}
	}
	if _, ok := tf.f.st.inodes[root].children["etc"]; ok {
		t.Fatal("a refused batch left an entry")
	}
}

// TestFSMImportBatchRetry: the same request applied twice (a client
// retrying after a lost reply) makes the entries once and answers the
// same inodes.
func TestFSMImportBatchRetry(t *testing.T) {
	tf := newTestFSM(t).withServers()
	root := tf.mkdir(rootIno, "rootfs")
	req := &stratapb.ImportBatchRequest{Entries: importTree(tf, root, []byte("x"))}
	hdr := &stratapb.RequestHeader{ClientId: "importer", RequestId: 42}
	r1, err := tf.apply(CmdImportBatch, hdr, req)
	if err != nil {
		t.Fatal(err)
	}
	digest := tf.f.st.digest()
	r2, err := tf.apply(CmdImportBatch, hdr, req)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	a, b := r1.(*stratapb.ImportBatchResponse).Inos, r2.(*stratapb.ImportBatchResponse).Inos
	if len(a) != len(b) || a[0] != b[0] || a[len(a)-1] != b[len(b)-1] {
		t.Fatalf("retry answered %v, first %v", b, a)
	}
	if tf.f.st.digest() != digest {
		t.Fatal("the retry changed the state")
	}
	// A new request with the same content is a new batch: its names exist.
	if _, err := tf.apply(CmdImportBatch, &stratapb.RequestHeader{ClientId: "importer", RequestId: 43}, req); !isErrno(err, syscall.EEXIST) {
		t.Fatalf("second batch: %v", err)
	}
}

// TestFSMImportBatchLimits: too many entries, too many bytes, none, or a
// corrupt encoding are refused before anything changes.
func TestFSMImportBatchLimits(t *testing.T) {
	tf := newTestFSM(t).withServers()
	root := tf.mkdir(rootIno, "rootfs")
	many := make([]*stratapb.ImportEntry, maxImportEntries+1)
	for i := range many {
		many[i] = &stratapb.ImportEntry{Parent: root, Name: "f" + strings.Repeat("x", i%7) + string(rune('a'+i%26)), Type: stratapb.FileType_FIFO}
	}
	big := []*stratapb.ImportEntry{}
	for i := range 80 {
		big = append(big, &stratapb.ImportEntry{Parent: root, Name: string(rune('a' + i%26)), Type: stratapb.FileType_FIFO,
			Xattrs: map[string][]byte{"user.v": make([]byte, MaxXattrValue)}})
	}
	before := tf.f.st.digest()
	for _, c := range []struct {
		name    string
		entries []*stratapb.ImportEntry
		want    syscall.Errno
	}{{"too many entries", many, syscall.E2BIG}, {"too many bytes", big, syscall.E2BIG}, {"empty", nil, syscall.EINVAL}} {
		_, err := tf.apply(CmdImportBatch, nil, &stratapb.ImportBatchRequest{Entries: c.entries})
		if !isErrno(err, c.want) {
			t.Fatalf("%s: got %v, want %v", c.name, err, c.want)
		}
		if err := checkImportSize(&stratapb.ImportBatchRequest{Entries: c.entries}); !isErrno(err, c.want) {
			t.Fatalf("%s: the service's check says %v", c.name, err)
		}
	}
	// A log entry whose request bytes are not an ImportBatchRequest.
	res := tf.applyRaw(append([]byte{EncodingVersion, byte(CmdImportBatch)}, 0x0a, 0x05, 0xff, 0xff))
	if res.err == nil {
		t.Fatal("corrupt batch applied")
	}
	if tf.f.st.digest() != before {
		t.Fatal("a refused batch changed the state")
	}
}
