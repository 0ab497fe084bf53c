package metaserver

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-hpc/strata/internal/capability"
	"github.com/strata-hpc/strata/proto/stratapb"
)

const gcBatch = 256

// collectGarbage runs on every server but works only on the leader: it
// deletes the shards of chunks that no file has referenced for GCGrace,
// then
// records in the log that they are gone. A shard whose server is down is
// retried on a later round (orphans left by servers that never return are
// the orphan scanner's job).
func (s *Server) collectGarbage(ctx context.Context) {
	t := time.NewTicker(s.cfg.GCInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.IsLeader() {
			continue
		}
		if n, err := s.gcRound(ctx); err != nil {
			s.log.Warn("garbage collection round", "err", err)
		} else if n > 0 {
			s.log.Debug("garbage collected", "chunks", n)
		}
	}
}

func (s *Server) gcRound(ctx context.Context) (int, error) {
	type job struct {
		g     garbageChunk
		addrs map[uint32]string
	}
	var jobs []job
	// A reader or writer that fetched a chunk list just before the chunk
	// was replaced may still read the old chunk (a read-modify-write
	// patches it): its shards stay for GCGrace.
	cutoff := time.Now().Add(-s.cfg.GCGrace).UnixNano()
	alive := s.aliveSet(time.Now())
	_ = s.fsm.read(func(st *state) error {
		for _, g := range st.garbage {
			if len(jobs) == gcBatch || g.at > cutoff {
				break // garbage is in discard order: the rest is younger
			}
			j := job{g: g, addrs: map[uint32]string{}}
			waiting := false
			for _, id := range g.servers {
				if ds, ok := st.servers[id]; ok {
					j.addrs[id] = ds.addr
					// A down (or lost) server keeps its garbage until it
					// is back, or removed; do not dial it meanwhile.
					waiting = waiting || !alive[id]
				}
			}
			if !waiting {
				jobs = append(jobs, j)
			}
		}
		return nil
	})
	done := &stratapb.GCDoneCommand{}
	for _, j := range jobs {
		if s.deleteChunk(ctx, j.g, j.addrs) {
			done.ChunkIds = append(done.ChunkIds, j.g.id)
			done.AtNs = append(done.AtNs, j.g.at)
		}
	}
	if len(done.ChunkIds) == 0 {
		return 0, nil
	}
	_, err := s.applyCmd(ctx, CmdGCDone, nil, done)
	return len(done.ChunkIds), err
}

// deleteChunk deletes every shard of g; it reports whether all are gone.
func (s *Server) deleteChunk(ctx context.Context, g garbageChunk, addrs map[uint32]string) bool {
	capb, err := s.IssueCapability(g.id, capability.OpDelete)
	if err != nil {
		return false
	}
	ok := true
	for i, id := range g.servers {
		addr, known := addrs[id]
		if id == 0 || !known {
			continue // never placed, or the server was removed
		}
		cc, err := s.dconns.get(addr)
		if err != nil {
			ok = false
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err = stratapb.NewDataClient(cc).DeleteShard(cctx, &stratapb.DeleteShardRequest{Key: &stratapb.ShardKey{ChunkId: g.id, Index: uint32(i)}, Capability: capb})
		cancel()
		if err != nil && status.Code(err) != codes.NotFound {
			ok = false
		}
	}
	return ok
}
