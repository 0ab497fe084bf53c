package metaserver

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/strata-hpc/strata/proto/stratapb"
)

const raftLeader = raft.Leader

// watchLeadership tracks whether this server may serve as leader. A new
// leader first waits on a barrier, so that its FSM holds every entry the
// old leader committed before it answers reads.
func (s *Server) watchLeadership(ctx context.Context) {
	ch := s.parts.raft.LeaderCh()
	for {
		select {
		case <-ctx.Done():
			return
		case isLeader := <-ch:
			s.ready.Store(false)
			if !isLeader {
				s.releaseServiceIP()
				s.log.Info("lost leadership")
				continue
			}
			if err := s.barrier(ctx); err != nil {
				s.log.Warn("barrier after election failed", "err", err)
				continue
			}
			if err := s.ensureCapKey(ctx); err != nil {
				s.log.Warn("cannot make the first capability key", "err", err)
				continue
			}
			s.leaderFrom.Store(time.Now().UnixNano())
			s.ready.Store(true)
			s.takeServiceIP()
			s.log.Info("became leader", "term", s.parts.raft.Stats()["term"])
		}
	}
}

// barrier waits for a raft barrier, or for ctx. A barrier enqueued just as
// raft shuts down may never be answered (nothing drains raft's apply
// channel after shutdown); Close, which waits for this goroutine, must not
// hang on it (seen in a -race run of the tenant tests under load).
func (s *Server) barrier(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- s.parts.raft.Barrier(s.cfg.ApplyTimeout).Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// takeServiceIP makes this leader answer on the service IP. A failure is
// logged, not fatal: clients also know the servers' own addresses.
func (s *Server) takeServiceIP() {
	if s.vip == nil {
		return
	}
	if err := s.vip.acquire(s.grpc); err != nil {
		s.log.Error("cannot take the service ip", "err", err)
	}
}

func (s *Server) releaseServiceIP() {
	if s.vip != nil {
		s.vip.release()
	}
}

// leaderHint is the gRPC address of the leader as this server knows it.
func (s *Server) leaderHint() string {
	_, id := s.parts.raft.LeaderWithID()
	if id == "" {
		return ""
	}
	var addr string
	_ = s.fsm.read(func(st *state) error {
		addr = st.members[string(id)]
		return nil
	})
	return addr
}

func (s *Server) verifyLeader() error {
	return s.parts.raft.VerifyLeader().Error()
}

// readBarrier makes reads linearizable at the cost of one heartbeat round
// shared by every read waiting at that moment: a read waits for a leader
// check that *started after the read arrived*, then reads the local FSM.
type readBarrier struct {
	verify func() error

	mu      sync.Mutex
	waiting []chan error
	running bool
}

func newReadBarrier(verify func() error) *readBarrier {
	return &readBarrier{verify: verify}
}

func (b *readBarrier) wait(ctx context.Context) error {
	ch := make(chan error, 1)
	b.mu.Lock()
	b.waiting = append(b.waiting, ch)
	if !b.running {
		b.running = true
		go b.loop()
	}
	b.mu.Unlock()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// loop runs leader checks while reads wait; each check answers the reads
// that were waiting when it began.
func (b *readBarrier) loop() {
	for {
		b.mu.Lock()
		batch := b.waiting
		b.waiting = nil
		if len(batch) == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		err := b.verify()
		for _, ch := range batch {
			ch <- err
		}
	}
}

// registerSelf makes sure the FSM knows this server's gRPC address, so that
// followers can point clients at the leader. The leader writes its own
// entry; a follower asks the leader to write it.
func (s *Server) registerSelf(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		var cur string
		_ = s.fsm.read(func(st *state) error {
			cur = st.members[s.cfg.ID]
			return nil
		})
		if cur != s.adv {
			if err := s.tryRegisterSelf(ctx); err != nil {
				s.log.Debug("register self", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Server) tryRegisterSelf(ctx context.Context) error {
	req := &stratapb.RegisterMetaCommand{ServerId: s.cfg.ID, GrpcAddr: s.adv}
	if s.IsLeader() {
		_, err := s.applyCmd(ctx, CmdRegisterMeta, nil, req)
		return err
	}
	addr := s.leaderHint()
	if addr == "" {
		return ErrNotLeader
	}
	cc, err := s.dconns.get(addr)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = stratapb.NewMetaClient(cc).RegisterMeta(cctx, &stratapb.RegisterMetaRequest{ServerId: s.cfg.ID, GrpcAddr: s.adv})
	return err
}
