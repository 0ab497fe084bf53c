package metaserver_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/internal/testcluster"
)

// TestHealLeaderKilledMidRepair slows repair down, kills a dataserver,
// and kills the metadata leader once repair is under way: the new leader
// resumes from the replicated state and every stripe is whole again, each
// shard on one distinct server (nothing committed twice).
func TestHealLeaderKilledMidRepair(t *testing.T) {
	e := newHealEnv(t, testcluster.Options{Data: 8, RepairDelay: time.Second})
	e.write("l", 32<<20, 2<<20)
	rate, one := int64(2<<20), uint32(1)
	if _, err := e.c.SetRepairConfig(hctx(t), client.RepairSettings{RateBytes: &rate, Concurrency: &one}); err != nil {
		t.Fatal(err)
	}
	victim := e.dataID(0)
	e.cl.KillData(0)
	waitCond(t, 60*time.Second, "repair under way", func() bool {
		st := e.status()
		return st.RepairedShards >= 2 && st.QueueShards > 0
	})
	old := e.leader()
	t.Logf("killing leader m%d with %d shards repaired", old+1, e.status().RepairedShards)
	e.cl.KillMeta(old)
	t.Cleanup(func() {
		if e.cl.Meta[old].Srv == nil {
			e.cl.RestartMeta(old)
		}
	})
	if l := e.cl.WaitLeader(); l == old {
		t.Fatal("old leader still leads")
	}
	fast := int64(512 << 20)
	if _, err := e.c.SetRepairConfig(hctx(t), client.RepairSettings{RateBytes: &fast}); err != nil {
		t.Fatal(err)
	}
	e.waitStripes(map[uint32]bool{victim: true}, 6, 2*time.Minute)
	if st := e.status(); st.RepairedShards == 0 {
		t.Fatalf("the new leader repaired nothing: %v", st)
	}
	e.verify()
}

// TestHealDrainWhileWriting drains a dataserver while a client writes:
// afterwards no chunk places a shard on it, its disk holds no shard file,
// it can be removed, and every file reads back.
func TestHealDrainWhileWriting(t *testing.T) {
	// The audit runs too: a put that hit a slow server before the drain
	// may have left an unreferenced shard file there.
	e := newHealEnv(t, testcluster.Options{Data: 8, AuditInterval: time.Second, OrphanGrace: 2 * time.Second})
	e.write("d", 24<<20, 2<<20)
	id := e.dataID(0)
	var mu sync.Mutex
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			data := randData(1<<20+i*4096, uint64(i)+99)
			p := fmt.Sprintf("/w-%03d", i)
			if _, err := e.c.Put(hctx(t), p, bytesReader(data), client.PutOptions{}); err != nil {
				t.Errorf("put %s during drain: %v", p, err)
				return
			}
			mu.Lock()
			e.files[p] = data
			mu.Unlock()
		}
	}()
	if err := e.c.Drain(hctx(t), id, false); err != nil {
		t.Fatal(err)
	}
	waitCond(t, 90*time.Second, "drain under way", func() bool { return e.status().RepairedShards > 0 })
	stop.Store(true) // writes overlapped the drain; the last ones may have
	wg.Wait()        // been placed just before it began
	mu.Lock()
	defer mu.Unlock()
	waitCond(t, 2*time.Minute, "no chunk placing a shard on the drained server", func() bool {
		for _, ch := range e.chunks() {
			for _, s := range ch.Servers {
				if s == id {
					return false
				}
			}
		}
		return true
	})
	waitCond(t, 60*time.Second, "drained server's disk to be empty", func() bool {
		return e.cl.Data[0].Srv.Store().Stats().Shards == 0
	})
	if err := e.c.RemoveDataServer(hctx(t), id); err != nil {
		t.Fatalf("remove drained server: %v", err)
	}
	e.verify()
}

// TestHealRebalanceNewServer adds a dataserver to a full cluster: shards
// move onto it until every server's placed bytes are within the margin.
func TestHealRebalanceNewServer(t *testing.T) {
	e := newHealEnv(t, testcluster.Options{Data: 6})
	e.write("r", 24<<20, 2<<20)
	i := e.cl.AddData()
	id := e.dataID(i)
	const margin = 0.10
	waitCond(t, 90*time.Second, "placed bytes within the margin", func() bool {
		placed := map[uint32]uint64{}
		var shard uint64
		for _, ch := range e.chunks() {
			shard = uint64(ch.ShardSize)
			for _, s := range ch.Servers {
				placed[s] += uint64(ch.ShardSize)
			}
		}
		if len(placed) != 7 || placed[id] == 0 {
			return false
		}
		var sum uint64
		for _, b := range placed {
			sum += b
		}
		mean := float64(sum) / 7
		for _, b := range placed {
			if d := float64(b) - mean; d > margin*mean+float64(shard) || -d > margin*mean+float64(shard) {
				return false
			}
		}
		return true
	})
	e.verify()
}

// TestHealOrphansAndMissing: a shard file no metadata references is
// deleted by the inventory audit after the grace; a shard the metadata
// places on a server that lost it is found missing and repaired.
func TestHealOrphansAndMissing(t *testing.T) {
	e := newHealEnv(t, testcluster.Options{Data: 6, AuditInterval: 500 * time.Millisecond, OrphanGrace: time.Second,
		ScrubRate: -1})
	noRebalance := 0.99
	if _, err := e.c.SetRepairConfig(hctx(t), client.RepairSettings{BalanceMargin: &noRebalance}); err != nil {
		t.Fatal(err)
	}
	e.write("o", 8<<20, 2<<20)
	store := e.cl.Data[1].Srv.Store()
	orphan := dataserverKey(1<<40, 2)
	if err := store.Put(hctx(t), orphan, []byte("nobody references me"), crcOf([]byte("nobody references me"))); err != nil {
		t.Fatal(err)
	}
	files := e.shardFiles()
	var gone shardFile
	for _, f := range files {
		if f.data == 2 {
			gone = f
			break
		}
	}
	old := placedOn(e.chunks(), gone.chunk, gone.index)
	removeFile(t, gone.path)
	goneKey := dataserverKey(gone.chunk, gone.index)
	waitCond(t, 60*time.Second, "orphan deleted and missing shard repaired", func() bool {
		_, _, err := store.Read(hctx(t), orphan, 0, 0)
		if err == nil {
			return false
		}
		if placedOn(e.chunks(), gone.chunk, gone.index) != old {
			return true // rebuilt elsewhere
		}
		_, _, err = e.cl.Data[gone.data].Srv.Store().Read(hctx(t), goneKey, 0, 0)
		return err == nil // rebuilt in place (6 servers, 6-wide stripes)
	})
	st := e.status()
	if st.OrphansDeleted == 0 || st.MissingFound == 0 {
		t.Fatalf("audit counters: %d orphans deleted, %d missing found", st.OrphansDeleted, st.MissingFound)
	}
	e.verify()
}

// TestHealReturnBeforeAndAfterDelay: a dataserver cut off for less than the
// repair delay causes no repair; one cut off for longer is declared lost,
// its shards are rebuilt elsewhere, and when it comes back its surplus
// copies are garbage collected.
func TestHealReturnBeforeAndAfterDelay(t *testing.T) {
	const delay = 10 * time.Second
	// The audit also runs: a put that hit a slow server may have left an
	// unreferenced shard file there (the write went to a spare), which
	// only the audit removes.
	e := newHealEnv(t, testcluster.Options{Data: 8, RepairDelay: delay, AuditInterval: time.Second, OrphanGrace: 2 * time.Second})
	noRebalance := 0.99 // only repair may move shards here
	if _, err := e.c.SetRepairConfig(hctx(t), client.RepairSettings{BalanceMargin: &noRebalance}); err != nil {
		t.Fatal(err)
	}
	e.write("t", 16<<20, 2<<20)
	id := e.dataID(0)
	onIt := func() int { // shards the metadata places on the server
		n := 0
		for _, ch := range e.chunks() {
			for _, s := range ch.Servers {
				if s == id {
					n++
				}
			}
		}
		return n
	}
	placedBefore := onIt()
	cut := time.Now()
	e.cl.PartitionData(0)
	waitCond(t, 30*time.Second, "server seen down", func() bool {
		st, err := e.c.ClusterStatus(hctx(t))
		if err != nil {
			return false
		}
		for _, d := range st.Dataservers {
			if d.Id == id {
				return !d.Alive
			}
		}
		return false
	})
	e.verify() // reads skip the down server
	e.cl.HealData(0)
	e.cl.WaitDataServers(8)
	time.Sleep(time.Until(cut.Add(delay + time.Second))) // past the delay: nothing may happen now
	if st := e.status(); len(st.LostServers) != 0 || onIt() != placedBefore {
		t.Fatalf("a server back within the delay had shards moved off it (%d placed there, was %d): %v", onIt(), placedBefore, st)
	}
	before := e.cl.Data[0].Srv.Store().Stats().Shards

	e.cl.PartitionData(0)
	e.waitStripes(map[uint32]bool{id: true}, 6, 2*time.Minute)
	held := e.cl.Data[0].Srv.Store().Keys() // every one now rebuilt elsewhere
	e.cl.HealData(0)
	waitCond(t, 60*time.Second, "surplus shards of the returned server collected", func() bool {
		chunks := e.chunks()
		for _, k := range held {
			if placedOn(chunks, k.ChunkID, k.Index) == id {
				continue // placed there again (a later repair or move)
			}
			if _, _, err := e.cl.Data[0].Srv.Store().Read(hctx(t), k, 0, 0); err == nil {
				return false
			}
		}
		return true
	})
	waitCond(t, 30*time.Second, "server no longer lost", func() bool { return len(e.status().LostServers) == 0 })
	t.Logf("returned server held %d shards before, %d surplus after its repair, all collected", before, len(held))
	e.verify()
}

// TestHealSpreadsZones: 9 dataservers in 3 zones; new stripes put 2 shards
// in each zone, and after a server dies its shards are rebuilt so that no
// zone holds more than 2 shards of a stripe (losing a zone loses 2 of 6).
func TestHealSpreadsZones(t *testing.T) {
	zone := func(i int) string { return string(rune('a' + i%3)) }
	e := newHealEnv(t, testcluster.Options{Data: 9, RepairDelay: time.Second,
		Labels: func(i int) map[string]string { return map[string]string{"zone": zone(i)} }})
	e.write("z", 16<<20, 2<<20)
	zoneOf := map[uint32]string{}
	for i := range e.cl.Data {
		zoneOf[e.dataID(i)] = zone(i)
	}
	check := func(when string) {
		for _, ch := range e.chunks() {
			per := map[string]int{}
			for _, s := range ch.Servers {
				per[zoneOf[s]]++
			}
			for z, n := range per {
				if n > 2 {
					t.Fatalf("%s: chunk %d has %d shards in zone %s (servers %v)", when, ch.Id, n, z, ch.Servers)
				}
			}
		}
	}
	check("after writing")
	victim := e.dataID(0)
	e.cl.KillData(0)
	e.waitStripes(map[uint32]bool{victim: true}, 6, 2*time.Minute)
	check("after repair")
	e.verify()
}
