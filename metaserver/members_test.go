package metaserver_test

import (
	"context"
	"testing"
	"time"

	"github.com/strata-hpc/strata/internal/testcluster"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// TestNonvoterOutsideQuorum: with one voter of three down, a server added
// as a non-voter does not join the quorum: commits go on even though it
// never answers (a voter added the same way would make every commit wait
// for it). A live non-voter catches up, is listed as a non-voter, and is
// promoted by a plain add (the boot controller's replacement order).
func TestNonvoterOutsideQuorum(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Meta: 3})
	mc := dial(t, c)
	for i := 0; i < 20; i++ {
		if _, err := createOne(mc, i); err != nil {
			t.Fatal(err)
		}
	}
	c.KillMeta((c.WaitLeader() + 1) % 3)
	add := func(id, raft string, nonvoter bool) {
		t.Helper()
		err := mc.Call(context.Background(), func(ctx context.Context, m stratapb.MetaClient) error {
			_, err := m.AddMember(ctx, &stratapb.AddMemberRequest{Id: id, RaftAddr: raft, Nonvoter: nonvoter})
			return err
		})
		if err != nil {
			t.Fatalf("add %s: %v", id, err)
		}
	}
	add("ghost", "127.0.0.1:1", true) // nothing listens there
	start := time.Now()
	for i := 20; i < 40; i++ {
		if _, err := createOne(mc, i); err != nil {
			t.Fatalf("with a dead voter and an unreachable non-voter: %v", err)
		}
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("20 creates took %v: the non-voter held up the quorum", d)
	}
	fresh := c.AddMeta("m9")
	add("m9", c.Meta[fresh].Cfg.RaftAddr, true)
	waitFor(t, "the non-voter to catch up", 20*time.Second, func() bool { return c.Meta[fresh].Srv.Stats().Inodes == 41 })
	if v := voter(t, c, "m9"); v {
		t.Fatal("m9 listed as a voter before its promotion")
	}
	add("m9", c.Meta[fresh].Cfg.RaftAddr, false)
	if v := voter(t, c, "m9"); !v {
		t.Fatal("m9 not a voter after its promotion")
	}
}

// TestVoterAddedWithOneDownStallsCommits is the control of
// TestNonvoterOutsideQuorum and the cause of the boot controller's lease
// lost in the 100k-file spare benchmark (NOTES.md, "Boot controller,
// session 4"): with one voter of three down, a server added as a voter
// that does not answer yet (a spare still installing its snapshot) leaves
// 2 of 4 voters, below the quorum of 3, and commits stop until it
// answers, here until the downed voter returns.
func TestVoterAddedWithOneDownStallsCommits(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Meta: 3})
	mc := dial(t, c)
	if _, err := createOne(mc, 0); err != nil {
		t.Fatal(err)
	}
	down := (c.WaitLeader() + 1) % 3
	c.KillMeta(down)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = mc.Call(ctx, func(ctx context.Context, m stratapb.MetaClient) error { // may time out: it cannot commit either
		_, err := m.AddMember(ctx, &stratapb.AddMemberRequest{Id: "ghost", RaftAddr: "127.0.0.1:1"})
		return err
	})
	cancel()
	ctx, cancel = context.WithTimeout(context.Background(), 3*time.Second)
	err := mc.Call(ctx, func(ctx context.Context, m stratapb.MetaClient) error {
		_, err := m.Mkdir(ctx, &stratapb.MkdirRequest{Header: &stratapb.RequestHeader{ClientId: "test-client", RequestId: 1000}, Parent: 1, Name: "stalled", Mode: 0o755})
		return err
	})
	cancel()
	if err == nil {
		t.Fatal("a commit succeeded with 2 of 4 voters answering")
	}
	c.RestartMeta(down)
	if _, err := createOne(mc, 1); err != nil {
		t.Fatalf("after the downed voter returned: %v", err)
	}
}

func voter(t *testing.T, c *testcluster.Cluster, id string) bool {
	t.Helper()
	mc := dial(t, c)
	var st *stratapb.ClusterStatusResponse
	err := mc.Call(context.Background(), func(ctx context.Context, m stratapb.MetaClient) error {
		var err error
		st, err = m.ClusterStatus(ctx, &stratapb.ClusterStatusRequest{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st.GetMembers() {
		if m.GetId() == id {
			return m.GetVoter()
		}
	}
	t.Fatalf("%s is not a member", id)
	return false
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", d, what)
		}
	}
}
