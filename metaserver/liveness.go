package metaserver

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// watchDataServers runs on every metaserver but acts only on the leader: a
// dataserver silent past RepairDelay is recorded as lost (through raft, so
// a new leader knows), and a lost one that heartbeats again is restored.
// Silence is counted from the later of its last heartbeat and the moment
// this server became leader: a new leader has heard nobody yet, and must
// not declare the whole cluster lost.
func (s *Server) watchDataServers(ctx context.Context) {
	tick := min(time.Second, s.cfg.RepairDelay/4)
	t := time.NewTicker(tick)
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
		for _, cmd := range s.livenessChanges(ctx, time.Now()) {
			if _, err := s.applyCmd(ctx, CmdMarkLost, nil, cmd); err != nil {
				s.log.Warn("recording dataserver liveness", "server", cmd.ServerId, "lost", cmd.Lost, "err", err)
				continue
			}
			if cmd.Lost {
				s.log.Warn("dataserver lost: rebuilding its shards elsewhere", "server", cmd.ServerId, "silent_for_more_than", s.cfg.RepairDelay)
			} else {
				s.log.Info("lost dataserver is back; its repaired shards will be garbage collected", "server", cmd.ServerId)
			}
		}
	}
}

func (s *Server) livenessChanges(ctx context.Context, now time.Time) []*stratapb.MarkLostCommand {
	since := time.Unix(0, s.leaderFrom.Load())
	var out []*stratapb.MarkLostCommand
	silent := map[uint32]string{} // candidates for lost -> address to probe
	_ = s.fsm.read(func(st *state) error {
		byAddr := map[string]int{}
		for _, ds := range st.servers {
			byAddr[ds.addr]++
		}
		for id, ds := range st.servers {
			h, heard := s.live.get(id)
			last := since
			if heard && h.last.After(last) {
				last = h.last
			}
			lost := st.heal.lost[id]
			switch {
			case !lost && now.Sub(last) > s.cfg.RepairDelay && byAddr[ds.addr] == 1:
				silent[id] = ds.addr
			case !lost && now.Sub(last) > s.cfg.RepairDelay:
				// Another identity registered at its address (a replaced
				// disk): whatever answers there is not this server.
				out = append(out, &stratapb.MarkLostCommand{ServerId: id, Lost: true})
			case lost && heard && now.Sub(h.last) <= s.cfg.DataServerGrace:
				out = append(out, &stratapb.MarkLostCommand{ServerId: id, Lost: false})
			}
		}
		return nil
	})
	for id, answers := range s.probeSilent(ctx, silent) {
		if answers {
			// Its heartbeats are late (a starved process, a slow leader
			// change, a one-way network fault) but it serves data: a rebuild
			// of everything it holds would be wasted work, and its shards
			// would then be garbage. Count the answer as a heartbeat.
			s.log.Warn("dataserver silent past the repair delay but answers: not lost", "server", id)
			s.live.touch(id, now)
			continue
		}
		out = append(out, &stratapb.MarkLostCommand{ServerId: id, Lost: true})
	}
	return out
}

// probeSilent asks each silent server, in parallel, whether it answers at
// its address at all. Any answer from its gRPC service counts (even an
// error about the request); a transport failure or a timeout does not.
func (s *Server) probeSilent(ctx context.Context, addrs map[uint32]string) map[uint32]bool {
	out := make(map[uint32]bool, len(addrs))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for id, addr := range addrs {
		wg.Go(func() {
			ok := s.answers(ctx, addr)
			mu.Lock()
			out[id] = ok
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

func (s *Server) answers(ctx context.Context, addr string) bool {
	cc, err := s.dconns.get(addr)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, min(2*time.Second, s.cfg.DataServerGrace))
	defer cancel()
	_, err = stratapb.NewDataClient(cc).StatShard(ctx, &stratapb.StatShardRequest{Key: &stratapb.ShardKey{}})
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return false
	}
	return true
}
