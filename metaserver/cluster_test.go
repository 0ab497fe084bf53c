package metaserver_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	"github.com/strata-hpc/strata/internal/metaconn"
	"github.com/strata-hpc/strata/internal/pki"
	"github.com/strata-hpc/strata/internal/rpcerr"
	"github.com/strata-hpc/strata/internal/testcluster"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// metaDial is the TLS option (or plain text) of a test's own connections
// to the cluster's metaservers, as a client.
func metaDial(c *testcluster.Cluster) []grpc.DialOption {
	return []grpc.DialOption{c.DialCreds(pki.RoleMeta)}
}

func dial(t *testing.T, c *testcluster.Cluster) *metaconn.Conn {
	t.Helper()
	mc, err := metaconn.New(c.MetaAddrs(), metaconn.Options{AttemptTimeout: 2 * time.Second, DialOptions: metaDial(c)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mc.Close() })
	return mc
}

// waitConverged waits until every running voter has applied the same
// namespace (equal digests) and returns the leader's stats.
func waitConverged(t *testing.T, c *testcluster.Cluster) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var digests []uint64
		for _, m := range c.Meta {
			if m.Srv != nil {
				digests = append(digests, m.Srv.Stats().Digest)
			}
		}
		same := true
		for _, d := range digests[1:] {
			same = same && d == digests[0]
		}
		if same {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("voters did not converge: digests %v", digests)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestFollowersRedirectToLeader(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Meta: 3})
	l := c.WaitLeader()
	f := (l + 1) % 3
	// Wait until the follower knows the leader's address (self-registration).
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := c.Meta[f].Srv.Mkdir(context.Background(), &stratapb.MkdirRequest{Parent: 1, Name: "x"})
		hint, nl := rpcerr.LeaderHint(err)
		if !nl {
			t.Fatalf("follower answered %v, want not-leader", err)
		}
		if hint == c.Meta[l].Srv.GRPCAddr() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("follower hint %q, leader is %q", hint, c.Meta[l].Srv.GRPCAddr())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A stale read is served by the follower itself.
	if _, err := c.Meta[f].Srv.GetAttr(context.Background(), &stratapb.GetAttrRequest{Header: &stratapb.RequestHeader{StaleOk: true}, Ino: 1}); err != nil {
		t.Fatalf("stale read on follower: %v", err)
	}
}

// TestLeaderKilledDuringCreates: the leader dies in the middle of 1,000
// create/mkdir calls; after the client's retries every call has been
// applied exactly once and all voters hold the same namespace.
func TestLeaderKilledDuringCreates(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Meta: 3})
	mc := dial(t, c)
	const total = 1000
	var next, done atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, total)
	inos := make([]uint64, total)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= total {
					return
				}
				ino, err := createOne(mc, i)
				if err != nil {
					errs <- fmt.Errorf("op %d: %w", i, err)
				}
				inos[i] = ino
				done.Add(1)
			}
		}()
	}
	for done.Load() < total/3 {
		time.Sleep(time.Millisecond)
	}
	killed := c.Leader()
	c.KillMeta(killed)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	seen := map[uint64]bool{}
	for i, ino := range inos {
		if ino == 0 || seen[ino] {
			t.Fatalf("op %d: inode %d missing or duplicated", i, ino)
		}
		seen[ino] = true
	}
	c.RestartMeta(killed)
	c.WaitLeader()
	waitConverged(t, c)
	for i, m := range c.Meta {
		if got := m.Srv.Stats().Inodes; got != total+1 {
			t.Errorf("voter %d holds %d inodes, want %d", i, got, total+1)
		}
	}
}

// createOne runs op i with one request id however many times it is sent.
func createOne(mc *metaconn.Conn, i int) (uint64, error) {
	hdr := &stratapb.RequestHeader{ClientId: "test-client", RequestId: uint64(i) + 1}
	name := fmt.Sprintf("n%04d", i)
	var ino uint64
	err := mc.Call(context.Background(), func(ctx context.Context, m stratapb.MetaClient) error {
		if i%5 == 0 {
			r, err := m.Mkdir(ctx, &stratapb.MkdirRequest{Header: hdr, Parent: 1, Name: name, Mode: 0o755})
			if err == nil {
				ino = r.Attr.Ino
			}
			return err
		}
		r, err := m.Create(ctx, &stratapb.CreateRequest{Header: hdr, Parent: 1, Name: name, Mode: 0o644, Exclusive: true})
		if err == nil {
			ino = r.Attr.Ino
		}
		return err
	})
	return ino, err
}

// TestRestartKeepsNamespace: every voter stopped and started again replays
// its snapshot and log to the same namespace.
func TestRestartKeepsNamespace(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Meta: 3})
	mc := dial(t, c)
	for i := 0; i < 200; i++ {
		if _, err := createOne(mc, i); err != nil {
			t.Fatal(err)
		}
	}
	waitConverged(t, c)
	before := c.Meta[c.WaitLeader()].Srv.Stats()
	for i := range c.Meta {
		c.KillMeta(i)
	}
	for i := range c.Meta {
		c.RestartMeta(i)
	}
	c.WaitLeader()
	waitConverged(t, c)
	after := c.Meta[c.WaitLeader()].Srv.Stats()
	if after.Digest != before.Digest || after.Inodes != before.Inodes {
		t.Fatalf("after restart: %+v, before: %+v", after, before)
	}
}

// TestLaggingVoterCatchesUpFromSnapshot: a voter that was down while the
// others snapshotted and compacted their logs comes back through raft's
// InstallSnapshot, restores the FSM from it, and ends equal to the others.
func TestLaggingVoterCatchesUpFromSnapshot(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Meta: 3, SnapshotThreshold: 100, TrailingLogs: 10})
	mc := dial(t, c)
	down := (c.WaitLeader() + 1) % 3
	c.KillMeta(down)
	for i := 0; i < 600; i++ {
		if _, err := createOne(mc, i); err != nil {
			t.Fatal(err)
		}
	}
	// Wait until the leader has snapshotted past what the laggard has.
	deadline := time.Now().Add(10 * time.Second)
	for snapshotIndex(c.Meta[c.WaitLeader()].Srv) < 500 {
		if time.Now().After(deadline) {
			t.Fatal("leader never snapshotted")
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.RestartMeta(down)
	waitConverged(t, c)
	if got := c.Meta[down].Srv.Stats().Inodes; got != 601 {
		t.Fatalf("restarted voter holds %d inodes, want 601", got)
	}
}

func snapshotIndex(s interface{ RaftStats() map[string]string }) uint64 {
	var n uint64
	fmt.Sscan(s.RaftStats()["last_snapshot_index"], &n)
	return n
}

// TestGarbagePayload: bytes that are not a protobuf message get a clean
// error, the server stays up, and nothing changes.
func TestGarbagePayload(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Meta: 1, Data: 1})
	before := c.Meta[0].Srv.Stats().Digest
	for _, target := range []struct {
		addr, method string
		role         pki.Role
	}{
		{c.Meta[0].Srv.GRPCAddr(), "/strata.v1.Meta/Create", pki.RoleMeta},
		{c.Meta[0].Srv.GRPCAddr(), "/strata.v1.Meta/CommitChunks", pki.RoleMeta},
		{c.Data[0].Srv.Addr(), "/strata.v1.Data/WriteShard", pki.RoleData},
	} {
		cc, err := grpc.NewClient(target.addr, c.DialCreds(target.role))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		for _, junk := range [][]byte{{0xff, 0xff, 0xff}, []byte("\x0a\xff\xff\xff\xff\x0f"), make([]byte, 1<<16)} {
			var out []byte
			err := cc.Invoke(context.Background(), target.method, junk, &out, grpc.ForceCodecV2(rawCodec{}))
			if err == nil && len(junk) != 1<<16 {
				t.Errorf("%s accepted garbage %x", target.method, junk[:3])
			}
			if code := status.Code(err); code == codes.Unavailable || code == codes.Unknown {
				t.Errorf("%s: garbage gave %v", target.method, err)
			}
		}
	}
	// Still serving, and unchanged.
	mc := dial(t, c)
	if _, err := createOne(mc, 1); err != nil {
		t.Fatalf("server unusable after garbage: %v", err)
	}
	if c.Meta[0].Srv.Stats().Digest == before {
		t.Fatal("digest did not move after a real create (the check is broken)")
	}
}

// rawCodec sends bytes as they are, to put garbage on the wire.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*(v.(*[]byte)) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// TestAllocateOnFollowerRedirects: a follower that has not applied a
// file's create yet must send AllocateChunks to the leader, not answer
// "no such file" (found by the client's leader-partition test).
func TestAllocateOnFollowerRedirects(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Meta: 3})
	mc := dial(t, c)
	f := (c.WaitLeader() + 1) % 3
	c.KillMeta(f)
	ino, err := createOne(mc, 1) // a regular file, created while f is down
	if err != nil {
		t.Fatal(err)
	}
	c.RestartMeta(f)
	_, err = c.Meta[f].Srv.AllocateChunks(context.Background(), &stratapb.AllocateChunksRequest{Ino: ino, Count: 1, Sizes: []uint32{1}})
	if _, nl := rpcerr.LeaderHint(err); !nl {
		t.Fatalf("follower answered %v, want not-leader", err)
	}
}

// TestServiceIPFollowsLeader: only the leader serves on the service IP (a
// loopback address here, as in `strata dev`); a client that knows only that
// address keeps working across the leader's death, with each request
// applied once, and the new leader takes the address over.
func TestServiceIPFollowsLeader(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Meta: 3, ServiceIP: "127.0.0.171"})
	mc, err := metaconn.New([]string{c.ServiceAddr()}, metaconn.Options{DialOptions: metaDial(c)})
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	holders := func() (n int, who int) {
		for i, m := range c.Meta {
			if m.Srv != nil && m.Srv.HoldsServiceIP() {
				n, who = n+1, i
			}
		}
		return n, who
	}
	waitHolder := func(not int) int {
		deadline := time.Now().Add(10 * time.Second)
		for {
			if n, who := holders(); n == 1 && who != not && who == c.Leader() {
				return who
			}
			if time.Now().After(deadline) {
				n, who := holders()
				t.Fatalf("service ip held by %d servers (last %d), leader %d", n, who, c.Leader())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	first := waitHolder(-1)
	for i := 0; i < 50; i++ {
		if _, err := createOne(mc, i); err != nil {
			t.Fatal(err)
		}
	}
	c.KillMeta(first)
	for i := 50; i < 100; i++ { // through the election, via the service ip only
		if _, err := createOne(mc, i); err != nil {
			t.Fatalf("op %d across failover: %v", i, err)
		}
	}
	second := waitHolder(first)
	c.RestartMeta(first)
	waitConverged(t, c)
	if got := c.Meta[second].Srv.Stats().Inodes; got != 101 {
		t.Fatalf("%d inodes, want 101 (each create once)", got)
	}
}

// TestReplaceVoterWithWipedDisk: a voter whose disk state is lost is
// removed and a fresh server added in its place; the newcomer catches up
// from a snapshot (the log it would need was compacted) and counts in the
// quorum: the cluster survives losing the leader afterwards.
func TestReplaceVoterWithWipedDisk(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Meta: 3, SnapshotThreshold: 100, TrailingLogs: 10})
	mc := dial(t, c)
	for i := 0; i < 300; i++ {
		if _, err := createOne(mc, i); err != nil {
			t.Fatal(err)
		}
	}
	lost := (c.WaitLeader() + 1) % 3
	c.WipeMeta(lost)
	call := func(what string, fn func(ctx context.Context, m stratapb.MetaClient) error) {
		t.Helper()
		if err := mc.Call(context.Background(), fn); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	call("remove", func(ctx context.Context, m stratapb.MetaClient) error {
		_, err := m.RemoveMember(ctx, &stratapb.RemoveMemberRequest{Id: c.Meta[lost].Cfg.ID})
		return err
	})
	fresh := c.AddMeta("m9")
	call("add", func(ctx context.Context, m stratapb.MetaClient) error {
		_, err := m.AddMember(ctx, &stratapb.AddMemberRequest{Id: "m9", RaftAddr: c.Meta[fresh].Cfg.RaftAddr})
		return err
	})
	waitConverged(t, c)
	if got := c.Meta[fresh].Srv.Stats().Inodes; got != 301 {
		t.Fatalf("new voter holds %d inodes, want 301", got)
	}
	if idx := snapshotIndex(c.Meta[fresh].Srv); idx == 0 {
		t.Fatal("new voter did not install a snapshot")
	}
	// The newcomer is a real voter: with the old leader gone, the two
	// left (one of them the newcomer) still make a quorum.
	c.KillMeta(c.WaitLeader())
	mc2 := dial(t, c)
	for i := 300; i < 320; i++ {
		if _, err := createOne(mc2, i); err != nil {
			t.Fatalf("after losing the leader: %v", err)
		}
	}
	// Bad input: removing an unknown member.
	err := mc2.Call(context.Background(), func(ctx context.Context, m stratapb.MetaClient) error {
		_, err := m.RemoveMember(ctx, &stratapb.RemoveMemberRequest{Id: "nobody"})
		return err
	})
	if rpcerr.ErrnoOf(err) != syscall.ENOENT {
		t.Fatalf("removing an unknown member: %v", err)
	}
}

// TestFiveVotersLoseTwoThenThree: with 5 voters, losing any 2 leaves a
// working quorum; losing 3 stalls clients (no errors, no wrong answers)
// until one returns, and then the stalled call completes exactly once.
func TestFiveVotersLoseTwoThenThree(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Meta: 5})
	mc, err := metaconn.New(c.MetaAddrs(), metaconn.Options{RetryBudget: 2 * time.Minute, DialOptions: metaDial(c)})
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	for i := 0; i < 20; i++ {
		if _, err := createOne(mc, i); err != nil {
			t.Fatal(err)
		}
	}
	l := c.WaitLeader()
	c.KillMeta(l)              // the leader ...
	c.KillMeta((l + 1) % 5)    // ... and a follower, at once
	for i := 20; i < 40; i++ { // 3 of 5 left: still a quorum
		if _, err := createOne(mc, i); err != nil {
			t.Fatalf("with 2 of 5 voters down: %v", err)
		}
	}
	third := c.WaitLeader()
	c.KillMeta(third) // 2 of 5 left: no quorum
	stalled := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := createOne(mc, 40)
		stalled <- err
	}()
	select {
	case err := <-stalled:
		t.Fatalf("a create without quorum returned after %v: %v", time.Since(start), err)
	case <-time.After(3 * time.Second): // stalled, as it should
	}
	c.RestartMeta(third)
	select {
	case err := <-stalled:
		if err != nil {
			t.Fatalf("stalled create failed after the quorum returned: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("stalled create did not resume after the quorum returned")
	}
	c.RestartMeta(l)
	c.RestartMeta((l + 1) % 5)
	waitConverged(t, c)
	if got := c.Meta[c.WaitLeader()].Srv.Stats().Inodes; got != 42 {
		t.Fatalf("%d inodes, want 42 (41 creates, each once, plus the root)", got)
	}
}
