package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"syscall"
	"testing"
	"time"

	"github.com/strata-hpc/strata/dataserver"
	"github.com/strata-hpc/strata/internal/testcluster"
	"github.com/strata-hpc/strata/metaserver"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// Snapshots, clones, frozen trees, dedup and accounting against a real
// in-process cluster (3 raft metaservers, 6 dataservers, gRPC on
// loopback). One cluster serves every subtest, each in its own directory.

func TestSnap(t *testing.T) {
	e := newEnv(t, 6, testPolicy())
	t.Run("SnapshotIsOneEntry", func(t *testing.T) { testSnapshotOneEntry(e.sub(t)) })
	t.Run("CopyOnWrite", func(t *testing.T) { testSnapshotCopyOnWrite(e.sub(t)) })
	t.Run("DeleteFreesOnlyUnshared", func(t *testing.T) { testSnapshotDeleteGC(e.sub(t)) })
	t.Run("Dedup", func(t *testing.T) { testDedup(e.sub(t)) })
	t.Run("Frozen", func(t *testing.T) { testFrozen(e.sub(t)) })
	t.Run("BadInput", func(t *testing.T) { testSnapshotBadInput(e.sub(t)) })
	t.Run("Mknod", func(t *testing.T) { testMknod(e.sub(t)) })
	t.Run("Usage", func(t *testing.T) { testUsage(e.sub(t)) })
	waitVotersAgree(t, e)
}

// mkput is put that makes the parent directories first.
func (e *env) mkput(rel string, data []byte) *stratapb.Attr {
	e.t.Helper()
	if err := e.c.MkdirAll(ctxT(e.t), path.Dir(e.p(rel)), 0o755); err != nil {
		e.t.Fatal(err)
	}
	return e.put(rel, data)
}

// leaderSrv is the metaserver currently leading.
func (e *env) leaderSrv() *metaserver.Server { return e.cl.Meta[e.cl.WaitLeader()].Srv }

// allCommands are the command types whose applies the one-entry test counts.
var allCommands = []metaserver.CommandType{
	metaserver.CmdMkdir, metaserver.CmdCreate, metaserver.CmdUnlink, metaserver.CmdRmdir, metaserver.CmdRename,
	metaserver.CmdSymlink, metaserver.CmdLink, metaserver.CmdSetAttr, metaserver.CmdSetXattr, metaserver.CmdRemoveXattr,
	metaserver.CmdAllocateChunks, metaserver.CmdCommitChunks, metaserver.CmdMknod, metaserver.CmdFreeze,
	metaserver.CmdCloneTree, metaserver.CmdRemoveTree, metaserver.CmdCreateSnapshot, metaserver.CmdDeleteSnapshot,
	metaserver.CmdRestoreSnapshot,
}

func commandCounts(s *metaserver.Server) map[metaserver.CommandType]uint64 {
	out := map[metaserver.CommandType]uint64{}
	for _, t := range allCommands {
		out[t] = s.CommandsApplied(t)
	}
	return out
}

// makeWideTree makes dir with n*100 files: 100 real files (with data) in
// dir/d0, cloned n-1 times (one command each), so that a big tree costs
// little to build. It returns the bytes of d0's files by name.
func (e *env) makeWideTree(dir string, n int) map[string][]byte {
	e.t.Helper()
	files := map[string][]byte{}
	for i := range 100 {
		data := randBytes(100+i*37, uint64(i))
		name := fmt.Sprintf("f%03d", i)
		e.mkput(dir+"/d0/"+name, data)
		files[name] = data
	}
	d0, err := e.c.Stat(ctxT(e.t), e.p(dir+"/d0"))
	if err != nil {
		e.t.Fatal(err)
	}
	parent, err := e.c.Stat(ctxT(e.t), e.p(dir))
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 1; i < n; i++ {
		if _, err := e.c.CloneTree(ctxT(e.t), d0.Ino, parent.Ino, fmt.Sprintf("d%d", i), false); err != nil {
			e.t.Fatal(err)
		}
	}
	return files
}

// testSnapshotOneEntry: a snapshot of a 10,000-file tree is one raft
// command (the per-type apply counters of the leader say so).
func testSnapshotOneEntry(e *env) {
	t := e.t
	files := e.makeWideTree("/wide", 100)
	leader := e.leaderSrv()
	before := commandCounts(leader)
	start := time.Now()
	info, err := e.c.CreateSnapshot(ctxT(t), e.p("/wide"), "wide-1")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("snapshot of %d inodes in %v (timed in BenchmarkSnapshot10k)", info.Inodes, time.Since(start))
	if info.Inodes != 10101 { // /wide, 100 dirs, 10,000 files
		t.Fatalf("snapshot holds %d inodes, want 10101", info.Inodes)
	}
	// Counters are per server; every voter applies every entry, but one
	// that lost leadership meanwhile may apply the snapshot a little later.
	waitForT(t, 30*time.Second, "the snapshot to be applied", func() bool {
		return leader.CommandsApplied(metaserver.CmdCreateSnapshot) > before[metaserver.CmdCreateSnapshot]
	})
	after := commandCounts(leader)
	for _, typ := range allCommands {
		want := before[typ]
		if typ == metaserver.CmdCreateSnapshot {
			want++
		}
		if after[typ] != want {
			t.Errorf("command %d applied %d times during the snapshot, want %d", typ, after[typ]-before[typ], want-before[typ])
		}
	}
	snapDir := "/" + SnapshotDir + "/wide-1"
	for _, f := range []string{"d0/f000", "d57/f042", "d99/f099"} {
		var buf bytes.Buffer
		if _, err := e.c.Get(ctxT(t), snapDir+"/"+f, &buf); err != nil || !bytes.Equal(buf.Bytes(), files[path.Base(f)]) {
			t.Fatalf("%s in the snapshot: %d bytes, err %v", f, buf.Len(), err)
		}
	}
	if _, err := e.c.DeleteSnapshot(ctxT(t), "wide-1"); err != nil {
		t.Fatal(err)
	}
}

// readTree reads every file under p: relative path -> content ("<dir>",
// "-> target" for symlinks), plus the mode.
func (e *env) readTree(p string) map[string]string {
	e.t.Helper()
	out := map[string]string{}
	var walk func(dir, rel string)
	walk = func(dir, rel string) {
		ents, err := e.c.ReadDir(ctxT(e.t), dir)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, de := range ents {
			full, r := dir+"/"+de.Name, rel+"/"+de.Name
			a, err := e.c.Lstat(ctxT(e.t), full)
			if err != nil {
				e.t.Fatal(err)
			}
			key := fmt.Sprintf("%s %o", r, a.Mode)
			switch a.Type {
			case stratapb.FileType_DIRECTORY:
				out[key] = "<dir>"
				walk(full, r)
			case stratapb.FileType_SYMLINK:
				out[key] = "-> " + a.SymlinkTarget
			default:
				var buf bytes.Buffer
				if _, err := e.c.Get(ctxT(e.t), full, &buf); err != nil {
					e.t.Fatal(err)
				}
				out[key] = buf.String()
			}
		}
	}
	walk(p, "")
	return out
}

func sameTree(t testing.TB, what string, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d entries, want %d", what, len(got), len(want))
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s: %s differs (present %v, %d bytes, want %d)", what, k, ok, len(g), len(v))
		}
	}
}

// testSnapshotCopyOnWrite: writes, unlinks and truncates in the live tree
// leave the snapshot as it was; restore gives it back exactly.
func testSnapshotCopyOnWrite(e *env) {
	t := e.t
	ctx := ctxT(t)
	e.mkput("/job/a", randBytes(300<<10, 1)) // 5 chunks of 64 KiB
	e.mkput("/job/b", randBytes(1000, 2))
	e.mkput("/job/sub/c", randBytes(70<<10, 3))
	if err := e.c.Symlink(ctx, "sub/c", e.p("/job/ln")); err != nil {
		t.Fatal(err)
	}
	want := e.readTree(e.p("/job"))
	if _, err := e.c.CreateSnapshot(ctx, e.p("/job"), "cow-1"); err != nil {
		t.Fatal(err)
	}
	snap := "/" + SnapshotDir + "/cow-1"
	// Change the live tree in every way.
	a, _ := e.c.Stat(ctx, e.p("/job/a"))
	if _, err := e.c.WriteAt(ctx, a.Ino, bytes.Repeat([]byte("x"), 100<<10), 10<<10); err != nil {
		t.Fatal(err)
	}
	c, _ := e.c.Stat(ctx, e.p("/job/sub/c"))
	if err := e.c.Truncate(ctx, c.Ino, 5); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Remove(ctx, e.p("/job/b")); err != nil {
		t.Fatal(err)
	}
	e.mkput("/job/new", []byte("new"))
	sameTree(t, "snapshot after live changes", e.readTree(snap), want)
	// The snapshot itself is read-only.
	if _, err := e.c.Put(ctx, snap+"/b", bytes.NewReader([]byte("no")), PutOptions{}); !errors.Is(err, syscall.EPERM) {
		t.Fatalf("write into a snapshot: %v, want EPERM", err)
	}
	if _, err := e.c.RestoreSnapshot(ctx, "cow-1", e.p("/restored")); err != nil {
		t.Fatal(err)
	}
	sameTree(t, "restored", e.readTree(e.p("/restored")), want)
	// The restored copy is writable, and writing it leaves the snapshot.
	e.mkput("/restored/b", []byte("changed"))
	sameTree(t, "snapshot after writes to the restored copy", e.readTree(snap), want)
	list, err := e.c.ListSnapshots(ctx, e.p("/job"))
	if err != nil || len(list) != 1 || list[0].Name != "cow-1" || list[0].SourcePath != e.p("/job") {
		t.Fatalf("list: %v, %v", list, err)
	}
	if _, err := e.c.DeleteSnapshot(ctx, "cow-1"); err != nil {
		t.Fatal(err)
	}
}

// shardsOf returns, per chunk, whether each of its shards is on its server.
func (e *env) shardPresent(ch *stratapb.Chunk) []bool {
	out := make([]bool, len(ch.Servers))
	for j, id := range ch.Servers {
		if id == 0 {
			continue
		}
		st := e.cl.Data[e.dataIndex(id)].Srv.Store()
		_, err := st.Stat(context.Background(), dataserver.Key{ChunkID: ch.Id, Index: uint32(j)})
		out[j] = err == nil
	}
	return out
}

func allTrue(b []bool) bool {
	for _, x := range b {
		if !x {
			return false
		}
	}
	return true
}

func noneTrue(b []bool) bool {
	for _, x := range b {
		if x {
			return false
		}
	}
	return true
}

// testSnapshotDeleteGC: deleting a snapshot deletes the shards of chunks
// only it held, and keeps those the live tree still holds.
func testSnapshotDeleteGC(e *env) {
	t := e.t
	ctx := ctxT(t)
	onlySnap := e.mkput("/gc/only-in-snapshot", randBytes(100<<10, 11))
	shared := e.mkput("/gc/shared", randBytes(100<<10, 12))
	gone := e.chunks(onlySnap.Ino).Chunks
	kept := e.chunks(shared.Ino).Chunks
	if _, err := e.c.CreateSnapshot(ctx, e.p("/gc"), "gc-1"); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Remove(ctx, e.p("/gc/only-in-snapshot")); err != nil {
		t.Fatal(err)
	}
	e.forget("/gc/only-in-snapshot")
	// Still held by the snapshot: wait past a GC grace and round, and the
	// shards must still be there.
	time.Sleep(2 * time.Second)
	for _, ch := range gone {
		if !allTrue(e.shardPresent(ch)) {
			t.Fatalf("chunk %d lost shards while the snapshot holds it", ch.Id)
		}
	}
	res, err := e.c.DeleteSnapshot(ctx, "gc-1")
	if err != nil {
		t.Fatal(err)
	}
	if res.FreedChunks != uint64(len(gone)) {
		t.Fatalf("freed %d chunks, want %d", res.FreedChunks, len(gone))
	}
	waitForT(t, 60*time.Second, "the snapshot-only shards to be deleted", func() bool {
		for _, ch := range gone {
			if !noneTrue(e.shardPresent(ch)) {
				return false
			}
		}
		return true
	})
	for _, ch := range kept {
		if !allTrue(e.shardPresent(ch)) {
			t.Fatalf("chunk %d of a live file lost shards", ch.Id)
		}
	}
	if got := e.get("/gc/shared"); !bytes.Equal(got, randBytes(100<<10, 12)) {
		t.Fatal("live file changed")
	}
}

func (e *env) dataBytes() uint64 {
	var n uint64
	for _, d := range e.cl.Data {
		n += d.Srv.Store().Stats().BytesUsed
	}
	return n
}

// testDedup: the same content written twice is stored once.
func testDedup(e *env) {
	t := e.t
	ctx := ctxT(t)
	data := append(randBytes(192<<10, 21), make([]byte, 64<<10)...) // 3 chunks, then one all zeros
	data = append(data, randBytes(10, 22)...)                       // and a short last one
	write := func(name string) DedupStats {
		dir, err := e.c.Stat(ctx, e.p("/"))
		if err != nil {
			t.Fatal(err)
		}
		a, err := e.c.Create(ctx, dir.Ino, name, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		st, err := e.c.WriteFileDedup(ctx, a.Ino, bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		e.record("/"+name, data)
		return st
	}
	first := write("one")
	if first.Logical != int64(len(data)) || first.Written != int64(len(data)-64<<10) || first.Holes != 1 || first.Shared != 0 {
		t.Fatalf("first write: %+v", first)
	}
	bytesBefore := e.dataBytes()
	second := write("two")
	if second.Written != 0 || second.Shared != second.Chunks || second.Chunks != first.Chunks {
		t.Fatalf("second write of the same content: %+v", second)
	}
	if after := e.dataBytes(); after > bytesBefore {
		t.Fatalf("dataservers grew by %d bytes for a duplicate", after-bytesBefore)
	}
	if !bytes.Equal(e.get("/two"), data) || !bytes.Equal(e.get("/one"), data) {
		t.Fatal("deduplicated files do not read back")
	}
	one, two := e.chunks(mustStat(e, "/one").Ino).Chunks, e.chunks(mustStat(e, "/two").Ino).Chunks
	for i := range one {
		if one[i].Id != two[i].Id || len(one[i].Hash) != 32 {
			t.Fatalf("chunk %d: ids %d and %d, hash %x", i, one[i].Id, two[i].Id, one[i].Hash)
		}
	}
	// Dropping one copy keeps the other readable (its references hold).
	if err := e.c.Remove(ctx, e.p("/one")); err != nil {
		t.Fatal(err)
	}
	e.forget("/one")
	time.Sleep(2 * time.Second) // past GC grace and a GC round
	if !bytes.Equal(e.get("/two"), data) {
		t.Fatal("the remaining copy lost data")
	}
}

func mustStat(e *env, rel string) *stratapb.Attr {
	e.t.Helper()
	a, err := e.c.Stat(ctxT(e.t), e.p(rel))
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

// testFrozen: every mutation inside a frozen tree fails with EPERM; reads
// work.
func testFrozen(e *env) {
	t := e.t
	ctx := ctxT(t)
	data := randBytes(5000, 31)
	e.mkput("/img/etc/f", data)
	e.mkput("/outside", []byte("x"))
	if _, err := e.c.FreezePath(ctx, e.p("/img")); err != nil {
		t.Fatal(err)
	}
	f := mustStat(e, "/img/etc/f")
	etc := mustStat(e, "/img/etc")
	out := mustStat(e, "/outside")
	ops := map[string]func() error{
		"put": func() error {
			_, err := e.c.Put(ctx, e.p("/img/etc/new"), bytes.NewReader(nil), PutOptions{})
			return err
		},
		"overwrite": func() error {
			_, err := e.c.WriteAt(ctx, f.Ino, []byte("y"), 0)
			return err
		},
		"truncate": func() error { return e.c.Truncate(ctx, f.Ino, 1) },
		"chmod": func() error {
			_, err := e.c.SetAttr(ctx, f.Ino, SetAttrIn{Valid: uint32(stratapb.SetAttrMask_SETATTR_MODE), Mode: 0o600})
			return err
		},
		"mkdir":   func() error { _, err := e.c.Mkdir(ctx, e.p("/img/d"), 0o755); return err },
		"unlink":  func() error { return e.c.Remove(ctx, e.p("/img/etc/f")) },
		"rmdir":   func() error { return e.c.RmdirAt(ctx, mustStat(e, "/img").Ino, "etc") },
		"symlink": func() error { return e.c.Symlink(ctx, "x", e.p("/img/l")) },
		"link in": func() error { return e.c.Link(ctx, e.p("/outside"), e.p("/img/o")) },
		"link out": func() error {
			_, err := e.c.LinkAt(ctx, f.Ino, mustStat(e, "/").Ino, "o")
			return err
		},
		"rename out": func() error { return e.c.Rename(ctx, e.p("/img/etc/f"), e.p("/g")) },
		"rename in":  func() error { return e.c.Rename(ctx, e.p("/outside"), e.p("/img/etc/o")) },
		"mknod": func() error {
			_, err := e.c.MknodAt(ctx, etc.Ino, "wh", stratapb.FileType_CHARDEV, 0, 0, Owner{})
			return err
		},
		"clone into": func() error {
			_, err := e.c.CloneTree(ctx, out.Ino, etc.Ino, "c", false)
			return err
		},
		"remove tree": func() error { _, err := e.c.RemoveTreePath(ctx, e.p("/img"), false); return err },
	}
	for name, op := range ops {
		if err := op(); !errors.Is(err, syscall.EPERM) {
			t.Errorf("%s in a frozen tree: %v, want EPERM", name, err)
		}
	}
	if got := e.get("/img/etc/f"); !bytes.Equal(got, data) {
		t.Fatal("frozen file changed")
	}
	if a := mustStat(e, "/img/etc/f"); !a.Frozen || a.Mode != f.Mode {
		t.Fatalf("attr after refused ops: %v", a)
	}
	// A frozen tree is removed whole, on purpose.
	if _, err := e.c.RemoveTreePath(ctx, e.p("/img"), true); err != nil {
		t.Fatal(err)
	}
	e.forget("/img")
}

// testSnapshotBadInput: clear errors, nothing half-made.
func testSnapshotBadInput(e *env) {
	t := e.t
	ctx := ctxT(t)
	e.mkput("/src/f", []byte("data"))
	if _, err := e.c.CreateSnapshot(ctx, e.p("/src"), "bad-1"); err != nil {
		t.Fatal(err)
	}
	before, err := e.c.ListSnapshots(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		fn   func() error
		want syscall.Errno
	}{
		{"missing path", func() error { _, err := e.c.CreateSnapshot(ctx, e.p("/nope"), "bad-2"); return err }, syscall.ENOENT},
		{"file, not a directory", func() error { _, err := e.c.CreateSnapshot(ctx, e.p("/src/f"), "bad-2"); return err }, syscall.ENOTDIR},
		{"duplicate name", func() error { _, err := e.c.CreateSnapshot(ctx, e.p("/src"), "bad-1"); return err }, syscall.EEXIST},
		{"name with /", func() error { _, err := e.c.CreateSnapshot(ctx, e.p("/src"), "a/b"); return err }, syscall.EINVAL},
		{"empty name", func() error { _, err := e.c.CreateSnapshot(ctx, e.p("/src"), ""); return err }, syscall.EINVAL},
		{"restore onto existing", func() error { _, err := e.c.RestoreSnapshot(ctx, "bad-1", e.p("/src")); return err }, syscall.EEXIST},
		{"restore missing", func() error { _, err := e.c.RestoreSnapshot(ctx, "nope", e.p("/r")); return err }, syscall.ENOENT},
		{"delete missing", func() error { _, err := e.c.DeleteSnapshot(ctx, "nope"); return err }, syscall.ENOENT},
		{"remove the area", func() error { _, err := e.c.RemoveTreePath(ctx, "/"+SnapshotDir, true); return err }, syscall.EPERM},
	}
	for _, c := range cases {
		err := c.fn()
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		} else {
			t.Logf("%s: %v", c.name, err)
		}
	}
	after, err := e.c.ListSnapshots(ctx, "")
	if err != nil || len(after) != len(before) {
		t.Fatalf("snapshots changed by refused calls: %d -> %d (%v)", len(before), len(after), err)
	}
	if _, err := e.c.Stat(ctx, e.p("/r")); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("a failed restore left something: %v", err)
	}
	if _, err := e.c.DeleteSnapshot(ctx, "bad-1"); err != nil {
		t.Fatal(err)
	}
}

func testMknod(e *env) {
	t := e.t
	ctx := ctxT(t)
	dir := mustStat(e, "/")
	for _, c := range []struct {
		name string
		typ  stratapb.FileType
		rdev uint32
	}{{"whiteout", stratapb.FileType_CHARDEV, 0}, {"sda", stratapb.FileType_BLOCKDEV, 8 << 8}, {"fifo", stratapb.FileType_FIFO, 0}, {"sock", stratapb.FileType_SOCKET, 0}} {
		if _, err := e.c.MknodAt(ctx, dir.Ino, c.name, c.typ, 0o640, c.rdev, Owner{Uid: 7, Gid: 8}); err != nil {
			t.Fatal(err)
		}
		a := mustStat(e, "/"+c.name)
		if a.Type != c.typ || a.Rdev != c.rdev || a.Mode != 0o640 || a.Uid != 7 {
			t.Fatalf("%s: %v", c.name, a)
		}
	}
	if _, err := e.c.Mknod(ctx, e.p("/reg"), stratapb.FileType_REGULAR, 0o644, 0, Owner{}); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("mknod of a regular file: %v, want EINVAL", err)
	}
}

// testUsage: logical bytes against stored bytes (erasure coding, sharing).
func testUsage(e *env) {
	t := e.t
	ctx := ctxT(t)
	a := e.mkput("/a", randBytes(128<<10, 41)) // two 4+2 chunks of 64 KiB
	if _, err := e.c.CloneTree(ctx, a.Ino, mustStat(e, "/").Ino, "b", false); err != nil {
		t.Fatal(err)
	}
	u, err := e.c.Usage(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	var mine *stratapb.Usage
	for _, d := range u.Dirs {
		if "/"+d.Name == e.root {
			mine = d
		}
	}
	// Two files of 128 KiB sharing two chunks of 6 shards of 16 KiB, held
	// by nothing outside the directory.
	if mine == nil || mine.LogicalBytes != 256<<10 || mine.StoredBytes != 2*6*16<<10 || mine.Chunks != 2 || mine.ChunkRefs != 4 || mine.SharedBytes != 0 {
		t.Fatalf("usage of %s: %v", e.root, mine)
	}
	if u.Total.LogicalBytes < mine.LogicalBytes || u.Total.StoredBytes < mine.StoredBytes {
		t.Fatalf("total %v smaller than a part %v", u.Total, mine)
	}
	// A copy outside the directory: its chunks are now shared.
	if _, err := e.c.ClonePath(ctx, e.p("/a"), e.root+"-copy", false); err != nil {
		t.Fatal(err)
	}
	u, err = e.c.Usage(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range u.Dirs {
		if "/"+d.Name == e.root && d.SharedBytes != d.StoredBytes {
			t.Fatalf("after a copy outside: shared %d of %d stored bytes", d.SharedBytes, d.StoredBytes)
		}
	}
}

// BenchmarkSnapshot10k: snapshot of a 10,000-file tree (100 directories of
// 100 files with data), one raft command each, through the client.
func BenchmarkSnapshot10k(b *testing.B) {
	e := newEnv(b, 6, testPolicy())
	e = e.in(b, "bench")
	e.makeWideTree("/wide", 100)
	ctx := ctxT(b)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := e.c.CreateSnapshot(ctx, e.p("/wide"), fmt.Sprintf("bench-%d", i)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteFileDedup: 64 MiB through WriteFileDedup with 4 MiB
// chunks (4+2), first as new content, then the same content into another
// file (everything shared, nothing written).
func BenchmarkWriteFileDedup(b *testing.B) {
	e := newEnv(b, 6, nil)
	ctx := ctxT(b)
	data := randBytes(64<<20, 99)
	root := mustStat(e, "/")
	n := 0
	write := func(b *testing.B, data []byte) DedupStats {
		n++
		a, err := e.c.Create(ctx, root.Ino, fmt.Sprintf("f%d", n), 0o644)
		if err != nil {
			b.Fatal(err)
		}
		st, err := e.c.WriteFileDedup(ctx, a.Ino, bytes.NewReader(data))
		if err != nil {
			b.Fatal(err)
		}
		return st
	}
	b.Run("put-for-comparison", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for i := 0; b.Loop(); i++ {
			if _, err := e.c.Put(ctx, fmt.Sprintf("/put%d", i), bytes.NewReader(data), PutOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("new", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for i := 0; b.Loop(); i++ {
			data[0] = byte(i) // fresh content each time (one chunk differs: refresh all)
			for j := 0; j < len(data); j += 4 << 20 {
				data[j] = byte(i)
				data[j+1] = byte(n)
			}
			if st := write(b, data); st.Written != int64(len(data)) {
				b.Fatalf("wrote %d of %d bytes", st.Written, len(data))
			}
		}
	})
	b.Run("duplicate", func(b *testing.B) {
		write(b, data)
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if st := write(b, data); st.Written != 0 {
				b.Fatalf("wrote %d bytes of a duplicate", st.Written)
			}
		}
	})
}

// waitVotersAgree waits until every running voter holds the same state
// (the FSM digest covers the namespace, flags, reference counts, content
// hashes and snapshots), which the tree commands must reach by walking
// trees in the same order everywhere.
func waitVotersAgree(t testing.TB, e *env) {
	t.Helper()
	waitForT(t, 60*time.Second, "the voters to agree", func() bool {
		var first uint64
		for i, m := range e.cl.Meta {
			if m.Srv == nil {
				continue
			}
			d := m.Srv.Stats().Digest
			if i > 0 && first != 0 && d != first {
				return false
			}
			first = d
		}
		return true
	})
}

// TestSnapStateThroughRaftSnapshot: a voter that was down while the others
// made snapshots, clones, dedup writes and frozen trees, and compacted
// their logs, catches up through an installed raft snapshot and ends with
// the same state: reference counts, content hashes, flags and the snapshot
// table travel in FSM snapshots.
func TestSnapStateThroughRaftSnapshot(t *testing.T) {
	cl := testcluster.New(t, testcluster.Options{Meta: 3, Data: 6, Policy: testPolicy(), SnapshotThreshold: 64, TrailingLogs: 8})
	c := newTestClient(t, cl.MetaAddrs(), cl.ClientTLS())
	e := &env{cluster: &cluster{cl: cl, c: c, files: map[string][]byte{}}, t: t}
	for _, d := range cl.Data {
		e.ids = append(e.ids, d.Srv.ID())
	}
	ctx := ctxT(t)
	lagging := (cl.WaitLeader() + 1) % 3
	cl.KillMeta(lagging)
	for i := range 30 {
		e.mkput(fmt.Sprintf("/job/f%02d", i), randBytes(1000+i, uint64(i)))
	}
	root := mustStat(e, "/")
	for _, name := range []string{"d1", "d2"} {
		a, err := c.Create(ctx, root.Ino, name, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.WriteFileDedup(ctx, a.Ino, bytes.NewReader(randBytes(200<<10, 5))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.CreateSnapshot(ctx, "/job", "s1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ClonePath(ctx, "/job", "/img", true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.MknodAt(ctx, root.Ino, "wh", stratapb.FileType_CHARDEV, 0, 0, Owner{}); err != nil {
		t.Fatal(err)
	}
	waitForT(t, 30*time.Second, "the others to snapshot their state", func() bool {
		return cl.Meta[cl.WaitLeader()].Srv.RaftStats()["last_snapshot_index"] != "0"
	})
	cl.RestartMeta(lagging)
	waitVotersAgree(t, e)
	if idx := cl.Meta[lagging].Srv.RaftStats()["last_snapshot_index"]; idx == "0" {
		t.Fatal("the lagging voter caught up without a snapshot")
	}
	// The cluster goes on with the restored voter as one of its two
	// (the old leader is stopped): the restored state takes part in every
	// commit from here, and may lead.
	if l := cl.WaitLeader(); l != lagging {
		cl.KillMeta(l)
	}
	if _, err := c.DeleteSnapshot(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if got := e.get("/img/f07"); !bytes.Equal(got, randBytes(1007, 7)) {
		t.Fatal("cloned file reads back wrong")
	}
	waitVotersAgree(t, e)
}
