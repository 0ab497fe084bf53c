package metaserver_test

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/internal/testcluster"
)

// TestHealHeartbeatGapIsNotLoss: a dataserver whose heartbeats stop
// arriving for longer than the repair delay, while it still serves data
// (a starved process, a one-way network fault, a heartbeat stuck behind a
// slow leader change), is not declared lost and nothing is rebuilt: the
// leader asks it directly before it records the loss. This was a repair
// that nothing explained, seen in about one run in four of the heal tests
// on a loaded machine (issue 5, defect a).
func TestHealHeartbeatGapIsNotLoss(t *testing.T) {
	const delay = time.Second
	e := newHealEnv(t, testcluster.Options{Data: 7, RepairDelay: delay})
	noRebalance := 0.99
	if _, err := e.c.SetRepairConfig(hctx(t), client.RepairSettings{BalanceMargin: &noRebalance}); err != nil {
		t.Fatal(err)
	}
	e.write("g", 8<<20, 1<<20)
	id := e.dataID(0)
	layout := func() map[uint64][]uint32 {
		out := map[uint64][]uint32{}
		waitCond(t, time.Minute, "chunk lists from a leader", func() bool {
			chunks := e.chunks() // nil when the leader changed meanwhile
			for _, ch := range chunks {
				out[ch.Id] = ch.Servers
			}
			return len(chunks) > 0
		})
		return out
	}
	before := layout()
	for _, m := range e.cl.Meta {
		m.Srv.DropHeartbeats(id, true)
	}
	t.Cleanup(func() {
		for _, m := range e.cl.Meta {
			if m.Srv != nil {
				m.Srv.DropHeartbeats(id, false)
			}
		}
	})
	// Silent for several repair delays; it must never be recorded lost.
	for end := time.Now().Add(4 * delay); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if st, err := e.c.RepairStatus(hctx(t)); err == nil && slices.Contains(st.LostServers, id) {
			t.Fatalf("dataserver %d declared lost although it answers (status %v)", id, st)
		}
	}
	for _, m := range e.cl.Meta {
		m.Srv.DropHeartbeats(id, false)
	}
	st := e.status()
	if st.RepairedShards != 0 || st.InFlight != 0 {
		t.Fatalf("shards rebuilt after a heartbeat gap: %v", st)
	}
	if after := layout(); !maps.EqualFunc(before, after, slices.Equal) {
		t.Fatalf("shards moved after a heartbeat gap:\nbefore %v\nafter  %v", before, after)
	}
	e.verify()
}
