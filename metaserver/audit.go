package metaserver

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// auditor compares every dataserver's shard inventory with the metadata:
// a shard file that nothing references (an orphan: left by a client that
// died between writing shards and committing them, by a delete lost in a
// crash, by a repair that was not committed) is deleted once it is older
// than OrphanGrace; a shard the metadata places on a server that does not
// have it is reported bad, which sends it to repair.
type auditor struct {
	orphansDeleted atomic.Uint64
	missingFound   atomic.Uint64
	trigger        chan struct{}
}

func newAuditor() *auditor { return &auditor{trigger: make(chan struct{}, 1)} }

// runAudit audits every AuditInterval while this server leads.
func (s *Server) runAudit(ctx context.Context) {
	t := time.NewTicker(s.cfg.AuditInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.audit.trigger:
		}
		if !s.IsLeader() {
			continue
		}
		if err := s.auditOnce(ctx); err != nil {
			s.log.Warn("inventory audit", "err", err)
		}
	}
}

// shardRefs is where the metadata places shards: server -> shards.
type shardRefs map[uint32]map[shardRef]bool

func (s *state) shardRefs() shardRefs {
	out := shardRefs{}
	add := func(id uint32, r shardRef) {
		if id == 0 {
			return
		}
		m := out[id]
		if m == nil {
			m = map[shardRef]bool{}
			out[id] = m
		}
		m[r] = true
	}
	for _, n := range s.inodes {
		for ci := range n.chunks {
			c := &n.chunks[ci]
			for i, id := range c.servers {
				add(id, shardRef{c.id, uint32(i)})
			}
		}
	}
	return out
}

// garbageRefs is where garbage shards are (or were, if already deleted):
// never orphans (the garbage collector deletes them, after its own grace),
// never missing.
func (s *state) garbageRefs() shardRefs {
	out := shardRefs{}
	for _, g := range s.garbage {
		for i, id := range g.servers {
			if id == 0 {
				continue
			}
			if out[id] == nil {
				out[id] = map[shardRef]bool{}
			}
			out[id][shardRef{g.id, uint32(i)}] = true
		}
	}
	return out
}

// auditOnce audits every live dataserver once.
func (s *Server) auditOnce(ctx context.Context) error {
	var before, garbageBefore shardRefs
	addrs := map[uint32]string{}
	alive := s.aliveSet(time.Now())
	_ = s.fsm.read(func(st *state) error {
		before, garbageBefore = st.shardRefs(), st.garbageRefs()
		for id, ds := range st.servers {
			if alive[id] && !st.heal.lost[id] {
				addrs[id] = ds.addr
			}
		}
		return nil
	})
	listed := map[uint32][]*stratapb.ListedShard{}
	for id, addr := range addrs {
		l, err := s.listShards(ctx, addr)
		if err != nil {
			s.log.Info("audit: cannot list shards", "server", id, "err", err)
			continue
		}
		listed[id] = l
	}
	// Whatever was committed while the servers were listed is in after.
	var after, garbage shardRefs
	_ = s.fsm.read(func(st *state) error {
		after, garbage = st.shardRefs(), st.garbageRefs()
		return nil
	})

	cutoff := time.Now().Add(-s.cfg.OrphanGrace).UnixNano()
	for id, shards := range listed {
		s.auditServer(ctx, id, addrs[id], shards, before[id], after[id], union(garbageBefore[id], garbage[id]), cutoff)
	}
	return nil
}

func union(a, b map[shardRef]bool) map[shardRef]bool {
	out := make(map[shardRef]bool, len(a)+len(b))
	for r := range a {
		out[r] = true
	}
	for r := range b {
		out[r] = true
	}
	return out
}

func (s *Server) auditServer(ctx context.Context, id uint32, addr string, shards []*stratapb.ListedShard, before, after, garbage map[shardRef]bool, cutoff int64) {
	have := make(map[shardRef]bool, len(shards))
	for _, sh := range shards {
		r := shardRef{sh.ChunkId, sh.Index}
		have[r] = true
		if before[r] || after[r] || garbage[r] || sh.MtimeNs > cutoff {
			continue
		}
		s.log.Info("audit: deleting orphan shard", "server", id, "chunk", r.chunk, "shard", r.index)
		s.deleteShard(ctx, addr, r.chunk, r.index)
		s.audit.orphansDeleted.Add(1)
	}
	for r := range before {
		if have[r] || !after[r] || garbage[r] {
			continue // present, no longer placed there, or garbage
		}
		s.audit.missingFound.Add(1)
		s.log.Warn("audit: shard missing on its server", "server", id, "chunk", r.chunk, "shard", r.index)
		cmd := &stratapb.ReportBadShardCommand{ChunkId: r.chunk, ShardIndex: r.index, ServerId: id, Reason: "missing (inventory audit)"}
		if _, err := s.applyCmd(ctx, CmdReportBadShard, nil, cmd); err != nil {
			s.log.Warn("audit: report missing shard", "err", err)
		}
	}
}

func (s *Server) listShards(ctx context.Context, addr string) ([]*stratapb.ListedShard, error) {
	cc, err := s.dconns.get(addr)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	resp, err := stratapb.NewRepairClient(cc).ListShards(cctx, &stratapb.ListShardsRequest{})
	if err != nil {
		return nil, err
	}
	return resp.Shards, nil
}
