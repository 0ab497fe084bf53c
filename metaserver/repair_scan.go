package metaserver

import (
	"sort"
	"time"
)

// taskKind says why a shard is to be rebuilt elsewhere. Lower kinds go
// first: lost data before a planned move.
type taskKind uint8

const (
	taskRepair    taskKind = iota // missing, on a lost server, or bad
	taskDrain                     // on a server being drained
	taskRebalance                 // on an overfull server
)

func (k taskKind) String() string {
	return [...]string{"repair", "drain", "rebalance"}[k]
}

// repairTask is one shard to rebuild on another server.
type repairTask struct {
	ino, chunkIndex, chunkID uint64
	shard                    uint32
	from                     uint32 // server the shard is recorded on now (0: unplaced)
	kind                     taskKind
	avail                    int // usable shards of the stripe: fewer = more endangered
	bytes                    uint64
	to                       uint32 // rebalance: the server to move to
}

func (t repairTask) ref() shardRef { return shardRef{t.chunkID, t.shard} }

// scanResult is what one pass over the chunk lists found.
type scanResult struct {
	at                       time.Time
	healthy, degraded, lost  uint64
	tasks                    []repairTask // most endangered first
	placed                   map[uint32]uint64
	drainLeft, drainLeftByte map[uint32]uint64
}

// shardState classifies one shard of a stripe.
type shardState uint8

const (
	shardOK       shardState = iota
	shardDown                // its server is silent, not yet lost: wait
	shardMissing             // unplaced, on a lost or removed server, or reported bad
	shardDraining            // readable, but must move
)

// scan walks every chunk and classifies its stripe. It runs on the leader
// under the FSM read lock; alive says which servers heartbeat.
func (s *state) scan(alive map[uint32]bool, now time.Time) *scanResult {
	r := &scanResult{at: now, placed: map[uint32]uint64{}, drainLeft: map[uint32]uint64{}, drainLeftByte: map[uint32]uint64{}}
	var st []shardState
	// A chunk shared by several files (snapshots, clones, dedup) is one
	// stripe: count and schedule it once (a repair moves every copy).
	shared := map[uint64]bool{}
	for _, n := range s.inodes {
		for ci := range n.chunks {
			c := &n.chunks[ci]
			if s.refs[c.id] > 1 {
				if shared[c.id] {
					continue
				}
				shared[c.id] = true
			}
			st = s.classify(c, alive, st[:0])
			r.add(n.ino, c, st)
		}
	}
	sort.SliceStable(r.tasks, func(i, j int) bool {
		a, b := r.tasks[i], r.tasks[j]
		if a.kind != b.kind {
			return a.kind < b.kind
		}
		return a.avail < b.avail
	})
	return r
}

func (s *state) classify(c *chunk, alive map[uint32]bool, out []shardState) []shardState {
	for i, id := range c.servers {
		_, known := s.servers[id]
		b, bad := s.badShards[shardRef{c.id, uint32(i)}]
		switch {
		case id == 0 || !known || s.heal.lost[id]:
			out = append(out, shardMissing)
		case !alive[id]:
			out = append(out, shardDown) // a report about it waits too
		case bad && b.server == id:
			out = append(out, shardMissing)
		case s.heal.draining[id]:
			out = append(out, shardDraining)
		default:
			out = append(out, shardOK)
		}
	}
	return out
}

func (r *scanResult) add(ino uint64, c *chunk, st []shardState) {
	usable, present := 0, 0
	for _, x := range st {
		if x == shardOK || x == shardDraining {
			usable++
		}
		if x != shardMissing {
			present++
		}
	}
	switch {
	case present < int(c.k):
		r.lost++
	case usable == len(st):
		r.healthy++
	default:
		r.degraded++
	}
	for i, x := range st {
		id := c.servers[i]
		if x != shardMissing {
			r.placed[id] += uint64(c.shardSize)
		}
		t := repairTask{ino: ino, chunkIndex: c.index, chunkID: c.id, shard: uint32(i), from: id, avail: usable, bytes: uint64(c.shardSize)}
		switch {
		case x == shardMissing && usable >= int(c.k):
			t.kind = taskRepair
			r.tasks = append(r.tasks, t)
		case x == shardDraining:
			r.drainLeft[id]++
			r.drainLeftByte[id] += uint64(c.shardSize)
			if usable >= int(c.k) {
				t.kind = taskDrain
				r.tasks = append(r.tasks, t)
			}
		}
	}
}

// planRebalance plans up to limit moves from the fullest to the emptiest
// eligible server while placed bytes differ from the mean by more than
// margin. Only healthy stripes move, and never onto a server holding a
// shard of the same stripe.
func (s *state) planRebalance(r *scanResult, alive map[uint32]bool, margin float64, limit int) []repairTask {
	placed := map[uint32]uint64{}
	for id := range s.servers {
		if alive[id] && !s.heal.lost[id] && !s.heal.draining[id] {
			placed[id] = r.placed[id]
		}
	}
	if len(placed) < 2 {
		return nil
	}
	var out []repairTask
	moved := map[uint64]bool{} // one move per chunk per round
	for len(out) < limit {
		hi, lo, mean := extremes(placed)
		if float64(placed[hi]) <= mean*(1+margin) && float64(placed[lo]) >= mean*(1-margin) {
			break
		}
		t, ok := s.findMove(hi, lo, alive, moved, placed[hi]-placed[lo])
		if !ok {
			break
		}
		moved[t.chunkID] = true
		placed[hi] -= t.bytes
		placed[lo] += t.bytes
		out = append(out, t)
	}
	return out
}

func extremes(placed map[uint32]uint64) (hi, lo uint32, mean float64) {
	var sum uint64
	first := true
	for id, b := range placed {
		sum += b
		if first || b > placed[hi] || b == placed[hi] && id < hi {
			hi = id
		}
		if first || b < placed[lo] || b == placed[lo] && id < lo {
			lo = id
		}
		first = false
	}
	return hi, lo, float64(sum) / float64(len(placed))
}

// findMove finds a shard on hi of a healthy stripe with no shard on lo,
// small enough that moving it narrows the gap.
func (s *state) findMove(hi, lo uint32, alive map[uint32]bool, moved map[uint64]bool, gap uint64) (repairTask, bool) {
	var st []shardState
	// A chunk shared by several files (snapshots, clones, dedup) is one
	// stripe: count and schedule it once (a repair moves every copy).
	shared := map[uint64]bool{}
	for _, n := range s.inodes {
		for ci := range n.chunks {
			c := &n.chunks[ci]
			if s.refs[c.id] > 1 {
				if shared[c.id] {
					continue
				}
				shared[c.id] = true
			}
			if moved[c.id] || 2*uint64(c.shardSize) > gap || !slicesContains(c.servers, hi) || slicesContains(c.servers, lo) {
				continue
			}
			st = s.classify(c, alive, st[:0])
			healthy := true
			for _, x := range st {
				healthy = healthy && x == shardOK
			}
			if !healthy {
				continue
			}
			if !s.keepsSpread(c, hi, lo) {
				continue
			}
			for i, id := range c.servers {
				if id == hi {
					return repairTask{ino: n.ino, chunkIndex: c.index, chunkID: c.id, shard: uint32(i), from: hi, kind: taskRebalance,
						avail: len(c.servers), bytes: uint64(c.shardSize), to: lo}, true
				}
			}
		}
	}
	return repairTask{}, false
}

func slicesContains(s []uint32, v uint32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// keepsSpread reports whether moving c's shard from server from to server
// to leaves no zone or rack with more shards of c than from's had.
func (s *state) keepsSpread(c *chunk, from, to uint32) bool {
	f, t := s.servers[from], s.servers[to]
	if f == nil || t == nil {
		return false
	}
	zones, racks := map[string]int{}, map[string]int{}
	for _, id := range c.servers {
		if ds := s.servers[id]; ds != nil {
			zones[ds.labels["zone"]]++
			racks[ds.labels["zone"]+"/"+ds.labels["rack"]]++
		}
	}
	fz, tz := f.labels["zone"], t.labels["zone"]
	fr, tr := fz+"/"+f.labels["rack"], tz+"/"+t.labels["rack"]
	return (fz == tz || zones[tz]+1 <= zones[fz]-1) && (fr == tr || racks[tr]+1 <= racks[fr]-1)
}
