// Package metaserver is Strata's metadata service: a Raft-replicated state
// machine holding the namespace (inodes, directories, chunk lists), the
// dataserver membership, and the dedup table that makes client retries
// idempotent; and the gRPC service in front of it. A Server is embeddable:
// a Config in, no package-level state, so a test runs many in one process.
package metaserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/strata-hpc/strata/internal/grpcutil"
	"github.com/strata-hpc/strata/internal/pki"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// Server is one metaserver: a raft voter and its gRPC service.
type Server struct {
	stratapb.UnimplementedMetaServer

	cfg Config
	log *slog.Logger
	fsm *FSM

	parts   *raftParts
	grpc    *grpc.Server
	grpcLis net.Listener
	http    *http.Server
	adv     string // advertised gRPC address

	ready      atomic.Bool  // leader, and the FSM has caught up with the log
	leaderFrom atomic.Int64 // unix ns when this server last became leader
	vip        *serviceIP   // nil without a service IP
	live       *liveness
	reads      *readBarrier
	dconns     *dataConns
	met        *metrics
	repair     *repairer
	audit      *auditor

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// New checks the config and builds a server; Start runs it.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "metaserver", "id", cfg.ID)
	s := &Server{
		cfg:    cfg,
		log:    log,
		fsm:    newFSM(policyFromProto(cfg.DefaultPolicy), log),
		live:   newLiveness(),
		dconns: newDataConns(pki.DialCreds(cfg.TLS, pki.RoleMeta, pki.RoleData)),
	}
	s.reads = newReadBarrier(s.verifyLeader)
	s.repair, s.audit = newRepairer(s), newAuditor()
	if cfg.ServiceIP != "" {
		vip, err := newServiceIP(cfg.ServiceIP, cfg.ServiceIface, cfg.GRPCAddr, cfg.ServicePort, log)
		if err != nil {
			return nil, fmt.Errorf("metaserver: config: %w", err)
		}
		s.vip = vip
	}
	return s, nil
}

// Start opens the raft store, joins or bootstraps the cluster and serves
// gRPC. It returns once the server is listening.
func (s *Server) Start(ctx context.Context) error {
	raftLis, err := listen(s.cfg.RaftListener, s.cfg.RaftAddr)
	if err != nil {
		return fmt.Errorf("metaserver: listen raft %s: %w", s.cfg.RaftAddr, err)
	}
	grpcLis, err := listen(s.cfg.GRPCListener, s.cfg.GRPCAddr)
	if err != nil {
		raftLis.Close()
		return fmt.Errorf("metaserver: listen grpc %s: %w", s.cfg.GRPCAddr, err)
	}
	s.grpcLis = grpcLis
	s.adv = s.cfg.GRPCAdvertise
	if s.adv == "" {
		s.adv = grpcLis.Addr().String()
	}
	reg := s.cfg.Registerer
	if reg == nil && s.cfg.MetricsAddr != "" {
		r := prometheus.NewRegistry()
		reg = r
		s.http = &http.Server{Addr: s.cfg.MetricsAddr, Handler: promhttp.HandlerFor(r, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	}
	s.met = newMetrics(reg, s)
	if s.vip != nil {
		s.vip.clearStale()
	}
	parts, err := s.openRaft(raftLis)
	if err != nil {
		raftLis.Close()
		grpcLis.Close()
		return err
	}
	s.parts = parts
	s.grpc = grpc.NewServer(grpcutil.ServerOptions(s.log, grpcutil.MaxMsgSize, append([]grpc.ServerOption{
		// Mutual TLS and per-method roles first: nothing else runs for a
		// caller that is not allowed to call at all.
		pki.ServerCreds(s.cfg.TLS, s.cfg.Audit, s.log), pki.Authz(s.cfg.TLS, s.cfg.Audit, s.log), pki.StreamAuthz(s.cfg.TLS, s.cfg.Audit, s.log),
		grpc.ChainUnaryInterceptor(s.met.interceptor, s.tenantInterceptor)}, limitOptions(s.cfg.Limits)...)...)...)
	stratapb.RegisterMetaServer(s.grpc, s)
	stratapb.RegisterSnapServer(s.grpc, &snapService{s: s})
	stratapb.RegisterImageServer(s.grpc, &imageService{s: s})
	stratapb.RegisterHealServer(s.grpc, &healService{s: s})
	stratapb.RegisterLockServer(s.grpc, &lockService{s: s})
	stratapb.RegisterImportServer(s.grpc, &importService{s: s})
	stratapb.RegisterCapAdminServer(s.grpc, &capAdminService{s: s})
	stratapb.RegisterTenantServer(s.grpc, &tenantService{s: s})
	ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.goRun(func() {
		if err := s.grpc.Serve(s.cfg.Net.Listener(grpcLis)); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("grpc server stopped", "err", err)
		}
	})
	s.serveMetrics()
	s.goRun(func() { s.watchLeadership(ctx) })
	s.goRun(func() { s.registerSelf(ctx) })
	s.goRun(func() { s.collectGarbage(ctx) })
	s.goRun(func() { s.watchDataServers(ctx) })
	s.goRun(func() { s.repair.run(ctx) })
	s.goRun(func() { s.runAudit(ctx) })
	s.log.Info("metaserver started", "raft", s.raftAdvertise(raftLis), "grpc", s.adv)
	return nil
}

// listen uses a listener the caller opened (tests reserve their ports that
// way), or opens one.
func listen(l net.Listener, addr string) (net.Listener, error) {
	if l != nil {
		return l, nil
	}
	return net.Listen("tcp", addr)
}

func (s *Server) goRun(fn func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
}

func (s *Server) serveMetrics() {
	if s.http == nil {
		return
	}
	lis, err := net.Listen("tcp", s.http.Addr)
	if err != nil {
		s.log.Error("metrics listener", "addr", s.http.Addr, "err", err)
		s.http = nil
		return
	}
	lis = pki.WrapListener(s.cfg.TLS, lis, s.cfg.Audit, s.log, "meta-metrics")
	s.goRun(func() {
		if err := s.http.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("metrics server", "err", err)
		}
	})
}

// Close stops serving and shuts raft down. Safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		if s.cancel != nil {
			s.cancel()
		}
		s.ready.Store(false)
		if s.vip != nil {
			s.vip.shutdown()
		}
		if s.grpc != nil {
			stopGRPC(s.grpc, 2*time.Second)
		}
		if s.http != nil {
			s.http.Close()
		}
		if s.parts != nil {
			s.closeErr = s.parts.close()
		}
		s.dconns.close()
		s.wg.Wait()
		if s.met != nil {
			s.met.unregister()
		}
		s.log.Info("metaserver stopped")
	})
	return s.closeErr
}

// stopGRPC lets in-flight calls finish for a moment, then cuts the rest.
func stopGRPC(g *grpc.Server, wait time.Duration) {
	done := make(chan struct{})
	go func() {
		g.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(wait):
		g.Stop()
		<-done
	}
}

// ServiceAddr is the service IP and port, or "" without a service IP.
func (s *Server) ServiceAddr() string {
	if s.vip == nil {
		return ""
	}
	return s.vip.String()
}

// HoldsServiceIP reports whether this server serves on the service IP.
func (s *Server) HoldsServiceIP() bool {
	if s.vip == nil {
		return false
	}
	s.vip.mu.Lock()
	defer s.vip.mu.Unlock()
	return s.vip.held
}

// GRPCAddr is the address clients use.
func (s *Server) GRPCAddr() string { return s.adv }

// ID is the raft server id.
func (s *Server) ID() string { return s.cfg.ID }

// IsLeader reports whether this server is the leader and ready to serve.
func (s *Server) IsLeader() bool {
	return s.ready.Load() && s.parts != nil && s.parts.raft.State() == raftLeader
}

// RaftStats are raft's own counters (state, term, indexes, snapshot).
func (s *Server) RaftStats() map[string]string {
	if s.parts == nil {
		return nil
	}
	return s.parts.raft.Stats()
}

// FSMStats is a summary of the replicated state, for tests and status.
type FSMStats struct {
	Inodes, Chunks, Logical, Garbage uint64
	BadShards                        uint64 // reported bad and not yet repaired
	AppliedIndex                     uint64
	Digest                           uint64 // hash of the namespace: equal on voters in sync
	// Stored is the bytes of every shard of the live chunks (Chunks counts
	// distinct chunks, however many files hold each); ContentChunks counts
	// those with a content hash (dedup).
	Stored, ContentChunks uint64
}

// CommandsApplied is how many commands of type t this server's FSM has
// applied since it started (or restored): tests count raft entries by it.
func (s *Server) CommandsApplied(t CommandType) uint64 { return s.fsm.counts[t].Load() }

// Stats summarises the FSM.
func (s *Server) Stats() FSMStats {
	var st FSMStats
	_ = s.fsm.read(func(x *state) error {
		st = FSMStats{Inodes: uint64(len(x.inodes)), Chunks: uint64(len(x.refs)), Logical: x.logical, Garbage: uint64(len(x.garbage)), BadShards: uint64(len(x.badShards)), Digest: x.digest(), Stored: x.stored, ContentChunks: uint64(len(x.byHash))}
		return nil
	})
	st.AppliedIndex = s.fsm.AppliedIndex()
	// A snapshot installed from the leader moves the state forward
	// without an Apply: raft knows the index it restored.
	if s.parts != nil && s.parts.raft != nil {
		st.AppliedIndex = max(st.AppliedIndex, s.parts.raft.AppliedIndex())
	}
	return st
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
