package metaserver

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/strata-hpc/strata/internal/netfault"
	"github.com/strata-hpc/strata/internal/pki"
)

// raftStream is raft's StreamLayer over TCP, through the fault switch so
// that tests can partition this server.
//
// With TLS, the listener completes each peer's handshake (role meta
// required) before raft sees the connection, and Dial presents this
// server's meta certificate and accepts only a meta peer.
type raftStream struct {
	net.Listener
	sw        *netfault.Switch
	advertise net.Addr
	tls       *pki.Identity // nil: plain TCP
}

func (r *raftStream) Addr() net.Addr { return r.advertise }

func (r *raftStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := contextWithTimeout(timeout)
	defer cancel()
	dial := func(ctx context.Context) (net.Conn, error) {
		if r.sw == nil {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", string(address))
		}
		return r.sw.Dial(ctx, "tcp", string(address))
	}
	if r.tls == nil {
		return dial(ctx)
	}
	return r.tls.Dial(ctx, dial, pki.RoleMeta)
}

// slogWriter forwards hclog's lines (raft's logger) into slog.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	switch {
	case strings.Contains(line, "[ERROR]"):
		w.log.Error(line)
	case strings.Contains(line, "[WARN]"):
		w.log.Warn(line)
	default:
		w.log.Info(line)
	}
	return len(p), nil
}

func raftLogger(log *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:            "raft",
		Level:           hclog.Info,
		Output:          slogWriter{log: log.With("component", "raft")},
		DisableTime:     true,
		IncludeLocation: false,
	})
}

// raftParts are the pieces of a raft node that must be closed.
type raftParts struct {
	raft      *raft.Raft
	transport *raft.NetworkTransport
	store     *raftboltdb.BoltStore
}

func (s *Server) openRaft(lis net.Listener) (*raftParts, error) {
	cfg := s.cfg
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("metaserver: create dir %s: %w", cfg.Dir, err)
	}
	store, err := raftboltdb.New(raftboltdb.Options{
		Path: filepath.Join(cfg.Dir, "raft.db"),
		// The freelist is rebuilt when the file is opened; not writing it
		// on every commit halves the pages each log append syncs.
		BoltOptions: &bbolt.Options{Timeout: 5 * time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType},
	})
	if err != nil {
		return nil, fmt.Errorf("metaserver: open raft store in %s: %w", cfg.Dir, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, raftLogger(s.log))
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("metaserver: open snapshot store in %s: %w", cfg.Dir, err)
	}
	adv, err := net.ResolveTCPAddr("tcp", s.raftAdvertise(lis))
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("metaserver: raft advertise address: %w", err)
	}
	rl := pki.WrapListener(s.cfg.TLS, s.cfg.Net.Listener(lis), s.cfg.Audit, s.log, "raft", pki.RoleMeta)
	stream := &raftStream{Listener: rl, sw: s.cfg.Net, advertise: adv, tls: s.cfg.TLS}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: 4, Timeout: 5 * time.Second, Logger: raftLogger(s.log),
	})
	// Followers are fed from memory: without the cache the leader reads
	// every entry it replicates back from bolt and decodes it again.
	logs, err := raft.NewLogCache(8192, store)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("metaserver: log cache: %w", err)
	}
	r, err := raft.NewRaft(s.raftConfig(), s.fsm, logs, store, snaps, trans)
	if err != nil {
		trans.Close()
		store.Close()
		return nil, fmt.Errorf("metaserver: start raft: %w", err)
	}
	parts := &raftParts{raft: r, transport: trans, store: store}
	if err := s.bootstrap(r, store, snaps); err != nil {
		parts.close()
		return nil, err
	}
	return parts, nil
}

func (s *Server) raftAdvertise(lis net.Listener) string {
	if s.cfg.RaftAdvertise != "" {
		return s.cfg.RaftAdvertise
	}
	return lis.Addr().String()
}

func (s *Server) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(s.cfg.ID)
	rc.HeartbeatTimeout = s.cfg.HeartbeatTimeout
	rc.ElectionTimeout = s.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = s.cfg.LeaderLeaseTimeout
	rc.SnapshotThreshold = s.cfg.SnapshotThreshold
	rc.SnapshotInterval = s.cfg.SnapshotInterval
	rc.TrailingLogs = s.cfg.TrailingLogs
	// Batch many client requests into one log append and one fsync: this
	// is what makes thousands of creates per second possible.
	rc.MaxAppendEntries = 512
	rc.BatchApplyCh = true
	rc.Logger = raftLogger(s.log)
	return rc
}

// bootstrap starts a new cluster when this server has no raft state and
// was given the initial voters.
func (s *Server) bootstrap(r *raft.Raft, store *raftboltdb.BoltStore, snaps raft.SnapshotStore) error {
	has, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		return fmt.Errorf("metaserver: read raft state: %w", err)
	}
	if has || len(s.cfg.Peers) == 0 {
		return nil
	}
	var conf raft.Configuration
	for _, p := range s.cfg.Peers {
		conf.Servers = append(conf.Servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.RaftAddr), Suffrage: raft.Voter})
	}
	if err := r.BootstrapCluster(conf).Error(); err != nil && err != raft.ErrCantBootstrap {
		return fmt.Errorf("metaserver: bootstrap: %w", err)
	}
	s.log.Info("bootstrapped new cluster", "voters", len(conf.Servers))
	return nil
}

func (p *raftParts) close() error {
	var first error
	if p.raft != nil {
		if err := p.raft.Shutdown().Error(); err != nil {
			first = err
		}
	}
	if p.transport != nil {
		p.transport.Close()
	}
	if p.store != nil {
		if err := p.store.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

var _ io.Closer = (*raft.NetworkTransport)(nil)
