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
