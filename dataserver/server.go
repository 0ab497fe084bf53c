// Package dataserver is Strata's data server: it keeps erasure-coded and
// replicated shards as checksummed files on local disks (Store), serves them
// over gRPC (stratapb.DataServer), and registers and heartbeats with the
// metadata service.
//
// A Server is embeddable: it holds no package-level state, so tests and the
// dev cluster run many in one process.
package dataserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/strata-hpc/strata/internal/audit"
	"github.com/strata-hpc/strata/internal/capability"
	"github.com/strata-hpc/strata/internal/grpcutil"
	"github.com/strata-hpc/strata/internal/metaconn"
	"github.com/strata-hpc/strata/internal/netfault"
	"github.com/strata-hpc/strata/internal/pki"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// Config configures a Server. Start from DefaultConfig: the zero values of
// Fsync and ReserveBytes are taken as given (no fsync, no reserve), while a
// zero HeartbeatInterval or BlockSize means the default.
type Config struct {
	Dirs              []string          // local directories holding shard files (required)
	ListenAddr        string            // gRPC listen address, e.g. "127.0.0.1:0"
	AdvertiseAddr     string            // address given to the metadata service; default: the actual listen address
	MetaAddrs         []string          // metadata service addresses; none: run unregistered (tests, tools)
	Labels            map[string]string // failure-domain labels (zone, rack, host)
	HeartbeatInterval time.Duration     // default 1s
	Fsync             bool              // fsync shard files and their directory before acknowledging a write
	BlockSize         int               // checksum block size, default 64 KiB
	ReserveBytes      uint64            // kept free on each disk; default 64 MiB
	MetricsAddr       string            // if set, serve Prometheus /metrics over HTTP here
	// ScrubRate is how many bytes per second the scrubber re-reads (0:
	// default; negative: no scrubbing); ScrubInterval is the time from the
	// start of one full pass to the next (0: default).
	ScrubRate     int64
	ScrubInterval time.Duration
	Logger        *slog.Logger
	Registerer    prometheus.Registerer // nil: no metrics registration
	// Listener, when set, is used instead of listening on ListenAddr
	// (which must still name it); the server closes it. Tests hold their
	// ports this way.
	Listener net.Listener
	// Net, when set, lets a test cut this server off the network (its
	// gRPC listener and its connection to the metadata service).
	Net *netfault.Switch
	// Audit receives security records (refused shard capabilities); nil
	// discards them.
	Audit *audit.Log
	// CapSkew is how long after its expiry a shard capability is still
	// accepted, for clocks that differ (0: capability.DefaultSkew).
	CapSkew time.Duration
	// TLS, when set, puts every connection behind mutual TLS with this
	// data identity: the gRPC service (calls authorised per method by
	// role), metrics, and the dials to the metadata service and to peers.
	// nil: plain text (--insecure).
	TLS *pki.Identity
}

// DefaultConfig returns the defaults; Dirs still has to be set.
func DefaultConfig() Config {
	return Config{
		ListenAddr:        "127.0.0.1:0",
		HeartbeatInterval: time.Second,
		Fsync:             true,
		BlockSize:         DefaultBlockSize,
		ReserveBytes:      64 << 20,
	}
}

// Validate checks the configuration without touching the disks.
func (c *Config) Validate() error {
	if err := (StoreOptions{Dirs: c.Dirs, BlockSize: c.BlockSize}).validate(); err != nil {
		return err
	}
	if err := checkHostPort("listen address", c.ListenAddr); err != nil {
		return err
	}
	if c.AdvertiseAddr != "" {
		if err := checkHostPort("advertise address", c.AdvertiseAddr); err != nil {
			return err
		}
	}
	if c.MetricsAddr != "" {
		if err := checkHostPort("metrics address", c.MetricsAddr); err != nil {
			return err
		}
	}
	for _, a := range c.MetaAddrs {
		if err := checkHostPort("metadata address", a); err != nil {
			return err
		}
	}
	if c.HeartbeatInterval < 0 {
		return fmt.Errorf("%w: negative heartbeat interval %v", ErrInvalid, c.HeartbeatInterval)
	}
	for k := range c.Labels {
		if k == "" {
			return fmt.Errorf("%w: empty label name", ErrInvalid)
		}
	}
	return nil
}

func checkHostPort(what, addr string) error {
	if addr == "" {
		return fmt.Errorf("%w: empty %s", ErrInvalid, what)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%w: %s %q: %v", ErrInvalid, what, addr, err)
	}
	return nil
}

// Server is one dataserver.
type Server struct {
	cfg      Config
	log      *slog.Logger
	store    *Store
	metrics  *metrics
	unreg    func()
	gatherer prometheus.Gatherer // for MetricsAddr; nil when not serving metrics
	uuid     string
	id       atomic.Uint32
	pool     *bufPool // read buffers handed to gRPC (zerocopy.go)
	peers    *peerConns
	auth     *authorizer // shard capabilities (caps.go)

	mu      sync.Mutex
	started bool
	closed  bool
	lis     net.Listener
	mlis    net.Listener // metrics; nil when not serving metrics
	addr    string       // actual gRPC listen address
	grpc    *grpc.Server
	http    *http.Server
	meta    *metaconn.Conn
	cancel  context.CancelFunc // stops background loops
	wg      sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// New opens the data directories (creating them if needed; each must be
// writable), loads or creates the server's identity and prepares metrics.
// Nothing listens until Start.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = time.Second
	}
	if cfg.BlockSize == 0 {
		cfg.BlockSize = DefaultBlockSize
	}
	if cfg.ScrubRate == 0 {
		cfg.ScrubRate = DefaultScrubRate
	}
	if cfg.ScrubInterval <= 0 {
		cfg.ScrubInterval = DefaultScrubInterval
	}
	cfg.Labels = maps.Clone(cfg.Labels)
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "dataserver")
	st, err := OpenStore(context.Background(), StoreOptions{
		Dirs: cfg.Dirs, Fsync: cfg.Fsync, BlockSize: cfg.BlockSize, ReserveBytes: cfg.ReserveBytes, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	if cfg.CapSkew <= 0 {
		cfg.CapSkew = capability.DefaultSkew
	}
	auth := &authorizer{v: capability.NewVerifier(cfg.CapSkew), audit: cfg.Audit, now: time.Now}
	s := &Server{cfg: cfg, log: log, store: st, metrics: newMetrics(st), pool: &bufPool{}, peers: &peerConns{creds: pki.DialCreds(cfg.TLS, pki.RoleData)}, auth: auth}
	if err := s.init(); err != nil {
		st.Close()
		return nil, err
	}
	return s, nil
}

// init loads the identity and registers metrics.
func (s *Server) init() error {
	id, err := loadIdentity(s.store.Dirs())
	if err != nil {
		return err
	}
	s.uuid = id
	s.log = s.log.With("uuid", id)
	if s.unreg, err = s.metrics.register(s.cfg.Registerer); err != nil {
		return err
	}
	if s.cfg.MetricsAddr == "" {
		return nil
	}
	if g, ok := gathererOf(s.cfg.Registerer); ok {
		s.gatherer = g
		return nil
	}
	// The caller gave no registry we can read back: serve our own.
	reg := prometheus.NewRegistry()
	if _, err := s.metrics.register(reg); err != nil {
		s.unreg()
		return err
	}
	s.gatherer = reg
	return nil
}

// Start listens, serves gRPC (and metrics), and starts registration and
// heartbeats in the background: the metadata service may come up later, so
// Start does not wait for it. ctx bounds start-up only; Close stops the
// server.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("dataserver: start: %w", ErrClosed)
	}
	if s.started {
		return errors.New("dataserver: already started")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.newMetaConn(); err != nil {
		return err
	}
	mlis, err := s.listen(ctx)
	if err != nil {
		return err
	}
	s.started = true
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.serveGRPC()
	if mlis != nil {
		s.serveMetrics(mlis)
	}
	if s.meta != nil {
		s.wg.Go(func() { s.metaLoop(bg) })
	}
	if s.cfg.ScrubRate > 0 {
		s.wg.Go(func() { s.scrubLoop(bg) })
	}
	s.log.Info("dataserver started", "addr", s.addr, "advertise", s.advertiseAddr(), "metrics", s.cfg.MetricsAddr)
	if host, _, _ := net.SplitHostPort(s.advertiseAddr()); len(s.cfg.MetaAddrs) > 0 && net.ParseIP(host).IsUnspecified() {
		s.log.Warn("advertising a wildcard address that other hosts cannot dial; set AdvertiseAddr", "addr", s.advertiseAddr())
	}
	return nil
}

// listen opens the gRPC and metrics listeners, so that an address in use is
// an error of Start rather than of a background goroutine.
func (s *Server) listen(ctx context.Context) (metricsLis net.Listener, err error) {
	var lc net.ListenConfig
	lis, err := s.cfg.Listener, error(nil)
	if lis == nil {
		lis, err = lc.Listen(ctx, "tcp", s.cfg.ListenAddr)
	}
	if err != nil {
		return nil, fmt.Errorf("dataserver: listen on %s: %w", s.cfg.ListenAddr, err)
	}
	if s.cfg.MetricsAddr != "" {
		if metricsLis, err = lc.Listen(ctx, "tcp", s.cfg.MetricsAddr); err != nil {
			lis.Close()
			return nil, fmt.Errorf("dataserver: listen for metrics on %s: %w", s.cfg.MetricsAddr, err)
		}
	}
	s.lis, s.mlis, s.addr = s.cfg.Net.Listener(lis), metricsLis, lis.Addr().String()
	return metricsLis, nil
}

func (s *Server) serveGRPC() {
	s.grpc = grpc.NewServer(
		grpc.MaxRecvMsgSize(metaconn.MaxMsgSize),
		grpc.MaxSendMsgSize(metaconn.MaxMsgSize),
		// Same flow-control windows and buffers as the clients (metaconn):
		// with gRPC's 64 KiB default a MiB-sized shard costs a round trip
		// per 64 KiB.
		grpc.InitialWindowSize(metaconn.WindowSize),
		grpc.InitialConnWindowSize(metaconn.ConnWindowSize),
		grpc.ReadBufferSize(256<<10),
		grpc.WriteBufferSize(256<<10),
		// The recovery interceptor comes after the metrics one so that a
		// panic is counted as Internal; the pooled-reply one is innermost,
		// next to the handler whose buffer it manages (zerocopy.go).
		grpc.ChainUnaryInterceptor(s.metrics.unaryInterceptor(), grpcutil.RecoverUnary(s.log), pooledReplies(s.pool)),
		grpc.ForceServerCodecV2(newServerCodec()),
		// Mutual TLS and per-method roles (nothing without TLS).
		pki.ServerCreds(s.cfg.TLS, s.cfg.Audit, s.log),
		pki.Authz(s.cfg.TLS, s.cfg.Audit, s.log),
		pki.StreamAuthz(s.cfg.TLS, s.cfg.Audit, s.log),
	)
	stratapb.RegisterDataServer(s.grpc, &service{store: s.store, m: s.metrics, auth: s.auth})
	stratapb.RegisterRepairServer(s.grpc, &repairService{srv: s, peers: s.peers})
	lis := s.lis
	s.wg.Go(func() {
		if err := s.grpc.Serve(lis); err != nil {
			s.log.Error("gRPC server stopped", "err", err)
		}
	})
}

func (s *Server) serveMetrics(lis net.Listener) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{}))
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	lis = pki.WrapListener(s.cfg.TLS, lis, s.cfg.Audit, s.log, "data-metrics")
	s.wg.Go(func() {
		if err := s.http.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("metrics server stopped", "err", err)
		}
	})
}

// MetricsAddr returns the actual metrics listen address ("" when not serving).
func (s *Server) MetricsAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mlis == nil {
		return ""
	}
	return s.mlis.Addr().String()
}

func (s *Server) advertiseAddr() string {
	if s.cfg.AdvertiseAddr != "" {
		return s.cfg.AdvertiseAddr
	}
	return s.addr
}

// Addr returns the actual gRPC listen address ("" before Start).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// ID returns the id the metadata service assigned (0 until registered).
func (s *Server) ID() uint32 { return s.id.Load() }

// UUID returns the server's persistent identity.
func (s *Server) UUID() string { return s.uuid }

// Store returns the server's shard store.
func (s *Server) Store() *Store { return s.store }

// Close stops serving, stops the background loops and waits for them, and
// releases the data directories. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Server) close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	if s.cancel != nil {
		s.cancel()
	}
	var errs []error
	if s.grpc != nil {
		stopGRPC(s.grpc, 5*time.Second)
	}
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, s.http.Shutdown(ctx))
		cancel()
	}
	s.wg.Wait()
	s.peers.close()
	if s.meta != nil {
		errs = append(errs, s.meta.Close())
	}
	s.unreg()
	errs = append(errs, s.store.Close())
	s.log.Info("dataserver stopped")
	return errors.Join(errs...)
}

// stopGRPC lets in-flight requests finish, but not forever: a client stuck
// on a slow connection must not hold up shutdown.
func stopGRPC(g *grpc.Server, grace time.Duration) {
	done := make(chan struct{})
	go func() {
		g.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(grace):
		g.Stop()
		<-done
	}
}
