package client

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-hpc/strata/internal/capability"
	"github.com/strata-hpc/strata/internal/metaconn"
	"github.com/strata-hpc/strata/internal/pki"
	"github.com/strata-hpc/strata/internal/testcluster"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// rawDataClient connects to a dataserver with no capabilities of its own:
// what someone who learnt a chunk id, but has no layout from the metadata
// service, can do.
func rawDataClient(t testing.TB, cl *testcluster.Cluster, addr string) stratapb.DataClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, metaconn.DialOptions(cl.DialCreds(pki.RoleData))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return stratapb.NewDataClient(cc)
}

func wantDenied(t *testing.T, what string, err error) {
	t.Helper()
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("%s: got %v, want PermissionDenied", what, err)
	}
}

// TestCapabilityClusterRefusals: in a real cluster, knowing a chunk id is
// not enough. A request without a capability, with one for another chunk,
// with a read capability for a write or delete, or with a tampered one is
// refused by the dataserver; the capability from the file's own layout
// reads; and after a failover the new leader's capabilities are accepted
// (same key, from the FSM).
func TestCapabilityClusterRefusals(t *testing.T) {
	e := newEnv(t, 6, testPolicy())
	ctx := ctxT(t)
	dataA, dataB := randBytes(100<<10, 1), randBytes(100<<10, 2)
	a, b := e.put("/a", dataA), e.put("/b", dataB)
	layoutA, layoutB := e.chunks(a.Ino), e.chunks(b.Ino)
	chA, chB := layoutA.Chunks[0], layoutB.Chunks[0]
	capA, capB := layoutA.GetCaps().GetByChunk()[chA.Id], layoutB.GetCaps().GetByChunk()[chB.Id]
	if capA == nil || capB == nil || layoutA.GetCaps().GetTtlMs() == 0 {
		t.Fatalf("GetChunks gave no capabilities: %v", layoutA.GetCaps())
	}
	dc := rawDataClient(t, e.cl, e.chunkAddr(chA, 0))
	keyA := &stratapb.ShardKey{ChunkId: chA.Id, Index: 0}

	_, err := dc.ReadShard(ctx, &stratapb.ReadShardRequest{Key: keyA})
	wantDenied(t, "read without a capability", err)
	_, err = dc.ReadShard(ctx, &stratapb.ReadShardRequest{Key: keyA, Capability: capB})
	wantDenied(t, "read with another file's capability", err)
	tampered := slices.Clone(capB)
	copy(tampered[14:22], capA[14:22]) // B's capability renamed to A's chunk
	_, err = dc.ReadShard(ctx, &stratapb.ReadShardRequest{Key: keyA, Capability: tampered})
	wantDenied(t, "read with a tampered capability", err)
	junk := []byte("junk")
	_, err = dc.WriteShard(ctx, &stratapb.WriteShardRequest{Key: keyA, Data: junk, Crc32C: crc32c(junk), Capability: capA})
	wantDenied(t, "write with a read capability", err)
	// A client certificate may not delete shards at all (only the
	// metadata leader's GC does): the role check refuses it before the
	// capability is looked at, so the dataserver counts 4 refusals.
	_, err = dc.DeleteShard(ctx, &stratapb.DeleteShardRequest{Key: keyA, Capability: capA})
	wantDenied(t, "delete with a read capability", err)
	if _, err := dc.ReadShard(ctx, &stratapb.ReadShardRequest{Key: keyA, Capability: capA}); err != nil {
		t.Fatalf("read with the layout's capability: %v", err)
	}
	if n := e.cl.Data[e.dataIndex(chA.Servers[0])].Srv.CapabilityRefusals(); n != 4 {
		t.Fatalf("dataserver counted %d capability refusals, want 4", n)
	}
	if got := e.get("/a"); !bytes.Equal(got, dataA) {
		t.Fatal("file /a changed")
	}

	// Failover: the new leader signs with the same key.
	old, err := capability.Decode(capA)
	if err != nil {
		t.Fatal(err)
	}
	e.cl.KillMeta(e.cl.WaitLeader())
	e.cl.WaitLeader()
	fresh, err := capability.Decode(e.chunks(a.Ino).GetCaps().GetByChunk()[chA.Id])
	if err != nil {
		t.Fatal(err)
	}
	if fresh.KeyID != old.KeyID {
		t.Fatalf("new leader signs with key %d, old one with %d", fresh.KeyID, old.KeyID)
	}
	c2 := newTestClient(t, e.cl.MetaAddrs(), e.cl.ClientTLS())
	var buf bytes.Buffer
	if _, err := c2.Get(ctx, "/b", &buf); err != nil || !bytes.Equal(buf.Bytes(), dataB) {
		t.Fatalf("read after failover: %v", err)
	}
}

// TestCapabilityKeyRotation: clients write and read without a single error
// while the key is rotated; the dataservers hold the old and the new key;
// capabilities the client got before the rotation still work.
func TestCapabilityKeyRotation(t *testing.T) {
	e := newEnv(t, 6, testPolicy())
	ctx := ctxT(t)
	before := randBytes(300<<10, 9)
	beforeIno := e.put("/before", before).Ino
	st, err := e.c.CapKeyStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	oldKey := st.SigningKey

	var (
		stop   atomic.Bool
		ops    atomic.Int64
		mu     sync.Mutex
		errs   []error
		wg     sync.WaitGroup
		writer = newTestClient(t, e.cl.MetaAddrs(), e.cl.ClientTLS())
	)
	wg.Go(func() {
		for i := 0; !stop.Load(); i++ {
			data := randBytes(70<<10+i, uint64(i))
			p := fmt.Sprintf("/w%d", i%20)
			var buf bytes.Buffer
			_, err := writer.Put(ctx, p, bytes.NewReader(data), PutOptions{})
			if err == nil {
				_, err = writer.Get(ctx, p, &buf)
			}
			if err == nil && !bytes.Equal(buf.Bytes(), data) {
				err = fmt.Errorf("%s read back wrong bytes", p)
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			ops.Add(1)
		}
	})
	t.Cleanup(func() { stop.Store(true); wg.Wait() })

	rot, err := e.c.RotateCapKey(ctx)
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if rot.KeyId == oldKey || len(rot.Keys) != 2 {
		t.Fatalf("rotation answered %v (old key %d)", rot, oldKey)
	}
	waitForT(t, 30*time.Second, "the new key to sign", func() bool {
		st, err := e.c.CapKeyStatus(ctx)
		return err == nil && st.SigningKey == rot.KeyId
	})
	for _, d := range e.cl.Data {
		if ids := d.Srv.CapabilityKeyIDs(); !slices.Contains(ids, oldKey) || !slices.Contains(ids, rot.KeyId) {
			t.Fatalf("dataserver %d holds keys %v, want %d and %d", d.Srv.ID(), ids, oldKey, rot.KeyId)
		}
	}
	// Keep going for a while with the new key.
	n := ops.Load()
	waitForT(t, 60*time.Second, "I/O under the new key", func() bool { return ops.Load() >= n+5 })
	stop.Store(true)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d put/get rounds failed during rotation; first: %v", len(errs), ops.Load(), errs[0])
	}
	// Not even a refusal that the client hid by retrying.
	for _, d := range e.cl.Data {
		if n := d.Srv.CapabilityRefusals(); n != 0 {
			t.Fatalf("dataserver %d refused %d capabilities during the rotation", d.Srv.ID(), n)
		}
	}
	// The client's cached capabilities for /before are signed with the old
	// key, which is still accepted; a new client gets new-key ones.
	if got := e.get("/before"); !bytes.Equal(got, before) {
		t.Fatal("/before read back wrong after rotation")
	}
	layout := e.chunks(beforeIno)
	c, err := capability.Decode(layout.GetCaps().GetByChunk()[layout.Chunks[0].Id])
	if err != nil || c.KeyID != rot.KeyId {
		t.Fatalf("capability after rotation: key %d, %v; want key %d", c.KeyID, err, rot.KeyId)
	}
}

// TestDataserverRestartRecoversKeys: keys live in memory only; a restarted
// dataserver gets them again when it registers, and until then the client
// waits for it instead of failing.
func TestDataserverRestartRecoversKeys(t *testing.T) {
	e := newEnv(t, 6, testPolicy())
	data := randBytes(200<<10, 5)
	attr := e.put("/f", data)
	want := e.cl.Data[0].Srv.CapabilityKeyIDs()
	if len(want) == 0 {
		t.Fatal("registered dataserver holds no capability keys")
	}
	for i := range e.cl.Data {
		e.cl.KillData(i)
		e.cl.RestartData(i)
	}
	// Read at once: some or all servers may not have registered yet.
	if got := e.get("/f"); !bytes.Equal(got, data) {
		t.Fatal("read after restarting every dataserver: wrong bytes")
	}
	for i, d := range e.cl.Data {
		waitFor(t, fmt.Sprintf("dataserver %d to get its keys back", i), func() bool {
			return slices.Equal(sortedIDs(d.Srv.CapabilityKeyIDs()), sortedIDs(want))
		})
	}
	ch := e.chunk(attr.Ino, 0)
	dc := rawDataClient(t, e.cl, e.chunkAddr(ch, 1))
	capb := e.chunks(attr.Ino).GetCaps().GetByChunk()[ch.Id]
	if _, err := dc.StatShard(ctxT(t), &stratapb.StatShardRequest{Key: &stratapb.ShardKey{ChunkId: ch.Id, Index: 1}, Capability: capb}); err != nil {
		t.Fatalf("stat with a valid capability after restart: %v", err)
	}
}

func sortedIDs(ids []uint32) []uint32 {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	return ids
}

// TestCapabilityRefresh: with a short capability lifetime, a client that
// keeps reading a file asks for fresh capabilities once half the lifetime
// has passed, and reads work past the end of the first capabilities'
// lifetime.
func TestCapabilityRefresh(t *testing.T) {
	cl := testcluster.New(t, testcluster.Options{Meta: 1, Data: 6, Policy: testPolicy(), CapLifetime: 2 * time.Second})
	c := newTestClient(t, cl.MetaAddrs(), cl.ClientTLS())
	ctx := ctxT(t)
	data := randBytes(150<<10, 3)
	attr, err := c.Put(ctx, "/f", bytes.NewReader(data), PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.getChunks(ctx, attr.Ino, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Chunks[0].Id
	first, fresh := c.caps.get(id, capRead)
	if first == nil || !fresh {
		t.Fatal("no fresh capability after GetChunks")
	}
	buf := make([]byte, len(data))
	readAll := func() {
		t.Helper()
		if n, err := c.ReadAt(ctx, attr.Ino, buf, 0); err != nil || n != len(data) || !bytes.Equal(buf, data) {
			t.Fatalf("ReadAt: %d bytes, %v", n, err)
		}
	}
	waitForT(t, 10*time.Second, "the capability to go stale", func() bool {
		_, fresh := c.caps.get(id, capRead)
		return !fresh
	})
	readAll()
	second, fresh := c.caps.get(id, capRead)
	if !fresh || bytes.Equal(second, first) {
		t.Fatal("reading with a stale capability did not fetch a new one")
	}
	time.Sleep(2 * time.Second) // the first capability's whole lifetime
	readAll()
}

// TestShardCapabilitiesNotReportedBad: a refused capability must not make
// the client report the shard as bad (which would schedule a repair).
func TestShardCapabilitiesNotReportedBad(t *testing.T) {
	err := status.Error(codes.PermissionDenied, "dataserver: shard request not authorised")
	if !denied(err) || keysPending(err) {
		t.Fatal("PermissionDenied misclassified")
	}
	// No logger and no reporter: logging or reporting the failure panics.
	c := &Client{}
	ref := chunkRef{ch: &stratapb.Chunk{Id: 1, Servers: []uint32{1}}}
	c.reportFailures(context.Background(), ref, 0, []ShardFailure{{Shard: 0, Server: 1, Err: err}})
}
