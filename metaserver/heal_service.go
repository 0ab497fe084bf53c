package metaserver

import (
	"context"
	"math"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/strata-hpc/strata/internal/rpcerr"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// healService is the Heal gRPC service: repair throttle, status, drain and
// removal of dataservers. Only the leader answers.
type healService struct {
	stratapb.UnimplementedHealServer
	s *Server
}

func (h *healService) SetRepairConfig(ctx context.Context, r *stratapb.SetRepairConfigRequest) (*stratapb.SetRepairConfigResponse, error) {
	s := h.s
	if r.RateBytesPerSec != nil && *r.RateBytesPerSec <= 0 {
		return nil, rpcerr.Errno(syscall.EINVAL, "repair rate must be positive, got %d bytes/s", *r.RateBytesPerSec)
	}
	if r.Concurrency != nil && (*r.Concurrency < 1 || *r.Concurrency > maxRepairConcurrency) {
		return nil, rpcerr.Errno(syscall.EINVAL, "repair concurrency %d not in 1..%d", *r.Concurrency, maxRepairConcurrency)
	}
	if r.BalanceMargin != nil && (*r.BalanceMargin <= 0 || *r.BalanceMargin >= 1 || math.IsNaN(*r.BalanceMargin)) {
		return nil, rpcerr.Errno(syscall.EINVAL, "balance margin %g not in (0, 1)", *r.BalanceMargin)
	}
	if !s.IsLeader() {
		return nil, rpcerr.NotLeader(s.leaderHint())
	}
	// Read-modify-write of the whole config: two operators racing each
	// other's change is resolved by the last one winning, which is what
	// one expects of a setting.
	var cfg repairConfig
	_ = s.fsm.read(func(st *state) error { cfg = st.heal.cfg; return nil })
	if r.Concurrency != nil {
		cfg.concurrency = *r.Concurrency
	}
	if r.RateBytesPerSec != nil {
		cfg.rate = uint64(*r.RateBytesPerSec)
	}
	if r.Paused != nil {
		cfg.paused = *r.Paused
	}
	if r.BalanceMargin != nil {
		cfg.margin = *r.BalanceMargin
	}
	if _, err := s.applyCmd(ctx, CmdSetRepairConfig, r.Header, &stratapb.SetRepairConfigCommand{Config: cfg.proto()}); err != nil {
		return nil, err
	}
	s.log.Info("repair settings changed", "concurrency", cfg.concurrency, "rate", cfg.rate, "paused", cfg.paused, "margin", cfg.margin)
	return &stratapb.SetRepairConfigResponse{Config: cfg.proto()}, nil
}

func (h *healService) RepairStatus(ctx context.Context, r *stratapb.RepairStatusRequest) (*stratapb.RepairStatusResponse, error) {
	if !h.s.IsLeader() {
		return nil, rpcerr.NotLeader(h.s.leaderHint())
	}
	return h.s.repairStatus(), nil
}

func (h *healService) Drain(ctx context.Context, r *stratapb.DrainRequest) (*stratapb.DrainResponse, error) {
	_, err := h.s.applyCmd(ctx, CmdSetDrain, r.Header, &stratapb.SetDrainCommand{ServerId: r.ServerId, Drain: !r.Cancel})
	if err != nil {
		return nil, err
	}
	h.s.log.Info("dataserver drain", "server", r.ServerId, "cancel", r.Cancel)
	return &stratapb.DrainResponse{}, nil
}

func (h *healService) RemoveDataServer(ctx context.Context, r *stratapb.RemoveDataServerRequest) (*stratapb.RemoveDataServerResponse, error) {
	_, err := h.s.applyCmd(ctx, CmdRemoveDataServer, r.Header, &stratapb.RemoveDataServerCommand{ServerId: r.ServerId})
	if err != nil {
		return nil, err
	}
	h.s.live.forget(r.ServerId)
	h.s.log.Info("dataserver removed", "server", r.ServerId)
	return &stratapb.RemoveDataServerResponse{}, nil
}

// repairStatus summarises the last scan and the scheduler (zero on a
// follower, which does not scan).
func (s *Server) repairStatus() *stratapb.RepairStatusResponse {
	out := &stratapb.RepairStatusResponse{EtaSeconds: -1}
	var heartbeats map[uint32]uint64
	_ = s.fsm.read(func(st *state) error {
		out.Config = st.heal.cfg.proto()
		for id := range st.heal.lost {
			out.LostServers = append(out.LostServers, id)
		}
		heartbeats = map[uint32]uint64{}
		for id := range st.heal.draining {
			out.Drains = append(out.Drains, &stratapb.DrainProgress{ServerId: id})
			if h, ok := s.live.get(id); ok {
				heartbeats[id] = h.shards
			}
		}
		return nil
	})
	slices.Sort(out.LostServers)
	slices.SortFunc(out.Drains, func(a, b *stratapb.DrainProgress) int { return int(a.ServerId) - int(b.ServerId) })
	out.RepairedShards, out.RepairedBytes = s.repair.repairedShards.Load(), s.repair.repairedBytes.Load()
	out.OrphansDeleted, out.MissingFound = s.audit.orphansDeleted.Load(), s.audit.missingFound.Load()
	out.InFlight = uint64(s.repair.inFlight())
	out.RateBytesPerSec = s.repair.rate.perSecond()
	out.ClientBytesPerSec, out.ActiveConcurrency = s.repair.clientIO.Load(), s.repair.activeConc.Load()
	sr := s.repair.lastScan()
	if sr == nil {
		return out
	}
	out.ScanAgeMs = uint64(time.Since(sr.at).Milliseconds())
	out.HealthyStripes, out.DegradedStripes, out.LostStripes = sr.healthy, sr.degraded, sr.lost
	for _, t := range sr.tasks {
		if t.kind == taskRebalance {
			out.RebalanceShards++
		}
	}
	out.QueueShards, out.QueueBytes = s.repair.queued(sr)
	for _, d := range out.Drains {
		d.RemainingShards, d.RemainingBytes, d.StoredShards = sr.drainLeft[d.ServerId], sr.drainLeftByte[d.ServerId], heartbeats[d.ServerId]
	}
	switch {
	case out.QueueBytes == 0:
		out.EtaSeconds = 0
	case out.RateBytesPerSec > 0:
		out.EtaSeconds = float64(out.QueueBytes) / out.RateBytesPerSec
	}
	return out
}

// checkIdentity refuses a registration that claims the identity (uuid) of
// a dataserver that is alive at another address: two processes sharing
// one identity would each be sent the other's shards. A server that moved
// (new address, old one silent) registers normally.
func (s *Server) checkIdentity(r *stratapb.RegisterDataServerRequest) error {
	var err error
	_ = s.fsm.read(func(st *state) error {
		id, ok := st.byUUID[r.Uuid]
		if !ok || st.servers[id].addr == r.Addr {
			return nil
		}
		// A new leader has heard nobody yet: like livenessChanges, it counts
		// every server as heard when it took over, so that a failover is
		// not a window in which a live identity can be taken.
		last := time.Unix(0, s.leaderFrom.Load())
		if h, heard := s.live.get(id); heard && h.last.After(last) {
			last = h.last
		}
		if time.Since(last) <= s.cfg.DataServerGrace {
			err = rpcerr.Errno(syscall.EEXIST, "dataserver identity %s (id %d) is in use by a live server at %s; refusing registration from %s (copied data directory?)", r.Uuid, id, st.servers[id].addr, r.Addr)
		}
		return nil
	})
	return err
}

// AuditNow starts an inventory audit at once (tests, operators).
func (s *Server) AuditNow() {
	select {
	case s.audit.trigger <- struct{}{}:
	default:
	}
}

// transportFailure tells a client's report of an unreachable server (the
// reasons the client writes for Unavailable, DeadlineExceeded, Canceled,
// and for a server the leader left out of a chunk list because it is down)
// from one of a missing or corrupt shard.
func transportFailure(reason string) bool {
	for _, p := range []string{"unavailable", "timed out", "canceled", "no address known"} {
		if strings.HasPrefix(reason, p) {
			return true
		}
	}
	return false
}
