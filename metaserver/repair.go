package metaserver

import (
	"context"
	"errors"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strata-hpc/strata/internal/capability"
	"github.com/strata-hpc/strata/internal/rpcerr"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// repairer is the leader's repair scheduler. Its state is soft: what must
// survive a leader change (lost and draining servers, the throttle, where
// every shard is) is in the FSM; a new leader rescans and resumes.
//
// A scan walks every chunk; its tasks are then dispatched as slots free
// up, without scanning again for each one (a finished task starts the next
// at once, where a rescan per completion left every slot idle for the
// scan and a pause). The list is refreshed by a new scan every second
// while busy, and at once when it runs dry.
type repairer struct {
	s      *Server
	bucket *tokenBucket

	mu       sync.Mutex
	last     *scanResult
	finished map[shardRef]bool // tasks of the last scan done since
	inflight map[shardRef]bool
	backoff  map[shardRef]time.Time // failed tasks wait until then
	done     chan struct{}          // a task finished

	// Owned by the run goroutine.
	pending   []repairTask // tasks of the last scan not started yet
	scannedAt time.Time

	repairedShards, repairedBytes atomic.Uint64
	failed                        atomic.Uint64
	rate                          rateMeter
	clientIO                      atomic.Uint64 // as of the last dispatch
	activeConc                    atomic.Uint32
}

// rescanEvery bounds how stale the dispatched task list may get while
// busy: newly degraded stripes (a second server lost) get in line by then.
const rescanEvery = time.Second

func newRepairer(s *Server) *repairer {
	return &repairer{s: s, bucket: newTokenBucket(), finished: map[shardRef]bool{}, inflight: map[shardRef]bool{},
		backoff: map[shardRef]time.Time{}, done: make(chan struct{}, 1)}
}

// run scans and dispatches while this server leads.
func (r *repairer) run(ctx context.Context) {
	for {
		wait := r.s.cfg.RepairInterval
		if r.s.IsLeader() && !r.s.cfg.NoRepair {
			if busy := r.round(ctx); busy {
				wait = min(wait, 250*time.Millisecond)
			}
		} else {
			r.setLast(nil)
			r.pending = nil
		}
		select {
		case <-ctx.Done():
			return
		case <-r.done:
		case <-time.After(wait):
		}
		if len(r.pending) > 0 {
			continue // more to start: no rescan needed
		}
		// A short pause so that a burst of finished tasks costs one scan.
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (r *repairer) setLast(sr *scanResult) {
	r.mu.Lock()
	r.last = sr
	clear(r.finished)
	r.mu.Unlock()
}

// lastScan is the latest scan (nil before the first, or on a follower).
func (r *repairer) lastScan() *scanResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// queued counts the shards and bytes of the last scan's tasks that have
// not finished since.
func (r *repairer) queued(sr *scanResult) (shards, bytes uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range sr.tasks {
		if !r.finished[t.ref()] {
			shards++
			bytes += t.bytes
		}
	}
	return shards, bytes
}

// round scans when the task list is empty or stale, then starts what the
// throttle allows; it reports whether work is left, so that the next
// round comes soon.
func (r *repairer) round(ctx context.Context) bool {
	var cfg repairConfig
	_ = r.s.fsm.read(func(st *state) error { cfg = st.heal.cfg; return nil })
	if len(r.pending) == 0 || time.Since(r.scannedAt) > rescanEvery {
		r.scan()
	}
	if cfg.paused || len(r.pending) == 0 {
		r.activeConc.Store(0) // nothing to yield
		return false
	}
	r.bucket.setRate(cfg.rate)
	return r.dispatch(ctx, r.concurrency(cfg))
}

// Client I/O comes first: while the dataservers serve more than
// busyClientIO of client shard traffic, repair runs a quarter of its
// rebuilds at once (at least one). On a cluster whose CPU or disks are the
// bottleneck every rebuild (k shard reads, a decode, a write) competes
// with the clients; fewer at once leaves them most of the capacity while
// repair keeps moving. An idle cluster repairs at full concurrency.
const (
	busyClientIO    = 8 << 20
	busyConcDivisor = 4
)

// concurrency is the number of rebuild slots to use now, and records it
// with the client load it was chosen for.
func (r *repairer) concurrency(cfg repairConfig) int {
	fg := r.s.clientIO(time.Now())
	conc := int(cfg.concurrency)
	if fg > busyClientIO {
		conc = max(1, conc/busyConcDivisor)
	}
	r.clientIO.Store(fg)
	r.activeConc.Store(uint32(conc))
	return conc
}

// scan classifies every chunk and replaces the task list.
func (r *repairer) scan() {
	alive := r.s.aliveSet(time.Now())
	var sr *scanResult
	_ = r.s.fsm.read(func(st *state) error {
		sr = st.scan(alive, time.Now())
		// Rebalance plans from placed bytes that in-flight moves have not
		// changed yet: planning again before they land would overshoot.
		if len(sr.tasks) == 0 && r.inFlight() == 0 {
			sr.tasks = st.planRebalance(sr, alive, st.heal.cfg.margin, int(st.heal.cfg.concurrency))
		}
		return nil
	})
	r.setLast(sr)
	r.pending = slices.Clone(sr.tasks)
	r.scannedAt = time.Now()
}

// dispatch starts pending tasks, most endangered first, while slots and
// the bandwidth limit allow; tasks it cannot start yet stay pending.
func (r *repairer) dispatch(ctx context.Context, conc int) bool {
	sr := r.lastScan()
	rest := r.pending[:0:0]
	for i, t := range r.pending {
		if ctx.Err() != nil || !r.s.IsLeader() || r.inFlight() >= conc {
			r.pending = append(rest, r.pending[i:]...)
			return true
		}
		if r.isFinished(t) {
			continue
		}
		if !r.claim(t, conc) {
			rest = append(rest, t)
			continue
		}
		if err := r.bucket.wait(ctx, t.bytes); err != nil {
			r.release(t)
			r.pending = append(rest, r.pending[i:]...)
			return true
		}
		r.s.goRun(func() {
			defer r.release(t)
			if r.execute(ctx, t, sr.placed) {
				r.finish(t)
			}
		})
	}
	r.pending = rest
	return true
}

func (r *repairer) isFinished(t repairTask) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.finished[t.ref()]
}

func (r *repairer) finish(t repairTask) {
	r.mu.Lock()
	r.finished[t.ref()] = true
	r.mu.Unlock()
}

// claim reserves a slot for t unless it is already running or every slot
// is taken.
func (r *repairer) claim(t repairTask, conc int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inflight[t.ref()] || len(r.inflight) >= conc || time.Now().Before(r.backoff[t.ref()]) {
		return false
	}
	delete(r.backoff, t.ref())
	r.inflight[t.ref()] = true
	return true
}

func (r *repairer) release(t repairTask) {
	r.mu.Lock()
	delete(r.inflight, t.ref())
	r.mu.Unlock()
	select {
	case r.done <- struct{}{}:
	default:
	}
}

// failedTask makes t wait a while before it is tried again, so that a
// shard that cannot be rebuilt now (no server can take it, sources down)
// does not spin the scheduler.
func (r *repairer) failedTask(t repairTask) {
	r.failed.Add(1)
	r.mu.Lock()
	r.backoff[t.ref()] = time.Now().Add(time.Second)
	if len(r.backoff) > 1<<16 {
		clear(r.backoff)
	}
	r.mu.Unlock()
}

func (r *repairer) inFlight() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.inflight)
}

// execute rebuilds one shard on a new server and commits its location; it
// reports whether it did.
func (r *repairer) execute(ctx context.Context, t repairTask, placed map[uint32]uint64) bool {
	log := r.s.log.With("chunk", t.chunkID, "shard", t.shard, "from", t.from, "kind", t.kind.String())
	plan, err := r.s.planRebuild(t, placed)
	if err != nil {
		r.failedTask(t)
		log.Debug("cannot plan repair", "err", err)
		return false
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cc, err := r.s.dconns.get(plan.targetAddr)
	var capb []byte
	if err == nil {
		// Rebuild on the target, read on the peers it fetches from.
		capb, err = r.s.IssueCapability(plan.chunk.GetId(), capability.OpRebuild|capability.OpRead)
	}
	if err == nil {
		_, err = stratapb.NewRepairClient(cc).RebuildShard(cctx, &stratapb.RebuildShardRequest{Chunk: plan.chunk, Index: t.shard, Sources: plan.sources, Capability: capb})
	}
	if err != nil {
		r.failedTask(t)
		log.Warn("rebuild failed", "target", plan.target, "err", err)
		return false
	}
	cmd := &stratapb.CommitRepairCommand{Ino: t.ino, ChunkIndex: t.chunkIndex, ChunkId: t.chunkID, ShardIndex: t.shard, ExpectServer: t.from, NewServer: plan.target}
	if _, err := r.s.applyCmd(ctx, CmdCommitRepair, nil, cmd); err != nil {
		r.failedTask(t)
		log.Info("repair not committed", "target", plan.target, "err", err)
		if rpcerr.ErrnoOf(err) != 0 && plan.target != t.from { // the stripe changed: the copy is surplus
			r.s.deleteShard(ctx, plan.targetAddr, t.chunkID, t.shard)
		}
		return false
	}
	r.repairedShards.Add(1)
	r.repairedBytes.Add(t.bytes)
	r.rate.add(t.bytes)
	r.s.met.repaired(t.kind, t.bytes)
	log.Debug("shard rebuilt", "to", plan.target)
	return true
}

// rebuildPlan is where a shard is rebuilt and from what.
type rebuildPlan struct {
	target     uint32
	targetAddr string
	chunk      *stratapb.Chunk
	sources    map[uint32]string
}

// planRebuild reads the chunk as it is now and picks a target: a live,
// writable server holding no shard of the stripe, in a failure domain the
// stripe does not use yet where possible, with the fewest placed bytes.
func (s *Server) planRebuild(t repairTask, placed map[uint32]uint64) (rebuildPlan, error) {
	var p rebuildPlan
	now := time.Now()
	alive := s.aliveSet(now)
	err := s.fsm.read(func(st *state) error {
		n, err := st.get(t.ino)
		if err != nil {
			return err
		}
		i, ok := n.findChunk(t.chunkIndex)
		if !ok || n.chunks[i].id != t.chunkID {
			return errors.New("chunk changed")
		}
		c := &n.chunks[i]
		if c.servers[t.shard] != t.from {
			return errors.New("shard moved")
		}
		p.chunk = c.proto()
		p.sources = map[uint32]string{}
		states := st.classify(c, alive, nil)
		used := newDomainCount()
		for j, id := range c.servers {
			if j != int(t.shard) && (states[j] == shardOK || states[j] == shardDraining) {
				p.sources[id] = st.servers[id].addr
			}
			if ds, ok := st.servers[id]; ok && j != int(t.shard) {
				used.add(ds)
			}
		}
		cands, _ := s.writable(st, now)
		best := -1
		var bestKey [4]uint64
		for ci, cd := range cands {
			if slicesContains(c.servers, cd.id) || t.to != 0 && cd.id != t.to {
				continue
			}
			key := used.key(st.servers[cd.id], placed[cd.id])
			if best < 0 || lessKey(key, bestKey) {
				best, bestKey = ci, key
			}
		}
		if best >= 0 {
			p.target, p.targetAddr = cands[best].id, cands[best].addr
			return nil
		}
		// No other server can take it (as many servers as shards): a bad
		// or missing shard on a live server is rebuilt where it was.
		if t.kind == taskRepair && t.from != 0 && alive[t.from] && !st.heal.lost[t.from] && !st.heal.draining[t.from] {
			p.target, p.targetAddr = t.from, st.servers[t.from].addr
			return nil
		}
		return errors.New("no server can take the shard")
	})
	return p, err
}

// domainCount counts the zones, racks and hosts a stripe already uses, so
// that a rebuilt shard goes where it shares the fewest (then to the server
// with the fewest placed bytes).
type domainCount struct{ zones, racks, hosts map[string]uint64 }

func newDomainCount() domainCount {
	return domainCount{zones: map[string]uint64{}, racks: map[string]uint64{}, hosts: map[string]uint64{}}
}

func hostOf(ds *dataServer) string { return orDefault(ds.labels["host"], ds.addr) }

func (d domainCount) add(ds *dataServer) {
	d.zones[ds.labels["zone"]]++
	d.racks[ds.labels["zone"]+"/"+ds.labels["rack"]]++
	d.hosts[hostOf(ds)]++
}

func (d domainCount) key(ds *dataServer, placed uint64) [4]uint64 {
	return [4]uint64{d.zones[ds.labels["zone"]], d.racks[ds.labels["zone"]+"/"+ds.labels["rack"]], d.hosts[hostOf(ds)], placed}
}

func lessKey(a, b [4]uint64) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// clientIO sums the client shard I/O that live dataservers reported in
// their heartbeats.
func (s *Server) clientIO(now time.Time) uint64 {
	var sum uint64
	_ = s.fsm.read(func(st *state) error {
		for id := range st.servers {
			if h, ok := s.live.get(id); ok && now.Sub(h.last) <= s.cfg.DataServerGrace {
				sum += h.foreground
			}
		}
		return nil
	})
	return sum
}

// aliveSet lists the servers that heartbeat within the grace period.
func (s *Server) aliveSet(now time.Time) map[uint32]bool {
	out := map[uint32]bool{}
	_ = s.fsm.read(func(st *state) error {
		for id := range st.servers {
			if h, ok := s.live.get(id); ok && now.Sub(h.last) <= s.cfg.DataServerGrace {
				out[id] = true
			}
		}
		return nil
	})
	return out
}

func (s *Server) deleteShard(ctx context.Context, addr string, chunkID uint64, index uint32) {
	cc, err := s.dconns.get(addr)
	if err != nil {
		return
	}
	capb, err := s.IssueCapability(chunkID, capability.OpDelete)
	if err != nil {
		s.log.Debug("delete surplus shard: no capability", "chunk", chunkID, "err", err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := stratapb.NewDataClient(cc).DeleteShard(cctx, &stratapb.DeleteShardRequest{Key: &stratapb.ShardKey{ChunkId: chunkID, Index: index}, Capability: capb}); err != nil {
		s.log.Debug("delete surplus shard", "chunk", chunkID, "shard", index, "addr", addr, "err", err)
	}
}

// tokenBucket limits repair bandwidth. The burst is a quarter second of
// rate; a shard larger than that waits for a full bucket and overdraws it.
type tokenBucket struct {
	mu     sync.Mutex
	rate   float64
	tokens float64
	last   time.Time
}

func newTokenBucket() *tokenBucket { return &tokenBucket{rate: defaultRepairRate, last: time.Now()} }

func (b *tokenBucket) setRate(r uint64) {
	b.mu.Lock()
	b.rate = float64(r)
	b.mu.Unlock()
}

func (b *tokenBucket) burst() float64 { return max(b.rate/4, 64<<10) }

// wait takes n tokens, sleeping until they are there.
func (b *tokenBucket) wait(ctx context.Context, n uint64) error {
	for {
		b.mu.Lock()
		now := time.Now()
		b.tokens = min(b.burst(), b.tokens+now.Sub(b.last).Seconds()*b.rate)
		b.last = now
		need := float64(n)
		if b.tokens >= need || b.tokens >= b.burst() {
			b.tokens -= need
			b.mu.Unlock()
			return nil
		}
		sleep := time.Duration((need - b.tokens) / b.rate * float64(time.Second))
		b.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(sleep, time.Second)):
		}
	}
}

// rateMeter measures repaired bytes per second over a sliding window.
type rateMeter struct {
	mu      sync.Mutex
	samples []rateSample
}

type rateSample struct {
	at    time.Time
	bytes uint64
}

const rateWindow = 10 * time.Second

func (m *rateMeter) add(n uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	m.samples = append(m.samples, rateSample{now, n})
	m.trim(now)
}

func (m *rateMeter) trim(now time.Time) {
	i := sort.Search(len(m.samples), func(i int) bool { return now.Sub(m.samples[i].at) <= rateWindow })
	m.samples = m.samples[i:]
}

// perSecond is the rate over the window (0 when nothing was repaired).
func (m *rateMeter) perSecond() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	m.trim(now)
	if len(m.samples) == 0 {
		return 0
	}
	var sum uint64
	for _, s := range m.samples {
		sum += s.bytes
	}
	span := max(now.Sub(m.samples[0].at), time.Second)
	return float64(sum) / span.Seconds()
}
