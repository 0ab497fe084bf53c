package metaserver

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/strata-hpc/strata/internal/metaconn"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// liveness is the leader's view of dataserver health, from heartbeats. It
// is not replicated: a new leader learns it again within one heartbeat.
type liveness struct {
	mu      sync.Mutex
	servers map[uint32]*dsHealth
	deaf    map[uint32]bool // tests: heartbeats from these are dropped
}

type dsHealth struct {
	last                 time.Time
	capacity, used, free uint64
	shards               uint64
	readOnly             bool
	foreground           uint64 // client shard I/O per second
}

func newLiveness() *liveness { return &liveness{servers: make(map[uint32]*dsHealth)} }

func (l *liveness) beat(r *stratapb.HeartbeatRequest, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.deaf[r.Id] {
		return
	}
	l.servers[r.Id] = &dsHealth{last: now, capacity: r.CapacityBytes, used: r.UsedBytes, free: r.FreeBytes, shards: r.ShardCount, readOnly: r.ReadOnly, foreground: r.ForegroundBytesPerSec}
}

// touch records that server id answered (a probe), keeping what its last
// heartbeat said about its disks.
func (l *liveness) touch(id uint32, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h, ok := l.servers[id]; ok {
		h.last = now
		return
	}
	l.servers[id] = &dsHealth{last: now}
}

func (l *liveness) forget(id uint32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.servers, id)
}

func (l *liveness) get(id uint32) (dsHealth, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h, ok := l.servers[id]
	if !ok {
		return dsHealth{}, false
	}
	return *h, true
}

// candidate is a dataserver that can take new shards.
type candidate struct {
	id   uint32
	addr string
	fill float64 // fraction of capacity in use
	host string
	zone string
	rack string
}

// writable lists live, writable dataservers, and counts the live ones
// (writable or full).
func (s *Server) writable(st *state, now time.Time) (out []candidate, alive int) {
	for id, ds := range st.servers {
		h, ok := s.live.get(id)
		if !ok || now.Sub(h.last) > s.cfg.DataServerGrace {
			continue
		}
		alive++
		if h.readOnly || st.heal.draining[id] || st.heal.lost[id] {
			continue
		}
		fill := 1.0
		if h.capacity > 0 {
			fill = 1 - float64(h.free)/float64(h.capacity)
		}
		host := ds.labels["host"]
		if host == "" {
			host = ds.addr
		}
		out = append(out, candidate{id: id, addr: ds.addr, fill: fill, host: host, zone: ds.labels["zone"], rack: ds.labels["rack"]})
	}
	return out, alive
}

// place chooses servers for the shards of one chunk: distinct servers,
// emptier ones first, ties broken at random so load spreads. When fewer
// servers are live than the stripe is wide, the missing shards are left
// unplaced (id 0) as long as k+1 can be placed: the chunk is written
// degraded and repair completes it, as Ceph does above min_size.
//
// Too few servers *alive* is a transient state (servers restarting, or not
// yet heard by a new leader): ErrNotEnoughServers, which clients retry, so
// a write stalls instead of failing, as on an NFS hard mount. Enough alive
// but too few with room is ENOSPC.
func place(cands []candidate, alive, width, k int) (servers, spares []uint32, err error) {
	need := k + 1
	if width < need {
		need = width
	}
	if alive < need {
		return nil, nil, fmt.Errorf("%w: %d alive, a %d-shard stripe needs %d", ErrNotEnoughServers, alive, width, need)
	}
	if len(cands) < need {
		return nil, nil, errnof(syscall.ENOSPC, "need %d dataservers with free space for a %d-shard stripe, %d of the %d alive have room", need, width, len(cands), alive)
	}
	perm := append([]candidate(nil), cands...)
	rand.Shuffle(len(perm), func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
	// Bucket fill levels by 5% so that equally full servers stay shuffled.
	sort.SliceStable(perm, func(i, j int) bool { return int(perm[i].fill*20) < int(perm[j].fill*20) })
	perm = spreadDomains(perm, width)
	servers = make([]uint32, width)
	for i := 0; i < width && i < len(perm); i++ {
		servers[i] = perm[i].id
	}
	for i := width; i < len(perm) && len(spares) < 4; i++ {
		spares = append(spares, perm[i].id)
	}
	return servers, spares, nil
}

// spreadDomains reorders cands so that the first width of them share as
// few failure domains as possible: each next pick is the first candidate
// (in the given, emptiest-first order) sharing the fewest zones, then
// racks, then hosts with those already picked. Without labels every server
// is its own host and the order is unchanged.
func spreadDomains(cands []candidate, width int) []candidate {
	out := make([]candidate, 0, len(cands))
	rest := append([]candidate(nil), cands...)
	zones, racks, hosts := map[string]int{}, map[string]int{}, map[string]int{}
	for len(out) < width && len(rest) > 0 {
		best, bestKey := 0, [3]int{}
		for i, c := range rest {
			key := [3]int{zones[c.zone], racks[c.zone+"/"+c.rack], hosts[c.host]}
			if i == 0 || key[0] < bestKey[0] || key[0] == bestKey[0] && (key[1] < bestKey[1] || key[1] == bestKey[1] && key[2] < bestKey[2]) {
				best, bestKey = i, key
			}
		}
		c := rest[best]
		zones[c.zone]++
		racks[c.zone+"/"+c.rack]++
		hosts[c.host]++
		out = append(out, c)
		rest = append(rest[:best], rest[best+1:]...)
	}
	return append(out, rest...)
}

// placeAllocations fills in where each newly reserved chunk goes.
func (s *Server) placeAllocations(resp *stratapb.AllocateChunksResponse, pol policy, sizes []uint32) error {
	return s.fsm.read(func(st *state) error {
		now := time.Now()
		cands, alive := s.writable(st, now)
		unheard := s.unheard(st, now)
		resp.ServerAddrs = make(map[uint32]string)
		for i, a := range resp.Allocations {
			a.Scheme, a.DataShards, a.ParityShards = stratapb.Scheme_ERASURE, uint32(pol.k), uint32(pol.m)
			if i < len(sizes) && sizes[i] < pol.small {
				a.Scheme, a.DataShards = stratapb.Scheme_REPLICATED, 1
			}
			if width := int(a.DataShards + a.ParityShards); unheard > 0 && len(cands) < width {
				// Not a degraded write on a hunch: a new leader that has
				// not heard every server yet lets the client retry.
				return fmt.Errorf("%w: new leader has heard %d dataservers, %d more may be alive", ErrNotEnoughServers, alive, unheard)
			}
			var err error
			a.Servers, a.Spares, err = place(cands, alive, int(a.DataShards+a.ParityShards), int(a.DataShards))
			if err != nil {
				return err
			}
		}
		for _, c := range cands {
			resp.ServerAddrs[c.id] = c.addr
		}
		return nil
	})
}

// dataConns caches gRPC connections to other servers (dataservers for
// garbage collection, the leader for self-registration).
type dataConns struct {
	mu    sync.Mutex
	creds grpc.DialOption // TLS (or plain text) for every connection
	conns map[string]*grpc.ClientConn
}

func newDataConns(creds grpc.DialOption) *dataConns {
	return &dataConns{creds: creds, conns: make(map[string]*grpc.ClientConn)}
}

func (d *dataConns) get(addr string) (*grpc.ClientConn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if cc, ok := d.conns[addr]; ok {
		return cc, nil
	}
	cc, err := grpc.NewClient(addr, metaconn.DialOptions(d.creds)...)
	if err != nil {
		return nil, fmt.Errorf("metaserver: dial %s: %w", addr, err)
	}
	d.conns[addr] = cc
	return cc, nil
}

func (d *dataConns) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for a, cc := range d.conns {
		cc.Close()
		delete(d.conns, a)
	}
}

// unheard counts the registered, not lost, dataservers that a leader
// younger than the heartbeat grace has not heard from yet: they may well
// be alive (their heartbeats went to the old leader). Placement waits for
// them rather than writing a stripe degraded that could be written whole a
// moment later (found by TestClusterDegradedRead: a leader change just
// before the writes left a shard unplaced, and two failures then lost it).
func (s *Server) unheard(st *state, now time.Time) int {
	if now.Sub(time.Unix(0, s.leaderFrom.Load())) > s.cfg.DataServerGrace {
		return 0
	}
	n := 0
	for id := range st.servers {
		if _, heard := s.live.get(id); !heard && !st.heal.lost[id] {
			n++
		}
	}
	return n
}
