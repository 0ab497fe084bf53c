package metaserver

import (
	"context"
	"time"

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
		for _, cmd := range s.livenessChanges(time.Now()) {
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

func (s *Server) livenessChanges(now time.Time) []*stratapb.MarkLostCommand {
	since := time.Unix(0, s.leaderFrom.Load())
	var out []*stratapb.MarkLostCommand
	_ = s.fsm.read(func(st *state) error {
		for id := range st.servers {
			h, heard := s.live.get(id)
			last := since
			if heard && h.last.After(last) {
				last = h.last
			}
			lost := st.heal.lost[id]
			switch {
			case !lost && now.Sub(last) > s.cfg.RepairDelay:
				out = append(out, &stratapb.MarkLostCommand{ServerId: id, Lost: true})
			case lost && heard && now.Sub(h.last) <= s.cfg.DataServerGrace:
				out = append(out, &stratapb.MarkLostCommand{ServerId: id, Lost: false})
			}
		}
		return nil
	})
	return out
}
