package client_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/internal/audit"
	"github.com/strata-hpc/strata/internal/rpcerr"
	"github.com/strata-hpc/strata/internal/testcluster"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// Two tenants on one in-process cluster (3 raft metaservers, 6
// dataservers, real gRPC): tenant A tries every RPC against what belongs
// to tenant B (inode numbers and chunk ids learned by the administrator
// reading B's tree) and must get exactly the error a missing object gets.

type tenantEnv struct {
	cl        *testcluster.Cluster
	admin     *client.Client
	a, b      *client.Client
	tokA      string
	rootA     uint64
	rootB     uint64
	bFile     uint64 // /data/secret of B
	bDir      uint64 // /data of B
	bChunk    *stratapb.Chunk
	bHashed   *stratapb.Chunk // a content-addressed chunk of B
	aFile     uint64
	missIno   uint64
	missChunk uint64
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func tenantClient(t testing.TB, cl *testcluster.Cluster, token string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{MetaAddrs: cl.MetaAddrs(), TLS: cl.ClientTLS(), TenantToken: token, Logger: quietLogger(), ShardTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newTenantEnv(t *testing.T) *tenantEnv {
	t.Helper()
	ctx := ctxFor(t)
	cl, admin := newClusterClient(t, 6)
	e := &tenantEnv{cl: cl, admin: admin}
	tokA, infoA, err := admin.CreateTenant(ctx, "alpha", client.TenantOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tokB, infoB, err := admin.CreateTenant(ctx, "beta", client.TenantOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.tokA, e.rootA, e.rootB = tokA, infoA.RootIno, infoB.RootIno
	e.a, e.b = tenantClient(t, cl, tokA), tenantClient(t, cl, tokB)

	// B's things: a directory, a file, a content-addressed file, a
	// snapshot, a frozen tree (an image), a lock.
	if _, err := e.b.Mkdir(ctx, "/data", 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := e.b.Put(ctx, "/data/secret", bytes.NewReader(pattern(300<<10, 7)), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	hashed, err := e.b.Create(ctx, 1, "hashed", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.b.WriteFileDedup(ctx, hashed.GetIno(), bytes.NewReader(pattern(64<<10, 9))); err != nil {
		t.Fatal(err)
	}
	if _, err := e.b.CreateSnapshot(ctx, "/data", "snapB"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.b.ClonePath(ctx, "/data", "/image", true); err != nil {
		t.Fatal(err)
	}

	// The administrator reads B's metadata: inode numbers and chunk ids.
	st, err := admin.Stat(ctx, "/.tenants/beta/data/secret")
	if err != nil {
		t.Fatal(err)
	}
	e.bFile = st.GetIno()
	dir, err := admin.Stat(ctx, "/.tenants/beta/data")
	if err != nil {
		t.Fatal(err)
	}
	e.bDir = dir.GetIno()
	e.bChunk = firstChunk(t, admin, e.bFile)
	hst, err := admin.Stat(ctx, "/.tenants/beta/hashed")
	if err != nil {
		t.Fatal(err)
	}
	e.bHashed = firstChunk(t, admin, hst.GetIno())
	if len(e.bHashed.GetHash()) == 0 {
		t.Fatal("the dedup write stored no content hash")
	}

	af, err := e.a.Put(ctx, "/mine", bytes.NewReader(pattern(10<<10, 3)), client.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.aFile = af.GetIno()
	e.missIno, e.missChunk = 1<<40, 1<<40
	return e
}

func firstChunk(t *testing.T, c *client.Client, ino uint64) *stratapb.Chunk {
	t.Helper()
	var out *stratapb.Chunk
	err := c.Meta().Call(ctxFor(t), func(ctx context.Context, mc stratapb.MetaClient) error {
		resp, err := mc.GetChunks(ctx, &stratapb.GetChunksRequest{Header: c.NewHeader(), Ino: ino})
		if len(resp.GetChunks()) > 0 {
			out = resp.GetChunks()[0]
		}
		return err
	})
	if err != nil || out == nil {
		t.Fatalf("chunks of inode %d: %v (%v)", ino, out, err)
	}
	return out
}

var digits = regexp.MustCompile(`[0-9]+`)

// shape is what a caller can tell of an error: code, errno and message
// with numbers masked (the number asked for is echoed back).
func shape(err error) string {
	if err == nil {
		return "<nil>"
	}
	st := status.Convert(err)
	return st.Code().String() + "/" + rpcerr.ErrnoOf(err).Error() + "/" + digits.ReplaceAllString(st.Message(), "N")
}

// rpcCase calls one RPC as the caller c with inode ino and chunk ch
// (whichever the RPC takes).
type rpcCase struct {
	name string
	call func(ctx context.Context, cc grpc.ClientConnInterface, h *stratapb.RequestHeader, ino uint64, ch *stratapb.Chunk) error
}

func chunkCommit(ch *stratapb.Chunk, idx uint64) *stratapb.Chunk {
	c := &stratapb.Chunk{
		Index: idx, Id: ch.GetId(), Size: ch.GetSize(), Scheme: ch.GetScheme(), DataShards: ch.GetDataShards(),
		ParityShards: ch.GetParityShards(), ShardSize: ch.GetShardSize(), Servers: ch.GetServers(), Crc32C: ch.GetCrc32C(),
	}
	return c
}

func isolationCases(e *tenantEnv) []rpcCase {
	meta := func(cc grpc.ClientConnInterface) stratapb.MetaClient { return stratapb.NewMetaClient(cc) }
	snap := func(cc grpc.ClientConnInterface) stratapb.SnapClient { return stratapb.NewSnapClient(cc) }
	lock := func(cc grpc.ClientConnInterface) stratapb.LockClient { return stratapb.NewLockClient(cc) }
	type h = stratapb.RequestHeader
	type C = context.Context
	type I = grpc.ClientConnInterface
	type K = *stratapb.Chunk
	return []rpcCase{
		{"GetAttr", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			_, err := meta(cc).GetAttr(ctx, &stratapb.GetAttrRequest{Header: hd, Ino: ino})
			return err
		}},
		{"Lookup", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			_, err := meta(cc).Lookup(ctx, &stratapb.LookupRequest{Header: hd, Parent: ino, Name: "secret"})
			return err
		}},
		{"Batch", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			resp, err := meta(cc).Batch(ctx, &stratapb.BatchRequest{Header: hd, Ops: []*stratapb.BatchOp{{Op: &stratapb.BatchOp_Getattr{Getattr: &stratapb.GetAttrRequest{Ino: ino}}}}})
			if err != nil {
				return err
			}
			r := resp.GetResults()[0]
			return rpcerr.Errno(syscall.Errno(r.GetErrno()), "%s", r.GetMessage())
		}},
		{"SetAttr", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			_, err := meta(cc).SetAttr(ctx, &stratapb.SetAttrRequest{Header: hd, Ino: ino, Valid: uint32(stratapb.SetAttrMask_SETATTR_MODE), Mode: 0o777})
			return err
		}},
		{"Mkdir", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			_, err := meta(cc).Mkdir(ctx, &stratapb.MkdirRequest{Header: hd, Parent: ino, Name: "x", Mode: 0o755})
			return err
		}},
		{"Create", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			_, err := meta(cc).Create(ctx, &stratapb.CreateRequest{Header: hd, Parent: ino, Name: "x", Mode: 0o644})
			return err
		}},
		{"Unlink", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			_, err := meta(cc).Unlink(ctx, &stratapb.UnlinkRequest{Header: hd, Parent: ino, Name: "secret"})
			return err
		}},
		{"Rmdir", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			_, err := meta(cc).Rmdir(ctx, &stratapb.RmdirRequest{Header: hd, Parent: ino, Name: "secret"})
			return err
		}},
		{"RenameFrom", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			_, err := meta(cc).Rename(ctx, &stratapb.RenameRequest{Header: hd, SrcParent: ino, SrcName: "secret", DstParent: 1, DstName: "stolen"})
			return err
		}},
		{"RenameInto", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			_, err := meta(cc).Rename(ctx, &stratapb.RenameRequest{Header: hd, SrcParent: 1, SrcName: "mine", DstParent: ino, DstName: "planted"})
			return err
		}},
		{"ReadDir", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			_, err := meta(cc).ReadDir(ctx, &stratapb.ReadDirRequest{Header: hd, Ino: ino})
			return err
		}},
		{"Symlink", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			_, err := meta(cc).Symlink(ctx, &stratapb.SymlinkRequest{Header: hd, Parent: ino, Name: "l", Target: "/x"})
			return err
		}},
		{"LinkFrom", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			_, err := meta(cc).Link(ctx, &stratapb.LinkRequest{Header: hd, Ino: ino, NewParent: 1, NewName: "stolen"})
			return err
		}},
		{"GetXattr", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			_, err := meta(cc).GetXattr(ctx, &stratapb.GetXattrRequest{Header: hd, Ino: ino, Name: "user.x"})
			return err
		}},
		{"SetXattr", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			_, err := meta(cc).SetXattr(ctx, &stratapb.SetXattrRequest{Header: hd, Ino: ino, Name: "user.x", Value: []byte("v")})
			return err
		}},
		{"ListXattr", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			_, err := meta(cc).ListXattr(ctx, &stratapb.ListXattrRequest{Header: hd, Ino: ino})
			return err
		}},
		{"RemoveXattr", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			_, err := meta(cc).RemoveXattr(ctx, &stratapb.RemoveXattrRequest{Header: hd, Ino: ino, Name: "user.x"})
			return err
		}},
		{"AllocateChunks", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			_, err := meta(cc).AllocateChunks(ctx, &stratapb.AllocateChunksRequest{Header: hd, Ino: ino, Count: 1})
			return err
		}},
		{"CommitChunksIno", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			_, err := meta(cc).CommitChunks(ctx, &stratapb.CommitChunksRequest{Header: hd, Ino: ino, MinSize: 1})
			return err
		}},
		{"GetChunks", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			_, err := meta(cc).GetChunks(ctx, &stratapb.GetChunksRequest{Header: hd, Ino: ino})
			return err
		}},
		{"Mknod", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			_, err := snap(cc).Mknod(ctx, &stratapb.MknodRequest{Header: hd, Parent: ino, Name: "f", Type: stratapb.FileType_FIFO, Mode: 0o644})
			return err
		}},
		{"Freeze", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			_, err := snap(cc).Freeze(ctx, &stratapb.FreezeRequest{Header: hd, Ino: ino})
			return err
		}},
		{"CloneTreeFrom", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			_, err := snap(cc).CloneTree(ctx, &stratapb.CloneTreeRequest{Header: hd, Src: ino, DstParent: 1, DstName: "copy"})
			return err
		}},
		{"CloneTreeInto", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			_, err := snap(cc).CloneTree(ctx, &stratapb.CloneTreeRequest{Header: hd, Src: 1, DstParent: ino, DstName: "copy"})
			return err
		}},
		{"RemoveTree", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			_, err := snap(cc).RemoveTree(ctx, &stratapb.RemoveTreeRequest{Header: hd, Parent: ino, Name: "secret", AllowFrozen: true})
			return err
		}},
		{"CreateSnapshot", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			_, err := snap(cc).CreateSnapshot(ctx, &stratapb.CreateSnapshotRequest{Header: hd, Src: ino, Name: "grab"})
			return err
		}},
		{"ListSnapshotsOf", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			resp, err := snap(cc).ListSnapshots(ctx, &stratapb.ListSnapshotsRequest{Header: hd, SourceIno: ino})
			if err == nil && len(resp.GetSnapshots()) > 0 {
				return errors.New("saw snapshots")
			}
			return err
		}},
		{"RestoreSnapshotInto", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			_, err := snap(cc).RestoreSnapshot(ctx, &stratapb.RestoreSnapshotRequest{Header: hd, Name: "nosuch", DstParent: ino, DstName: "r"})
			return err
		}},
		{"TreeUsage", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			_, err := stratapb.NewImageClient(cc).TreeUsage(ctx, &stratapb.TreeUsageRequest{Header: hd, Ino: ino})
			return err
		}},
		{"SetLock", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			_, err := lock(cc).SetLock(ctx, &stratapb.SetLockRequest{Header: hd, Ino: ino, Lock: &stratapb.FileLock{Session: "s", Kind: stratapb.LockKind_LOCK_KIND_FLOCK, Type: stratapb.LockType_LOCK_TYPE_WRITE, End: ^uint64(0)}})
			return err
		}},
		{"GetLock", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			_, err := lock(cc).GetLock(ctx, &stratapb.GetLockRequest{Header: hd, Ino: ino, Lock: &stratapb.FileLock{Session: "s", Kind: stratapb.LockKind_LOCK_KIND_POSIX, Type: stratapb.LockType_LOCK_TYPE_WRITE, End: ^uint64(0)}})
			return err
		}},
		{"ReleaseLocks", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			_, err := lock(cc).ReleaseLocks(ctx, &stratapb.ReleaseLocksRequest{Header: hd, Ino: ino, Session: "s"})
			return err
		}},
		{"SetQuotaDir", func(ctx C, cc I, hd *h, ino uint64, _ K) error {
			_, err := stratapb.NewTenantClient(cc).SetQuota(ctx, &stratapb.SetQuotaRequest{Header: hd, Ino: ino, MaxFiles: 1})
			return err
		}},
		// Chunk ids: commit B's chunk into A's own file; report it bad.
		{"CommitChunksChunk", func(ctx C, cc I, hd *h, _ uint64, ch K) error {
			_, err := meta(cc).CommitChunks(ctx, &stratapb.CommitChunksRequest{Header: hd, Ino: e.aFile, Chunks: []*stratapb.ChunkCommit{{Chunk: chunkCommit(ch, 5)}}, MinSize: 5 << 22})
			return err
		}},
		{"ReportBadShard", func(ctx C, cc I, hd *h, _ uint64, ch K) error {
			_, err := meta(cc).ReportBadShard(ctx, &stratapb.ReportBadShardRequest{Header: hd, ChunkId: ch.GetId(), Ino: e.aFile, Reason: "checksum"})
			return err
		}},
	}
}

func TestTenantIsolation(t *testing.T) {
	e := newTenantEnv(t)
	ctx := ctxFor(t)
	missing := &stratapb.Chunk{Id: e.missChunk, Size: e.bChunk.GetSize(), Scheme: e.bChunk.GetScheme(), DataShards: e.bChunk.GetDataShards(),
		ParityShards: e.bChunk.GetParityShards(), ShardSize: e.bChunk.GetShardSize(), Servers: e.bChunk.GetServers()}
	targets := map[string][2]uint64{"file": {e.bFile, e.missIno}, "dir": {e.bDir, e.missIno + 1}, "root": {e.rootB, e.missIno + 2}}
	for _, tc := range isolationCases(e) {
		t.Run(tc.name, func(t *testing.T) {
			for what, inos := range targets {
				// Through CallConn, which follows the leader: a leader change
				// under load must not pass for an answer.
				call := func(ino uint64, ch *stratapb.Chunk) error {
					hdr := e.a.NewHeader()
					return e.a.Meta().CallConn(ctx, func(ctx context.Context, cc grpc.ClientConnInterface) error {
						return tc.call(ctx, cc, hdr, ino, ch)
					})
				}
				foreign, miss := call(inos[0], e.bChunk), call(inos[1], missing)
				if foreign == nil {
					t.Fatalf("%s of B's %s succeeded for tenant A", tc.name, what)
				}
				if shape(foreign) != shape(miss) {
					t.Errorf("%s of B's %s: %q; of a missing one: %q", tc.name, what, shape(foreign), shape(miss))
				}
			}
		})
	}

	// Names: paths, snapshots, content hashes.
	if _, err := e.a.Stat(ctx, "/.tenants"); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("A stat /.tenants: %v, want ENOENT", err)
	}
	if _, err := e.a.Stat(ctx, "/data/secret"); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("A stat B's path: %v, want ENOENT", err)
	}
	snaps, err := e.a.ListSnapshots(ctx, "")
	if err != nil || len(snaps) != 0 {
		t.Errorf("A lists snapshots %v (%v), want none", snaps, err)
	}
	_, errB := e.a.DeleteSnapshot(ctx, "snapB")
	_, errM := e.a.DeleteSnapshot(ctx, "snapZ")
	if errB == nil || digits.ReplaceAllString(strings.ReplaceAll(errB.Error(), "snapB", "X"), "N") != digits.ReplaceAllString(strings.ReplaceAll(errM.Error(), "snapZ", "X"), "N") {
		t.Errorf("delete B's snapshot: %v; a missing one: %v", errB, errM)
	}
	_, errB = e.a.RestoreSnapshot(ctx, "snapB", "/r1")
	_, errM = e.a.RestoreSnapshot(ctx, "snapZ", "/r1")
	if errB == nil || strings.ReplaceAll(errB.Error(), "snapB", "X") != strings.ReplaceAll(errM.Error(), "snapZ", "X") {
		t.Errorf("restore B's snapshot: %v; a missing one: %v", errB, errM)
	}
	if _, err := e.a.CreateSnapshot(ctx, "/", "snapB"); err != nil {
		t.Errorf("A cannot use a snapshot name B uses: %v", err)
	}
	found, err := e.a.LookupChunks(ctx, [][]byte{e.bHashed.GetHash()})
	if err != nil || found[0].GetId() != 0 {
		t.Errorf("A looked up B's content and found chunk %d (%v)", found[0].GetId(), err)
	}
	sharedErr := e.a.Meta().Call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		c := chunkCommit(e.bHashed, 7)
		c.Hash = e.bHashed.GetHash()
		_, err := mc.CommitChunks(ctx, &stratapb.CommitChunksRequest{Header: e.a.NewHeader(), Ino: e.aFile, Chunks: []*stratapb.ChunkCommit{{Chunk: c, Shared: true}}})
		return err
	})
	if !errors.Is(sharedErr, syscall.ESTALE) && rpcerr.ErrnoOf(sharedErr) != syscall.ESTALE {
		t.Errorf("A shared B's content chunk: %v, want ESTALE (as for content no longer stored)", sharedErr)
	}

	// A header naming another tenant is overridden by the token.
	var got *stratapb.Attr
	err = e.a.Meta().Call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		resp, err := mc.GetAttr(ctx, &stratapb.GetAttrRequest{Header: &stratapb.RequestHeader{Tenant: "beta"}, Ino: 1})
		got = resp.GetAttr()
		return err
	})
	if err != nil || got.GetIno() != e.rootA {
		t.Errorf("A with header tenant beta: root %d (%v), want A's root %d", got.GetIno(), err, e.rootA)
	}

	// Administrator RPCs are refused; status is redacted.
	if _, _, err := e.a.CreateTenant(ctx, "gamma", client.TenantOptions{}); status.Code(err) != codes.PermissionDenied && !strings.Contains(err.Error(), "may not call") {
		t.Errorf("tenant creates a tenant: %v", err)
	}
	st, err := e.a.ClusterStatus(ctx)
	if err != nil {
		t.Fatalf("tenant status: %v", err)
	}
	for _, d := range st.GetDataservers() {
		if d.GetAddr() != "" {
			t.Errorf("tenant sees dataserver address %s", d.GetAddr())
		}
	}
	if len(st.GetMembers()) != 0 {
		t.Error("tenant sees the metaservers")
	}

	// B's data is intact after all of it.
	data, err := getAll(t, e.b, "/data/secret")
	if err != nil || !bytes.Equal(data, pattern(300<<10, 7)) {
		t.Fatalf("B's file changed: %v", err)
	}
}

// TestTenantBadToken: an unknown token is refused, not taken for the
// administrator.
func TestTenantBadToken(t *testing.T) {
	auditFile := filepath.Join(t.TempDir(), "audit.log")
	f, err := os.Create(auditFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	cl := testcluster.New(t, testcluster.Options{Meta: 3, Data: 3, Audit: audit.New(f, nil)})
	admin := tenantClient(t, cl, "")
	ctx := ctxFor(t)
	if _, _, err = admin.CreateTenant(ctx, "alpha", client.TenantOptions{}); err != nil {
		t.Fatal(err)
	}
	bad := tenantClient(t, cl, "stt_forged")
	_, err = bad.Stat(ctx, "/")
	if status.Code(err) != codes.Unauthenticated && !strings.Contains(err.Error(), "invalid tenant token") {
		t.Fatalf("forged token: %v, want Unauthenticated", err)
	}
	who, err := admin.WhoAmI(ctx)
	if err != nil || who.GetTenant() != "" || who.GetRootIno() != 1 {
		t.Fatalf("admin whoami: %v %v", who, err)
	}
	list, err := admin.ListTenants(ctx)
	if err != nil || len(list) != 1 || list[0].GetName() != "alpha" {
		t.Fatalf("tenants: %v %v", list, err)
	}
	if _, err := admin.RemoveTenant(ctx, "alpha"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Stat(ctx, "/.tenants/alpha"); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("removed tenant's tree: %v", err)
	}
	// Audit records: create, the refused token, remove; never the token.
	raw, err := os.ReadFile(auditFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"action":"tenant.create"`, `"action":"auth.tenant-token"`, `"outcome":"denied"`, `"action":"tenant.remove"`, `"object":"tenant/alpha"`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("audit log lacks %s:\n%s", want, raw)
		}
	}
	if strings.Contains(string(raw), "stt_") {
		t.Errorf("audit log holds a token:\n%s", raw)
	}
}
