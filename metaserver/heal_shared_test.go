package metaserver

import (
	"testing"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// TestRepairMovesEveryCopyOfASharedChunk: a chunk held by a file, its
// snapshot and a deduplicated twin has one layout copy per holder. A repair
// (or drain, or rebalance move) committed through one holder must move the
// shard in every copy, or the others would keep naming a shard that is now
// garbage and lose redundancy silently. Found when the self-healing and the
// snapshot work were merged.
func TestRepairMovesEveryCopyOfASharedChunk(t *testing.T) {
	tf := newTestFSM(t).withServers()
	st := tf.f.st
	src, f := tf.snapTree()
	id := st.inodes[f].chunks[0].id
	resp, err := tf.apply(CmdCreateSnapshot, nil, &stratapb.CreateSnapshotRequest{Src: src, Name: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	root := st.inodes[resp.(*stratapb.CreateSnapshotResponse).Snapshot.RootIno]
	snapF := st.inodes[st.inodes[root.children["sub"]].children["f"]]

	// A content-addressed chunk shared by two files.
	data := []byte("shared content")
	a, b := tf.create(rootIno, "a"), tf.create(rootIno, "b")
	hid := tf.writeChunk(a, 0, data, true)
	if err := tf.share(b, 0, hid, data); err != nil {
		t.Fatal(err)
	}

	garbage := len(st.garbage)
	for _, c := range []struct {
		ino, id uint64
	}{{f, id}, {a, hid}} {
		if _, err := tf.apply(CmdCommitRepair, nil, &stratapb.CommitRepairCommand{
			Ino: c.ino, ChunkIndex: 0, ChunkId: c.id, ShardIndex: 1, ExpectServer: 2, NewServer: 4,
		}); err != nil {
			t.Fatal(err)
		}
	}
	for name, n := range map[string]*inode{"file": st.inodes[f], "snapshot copy": snapF, "dedup a": st.inodes[a], "dedup b": st.inodes[b]} {
		if got := n.chunks[0].servers[1]; got != 4 {
			t.Errorf("%s: shard 1 on server %d, want 4", name, got)
		}
	}
	if e := st.byHash[st.hashOf[hid]]; e == nil || e.servers[1] != 4 {
		t.Errorf("content index still names the old place: %v", e)
	}
	if got := len(st.garbage) - garbage; got != 2 {
		t.Errorf("%d garbage entries for the two moved shards, want 2 (one per chunk)", got)
	}
	// A second commit for another holder finds the shard moved already.
	if _, err := tf.apply(CmdCommitRepair, nil, &stratapb.CommitRepairCommand{
		Ino: snapF.ino, ChunkIndex: 0, ChunkId: id, ShardIndex: 1, ExpectServer: 2, NewServer: 5,
	}); err == nil {
		t.Fatal("a stale repair of another holder was committed")
	}
}
