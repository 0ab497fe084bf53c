package dataserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/strata-hpc/strata/internal/metaconn"
	"github.com/strata-hpc/strata/internal/pki"
	"github.com/strata-hpc/strata/internal/rpcerr"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// newMetaConn prepares the leader-following connection to the metadata
// service; it dials lazily, so a metadata service that is not up yet is
// not an error.
func (s *Server) newMetaConn() error {
	if len(s.cfg.MetaAddrs) == 0 || s.meta != nil {
		return nil
	}
	opts := metaconn.Options{AttemptTimeout: s.callTimeout(), Logger: s.log}
	opts.DialOptions = append(opts.DialOptions, pki.DialCreds(s.cfg.TLS, pki.RoleMeta))
	// Redial a metaserver at least every second: with gRPC's default
	// back-off (up to 2 min) a dataserver cut off for a few seconds could
	// stay silent long after the network heals, and be declared lost.
	bc := backoff.DefaultConfig
	bc.MaxDelay = time.Second
	opts.DialOptions = append(opts.DialOptions, grpc.WithConnectParams(grpc.ConnectParams{Backoff: bc, MinConnectTimeout: 2 * time.Second}))
	if s.cfg.Net != nil {
		opts.DialOptions = append(opts.DialOptions, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return s.cfg.Net.Dial(ctx, "tcp", addr)
		}))
	}
	mc, err := metaconn.New(s.cfg.MetaAddrs, opts)
	if err != nil {
		return fmt.Errorf("dataserver: %w", err)
	}
	s.meta = mc
	return nil
}

// callTimeout bounds one registration or heartbeat, so that a hung leader
// delays the next heartbeat by a few intervals at most.
func (s *Server) callTimeout() time.Duration {
	return min(max(3*s.cfg.HeartbeatInterval, 2*time.Second), 10*time.Second)
}

// metaLoop registers with the metadata service, retrying until it answers,
// then heartbeats every interval. It runs until ctx ends.
func (s *Server) metaLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.HeartbeatInterval)
	defer t.Stop()
	failing := false
	for {
		err := s.beat(ctx)
		if ctx.Err() != nil {
			return
		}
		failing = s.noteMetaResult(err, failing)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// noteMetaResult logs the first failure of a run loudly and the rest
// quietly, so that a metadata outage does not flood the log.
func (s *Server) noteMetaResult(err error, failing bool) bool {
	switch {
	case err == nil && failing:
		s.log.Info("metadata service reachable again", "id", s.ID())
	case err != nil && !failing:
		s.log.Warn("cannot reach metadata service; will keep trying", "err", err)
	case err != nil:
		s.log.Debug("metadata call failed", "err", err)
	}
	return err != nil
}

// beat registers if the server has no id yet, else heartbeats. A heartbeat
// refused with ENOENT means the leader does not know our id (its state was
// rebuilt, or we were removed): register again at once.
func (s *Server) beat(ctx context.Context) error {
	if s.ID() == 0 {
		return s.register(ctx)
	}
	err := s.heartbeat(ctx)
	if rpcerr.ErrnoOf(err) == syscall.ENOENT {
		s.log.Warn("metadata service does not know this dataserver; registering again", "id", s.ID())
		s.id.Store(0)
		return s.register(ctx)
	}
	return err
}

func (s *Server) register(ctx context.Context) error {
	c := s.capacity(ctx)
	req := &stratapb.RegisterDataServerRequest{
		Uuid:          s.uuid,
		Addr:          s.advertiseAddr(),
		Labels:        s.cfg.Labels,
		CapacityBytes: c.TotalBytes,
		UsedBytes:     c.UsedBytes,
	}
	var id uint32
	err := s.callMeta(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		resp, err := mc.RegisterDataServer(ctx, req)
		if err != nil {
			return err
		}
		if resp.GetId() == 0 {
			return errors.New("dataserver: metadata service assigned id 0")
		}
		id = resp.GetId()
		s.noteKeys(resp.GetCapKeys())
		return nil
	})
	if err != nil {
		return fmt.Errorf("dataserver: register: %w", err)
	}
	s.id.Store(id)
	s.log.Info("registered with metadata service", "id", id, "addr", req.Addr)
	return nil
}

func (s *Server) heartbeat(ctx context.Context) error {
	c := s.capacity(ctx)
	req := &stratapb.HeartbeatRequest{
		Id:            s.ID(),
		Uuid:          s.uuid,
		Addr:          s.advertiseAddr(),
		CapacityBytes: c.TotalBytes,
		UsedBytes:     c.UsedBytes,
		FreeBytes:     c.FreeBytes,
		ShardCount:    c.Shards,
		ReadOnly:      !c.Writable,

		ForegroundBytesPerSec: s.metrics.heal.fg.rate(time.Now()),
	}
	err := s.callMeta(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		resp, err := mc.Heartbeat(ctx, req)
		if err == nil {
			s.noteKeys(resp.GetCapKeys())
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("dataserver: heartbeat: %w", err)
	}
	return nil
}

func (s *Server) callMeta(ctx context.Context, fn func(context.Context, stratapb.MetaClient) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.callTimeout())
	defer cancel()
	return s.meta.Call(ctx, fn)
}

// capacity reads the store's capacity. A failing statfs is logged, and
// what could be measured is reported anyway: a heartbeat with partial
// numbers (and read_only set when no disk has room) beats silence, which
// the leader would take for a dead server.
func (s *Server) capacity(ctx context.Context) Capacity {
	c, err := s.store.Capacity(ctx)
	if err != nil {
		s.log.Warn("cannot measure disk capacity", "err", err)
	}
	return c
}
