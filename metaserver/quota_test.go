package metaserver

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// usageOfQuotas copies every quota's usage.
func usageOfQuotas(s *state) map[uint32][2]uint64 {
	out := map[uint32][2]uint64{}
	for id, q := range s.ten.quotas {
		out[id] = [2]uint64{q.bytes, q.files}
	}
	return out
}

// checkUsage compares the usage kept by Apply with usage recomputed from
// the inodes.
func checkUsage(t *testing.T, tf *testFSM, when string) {
	t.Helper()
	st := tf.f.st
	kept := usageOfQuotas(st)
	st.recomputeQuotaUsage()
	if again := usageOfQuotas(st); fmt.Sprint(again) != fmt.Sprint(kept) {
		t.Fatalf("%s: usage kept by Apply %v, recomputed %v", when, kept, again)
	}
}

// TestQuotaUsageModel applies random namespace operations inside a tenant
// with nested directory quotas and checks, after each, that the usage
// kept incrementally equals the usage recomputed from the inodes, and that
// it survives a snapshot and restore.
func TestQuotaUsageModel(t *testing.T) {
	tf := newTestFSM(t)
	for i := 1; i <= 6; i++ {
		if _, err := tf.apply(CmdRegisterDataServer, nil, &stratapb.RegisterDataServerCommand{Uuid: fmt.Sprint("ds", i), Addr: "127.0.0.1:1"}); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := tf.apply(CmdCreateTenant, nil, &stratapb.CreateTenantRequest{Name: "t", TokenSha256: bytes.Repeat([]byte{1}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	root := resp.(*stratapb.CreateTenantResponse).Tenant.RootIno
	hdr := &stratapb.RequestHeader{Tenant: "t"}
	if _, err := tf.apply(CmdSetQuota, nil, &stratapb.SetQuotaRequest{Tenant: "t", MaxBytes: 40 << 20, MaxFiles: 400}); err != nil {
		t.Fatal(err)
	}
	dirs := []uint64{root}
	var files []uint64
	names := 0
	name := func() string { names++; return fmt.Sprint("n", names) }
	r := rand.New(rand.NewPCG(1, 2))
	pick := func(s []uint64) uint64 { return s[r.IntN(len(s))] }
	sawQuota := false
	for step := 0; step < 600; step++ {
		var err error
		switch op := r.IntN(11); op {
		case 0:
			var resp any
			resp, err = tf.apply(CmdMkdir, hdr, &stratapb.MkdirRequest{Header: hdr, Parent: pick(dirs), Name: name(), Mode: 0o755})
			if err == nil {
				dirs = append(dirs, resp.(*stratapb.MkdirResponse).Attr.Ino)
			}
		case 1, 2:
			var resp any
			resp, err = tf.apply(CmdCreate, hdr, &stratapb.CreateRequest{Header: hdr, Parent: pick(dirs), Name: name(), Mode: 0o644})
			if err == nil {
				files = append(files, resp.(*stratapb.CreateResponse).Attr.Ino)
			}
		case 3:
			if len(files) > 0 {
				_, err = tf.apply(CmdCommitChunks, hdr, &stratapb.CommitChunksRequest{Header: hdr, Ino: pick(files), MinSize: uint64(r.IntN(2 << 20))})
			}
		case 4:
			if len(files) > 0 {
				_, err = tf.apply(CmdSetAttr, hdr, &stratapb.SetAttrRequest{Header: hdr, Ino: pick(files), Valid: uint32(stratapb.SetAttrMask_SETATTR_SIZE), Size: uint64(r.IntN(1 << 20))})
			}
		case 5:
			_, err = tf.apply(CmdSymlink, hdr, &stratapb.SymlinkRequest{Header: hdr, Parent: pick(dirs), Name: name(), Target: "some/where/far"})
		case 6:
			if len(files) > 0 {
				_, err = tf.apply(CmdLink, hdr, &stratapb.LinkRequest{Header: hdr, Ino: pick(files), NewParent: pick(dirs), NewName: name()})
			}
		case 7: // remove a random entry of a random directory
			d := tf.f.st.inodes[pick(dirs)]
			for n := range d.children {
				if n != SnapshotDir {
					_, err = tf.apply(CmdRemoveTree, hdr, &stratapb.RemoveTreeRequest{Header: hdr, Parent: d.ino, Name: n, AllowFrozen: true})
					break
				}
			}
		case 8:
			d := tf.f.st.inodes[pick(dirs)]
			for n := range d.children {
				_, err = tf.apply(CmdRename, hdr, &stratapb.RenameRequest{Header: hdr, SrcParent: d.ino, SrcName: n, DstParent: pick(dirs), DstName: name()})
				break
			}
		case 9:
			if d := pick(dirs); d != root {
				_, err = tf.apply(CmdCloneTree, hdr, &stratapb.CloneTreeRequest{Header: hdr, Src: d, DstParent: pick(dirs), DstName: name()})
			}
		case 10:
			if d := pick(dirs); d != root && r.IntN(4) == 0 {
				_, err = tf.apply(CmdSetQuota, hdr, &stratapb.SetQuotaRequest{Header: hdr, Ino: d, MaxFiles: uint64(5 + r.IntN(30)), MaxBytes: uint64(r.IntN(8 << 20))})
				sawQuota = sawQuota || err == nil
			} else {
				_, err = tf.apply(CmdCreateSnapshot, hdr, &stratapb.CreateSnapshotRequest{Header: hdr, Src: pick(dirs), Name: name()})
			}
		}
		if e, ok := errnoOf(err); err != nil && !ok {
			t.Fatalf("step %d: %v", step, err)
		} else if ok && e.errno == syscall.EIO {
			t.Fatalf("step %d: %v", step, err)
		}
		// Directories removed by a tree removal drop out of the pick lists.
		dirs = liveInodes(tf.f.st, dirs)
		files = liveInodes(tf.f.st, files)
		checkUsage(t, tf, fmt.Sprint("step ", step))
	}
	if !sawQuota {
		t.Fatal("no directory quota was set: the test did not test nesting")
	}
	before := usageOfQuotas(tf.f.st)
	var buf bytes.Buffer
	if err := tf.f.st.writeSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	st, err := readSnapshot(&buf, tf.f.def)
	if err != nil {
		t.Fatal(err)
	}
	if after := usageOfQuotas(st); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("usage after restore %v, before %v", after, before)
	}
	tq := st.ten.quotas[st.ten.byName["t"].quota]
	t.Logf("tenant usage: %d bytes, %d files, %d quotas", tq.bytes, tq.files, len(st.ten.quotas))
}

func liveInodes(s *state, inos []uint64) []uint64 {
	out := inos[:0]
	for _, ino := range inos {
		if _, ok := s.inodes[ino]; ok {
			out = append(out, ino)
		}
	}
	return out
}

// TestQuotaEDQUOT: the limit is exact: up to it succeeds, one more fails.
func TestQuotaEDQUOT(t *testing.T) {
	tf := newTestFSM(t)
	resp, err := tf.apply(CmdCreateTenant, nil, &stratapb.CreateTenantRequest{Name: "t", TokenSha256: bytes.Repeat([]byte{2}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	root := resp.(*stratapb.CreateTenantResponse).Tenant.RootIno
	hdr := &stratapb.RequestHeader{Tenant: "t"}
	if _, err := tf.apply(CmdSetQuota, nil, &stratapb.SetQuotaRequest{Tenant: "t", MaxBytes: 1000, MaxFiles: 3}); err != nil {
		t.Fatal(err)
	}
	r, err := tf.apply(CmdCreate, hdr, &stratapb.CreateRequest{Header: hdr, Parent: root, Name: "a", Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	a := r.(*stratapb.CreateResponse).Attr.Ino
	_, err = tf.apply(CmdCommitChunks, hdr, &stratapb.CommitChunksRequest{Header: hdr, Ino: a, MinSize: 1000})
	wantErrno(t, err, 0)
	_, err = tf.apply(CmdCommitChunks, hdr, &stratapb.CommitChunksRequest{Header: hdr, Ino: a, MinSize: 1001})
	wantErrno(t, err, syscall.EDQUOT)
	_, err = tf.apply(CmdSetAttr, hdr, &stratapb.SetAttrRequest{Header: hdr, Ino: a, Valid: uint32(stratapb.SetAttrMask_SETATTR_SIZE), Size: 1001})
	wantErrno(t, err, syscall.EDQUOT)
	_, err = tf.apply(CmdMkdir, hdr, &stratapb.MkdirRequest{Header: hdr, Parent: root, Name: "d", Mode: 0o755})
	wantErrno(t, err, 0) // root, a, d: 3 files
	_, err = tf.apply(CmdSymlink, hdr, &stratapb.SymlinkRequest{Header: hdr, Parent: root, Name: "l", Target: "x"})
	wantErrno(t, err, syscall.EDQUOT)
	_, err = tf.apply(CmdCreateSnapshot, hdr, &stratapb.CreateSnapshotRequest{Header: hdr, Src: root, Name: "s"})
	wantErrno(t, err, syscall.EDQUOT)
	// Shrinking is always allowed, and frees room.
	_, err = tf.apply(CmdSetAttr, hdr, &stratapb.SetAttrRequest{Header: hdr, Ino: a, Valid: uint32(stratapb.SetAttrMask_SETATTR_SIZE), Size: 0})
	wantErrno(t, err, 0)
	_, err = tf.apply(CmdUnlink, hdr, &stratapb.UnlinkRequest{Header: hdr, Parent: root, Name: "a"})
	wantErrno(t, err, 0)
	_, err = tf.apply(CmdSymlink, hdr, &stratapb.SymlinkRequest{Header: hdr, Parent: root, Name: "l", Target: "x"})
	wantErrno(t, err, 0)
	checkUsage(t, tf, "end")
}
