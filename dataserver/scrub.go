package dataserver

import (
	"context"
	"errors"
	"time"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// Scrubber defaults: a full pass a day at most, reading at 16 MiB/s, which
// re-reads 1.3 TiB a day and costs clients little (BENCHMARKS.md).
const (
	DefaultScrubRate     = 16 << 20
	DefaultScrubInterval = 24 * time.Hour
)

// scrubLoop re-reads every shard at ScrubRate bytes per second, verifying
// its block checksums, and reports the corrupt or vanished ones to the
// metadata service as bad shards (the same path a client's failed read
// takes), which sends them to repair. A pass starts every ScrubInterval
// (or right after the last, if it took longer).
func (s *Server) scrubLoop(ctx context.Context) {
	for {
		start := time.Now()
		s.scrubPass(ctx)
		if ctx.Err() != nil {
			return
		}
		s.metrics.heal.scrubPasses.Add(1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(max(s.cfg.ScrubInterval-time.Since(start), 10*time.Millisecond)):
		}
	}
}

func (s *Server) scrubPass(ctx context.Context) {
	rate := float64(s.cfg.ScrubRate)
	began := time.Now()
	var read float64
	for _, k := range s.store.Keys() {
		if ctx.Err() != nil {
			return
		}
		data, _, err := s.store.Read(ctx, k, 0, 0)
		n := len(data)
		switch {
		case err == nil:
		case errors.Is(err, ErrCorrupt), errors.Is(err, ErrNotFound):
			s.scrubFound(ctx, k, err)
		case ctx.Err() == nil:
			s.log.Warn("scrub: cannot read shard", "shard", k, "err", err)
		}
		s.metrics.heal.scrubbed.Add(1)
		s.metrics.heal.scrubbedBytes.Add(uint64(n))
		// Pace: sleep until the bytes read so far fit the rate.
		read += float64(n)
		if ahead := time.Duration(read/rate*float64(time.Second)) - time.Since(began); ahead > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(ahead):
			}
		}
	}
}

// scrubFound reports a bad shard. A shard whose file vanished is also
// dropped from the index, so that the inventory tells the truth.
func (s *Server) scrubFound(ctx context.Context, k Key, err error) {
	if !s.store.has(k) {
		return // deleted while we read it: not a fault
	}
	s.metrics.heal.bads.Add(1)
	s.log.Warn("scrub: bad shard", "shard", k, "err", err)
	if errors.Is(err, ErrNotFound) {
		if _, derr := s.store.Delete(ctx, k); derr != nil {
			s.log.Warn("scrub: forget vanished shard", "shard", k, "err", derr)
		}
	}
	if s.meta == nil || s.ID() == 0 {
		return
	}
	req := &stratapb.ReportBadShardRequest{ChunkId: k.ChunkID, ShardIndex: k.Index, ServerId: s.ID(), Reason: "scrub: " + err.Error()}
	if rerr := s.callMeta(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		_, err := mc.ReportBadShard(ctx, req)
		return err
	}); rerr != nil {
		s.log.Warn("scrub: report bad shard", "shard", k, "err", rerr)
	}
}
