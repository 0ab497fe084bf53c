// Package testcluster runs a whole Strata cluster inside one test process:
// metaservers with real raft stores on disk and dataservers with real shard
// files, all talking real gRPC (and raft) over 127.0.0.1 sockets. Members
// can be killed, restarted and partitioned. Everything stops when the test
// ends, whether it passed or not.
package testcluster

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-hpc/strata/dataserver"
	"github.com/strata-hpc/strata/internal/audit"
	"github.com/strata-hpc/strata/internal/netfault"
	"github.com/strata-hpc/strata/internal/pki"
	"github.com/strata-hpc/strata/metaserver"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// Options shape a test cluster.
type Options struct {
	Meta int // metaservers (raft voters): 1, 3 or 5
	Data int // dataservers
	// Policy is the cluster's default stripe policy (default 4+2, 4 MiB).
	Policy *stratapb.StripePolicy
	// Fsync makes dataservers fsync shard files (default off in tests:
	// it adds nothing to what they check and costs seconds).
	Fsync bool
	// SnapshotThreshold and TrailingLogs override the raft defaults, so
	// tests can make voters snapshot and compact their logs early.
	SnapshotThreshold uint64
	TrailingLogs      uint64
	// ServiceIP, when set, is a loopback address (127.x.y.z) that the
	// leader serves on, at a port the harness picks (Cluster.ServiceAddr).
	ServiceIP string
	// Heal runs the repair scheduler (repair, drain, rebalance); off by
	// default, so that tests of other parts see shards stay where they
	// were written.
	Heal bool
	// RepairDelay, when set, is how long a silent dataserver waits before
	// it is declared lost and repaired (default: the metaserver's 10 min,
	// so that tests which kill dataservers see no repair). AuditInterval
	// and OrphanGrace shorten the inventory audit likewise.
	RepairDelay   time.Duration
	AuditInterval time.Duration
	OrphanGrace   time.Duration
	// ScrubRate and ScrubInterval configure the dataservers' scrubbers
	// (0: the dataserver defaults).
	ScrubRate     int64
	ScrubInterval time.Duration
	// Labels, when set, gives dataserver i its failure-domain labels.
	Labels func(i int) map[string]string
	// Logger receives every server's logs; default: none, or everything
	// at debug level on stderr when STRATA_TEST_LOG is set.
	Logger *slog.Logger
	// CapLifetime, when set, is the lifetime of shard capabilities (the
	// metaserver's default: 5 min).
	CapLifetime time.Duration
	// Insecure runs the cluster in plain text. By default every
	// connection is mutual TLS with a CA made for this cluster alone
	// (Cluster.TLSDir holds ca.crt and a certificate for every role);
	// clients get theirs from Cluster.ClientTLS.
	Insecure bool
	// TLSDir, when set, is a TLS directory (ca.crt and ROLE.crt/ROLE.key
	// for every role) to use instead of making a CA: tests that run CLI
	// commands point STRATA_TLS_DIR at the same directory.
	TLSDir string
	// Audit receives the servers' audit records (refused handshakes and
	// calls, tenant and quota changes, refused capabilities); nil: none.
	Audit *audit.Log
}

// Cluster is a running test cluster.
type Cluster struct {
	t    testing.TB
	opts Options
	Dir  string
	Meta []*Meta
	Data []*Data
	log  *slog.Logger
	ids  map[pki.Role]*pki.Identity // nil when Insecure

	servicePort int
}

// ServiceAddr is the service IP and port (Options.ServiceIP), or "".
func (c *Cluster) ServiceAddr() string {
	if c.opts.ServiceIP == "" {
		return ""
	}
	return net.JoinHostPort(c.opts.ServiceIP, fmt.Sprint(c.servicePort))
}

// Meta is one metaserver of the cluster.
type Meta struct {
	Cfg    metaserver.Config
	Srv    *metaserver.Server // nil while killed
	Switch *netfault.Switch
}

// Data is one dataserver of the cluster.
type Data struct {
	Cfg    dataserver.Config
	Srv    *dataserver.Server // nil while killed
	Switch *netfault.Switch
}

// New starts a cluster and registers its shutdown with t.Cleanup. It
// returns once a leader is elected and every dataserver has registered.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Meta == 0 {
		opts.Meta = 3
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
		if os.Getenv("STRATA_TEST_LOG") != "" {
			log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
	}
	c := &Cluster{t: t, opts: opts, Dir: t.TempDir(), log: log}
	if !opts.Insecure {
		c.makeTLS()
	}
	t.Cleanup(c.Close)
	c.startMetas()
	c.WaitLeader()
	for i := 0; i < opts.Data; i++ {
		c.AddData()
	}
	c.WaitDataServers(opts.Data)
	return c
}

// Ports of test servers come from below the kernel's ephemeral range
// (32768-60999 here), so that no outgoing connection can be handed one of
// them; each test process starts at a random offset so that packages
// tested in parallel rarely meet, and a port found taken is skipped.
const (
	portLow  = 20000
	portHigh = 32700
)

var nextPort atomic.Int32

func init() { nextPort.Store(int32(portLow + rand.IntN(portHigh-portLow))) }

// listenFree opens a listener on a free loopback port.
func listenFree(t testing.TB) net.Listener {
	t.Helper()
	for try := 0; try < 1000; try++ {
		p := nextPort.Add(1)
		if p >= portHigh {
			nextPort.CompareAndSwap(p, portLow)
			continue
		}
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			return l
		}
	}
	t.Fatal("testcluster: no free port")
	return nil
}

// relisten opens addr again for a restarted server; its previous socket
// may linger for a moment.
func relisten(addr string) (net.Listener, error) {
	var err error
	for try := 0; try < 50; try++ {
		var l net.Listener
		if l, err = net.Listen("tcp", addr); err == nil {
			return l, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, err
}

func (c *Cluster) startMetas() {
	n := c.opts.Meta
	if c.opts.ServiceIP != "" {
		l := listenFree(c.t) // a port no test server of this process uses
		c.servicePort = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	var raftLis, grpcLis []net.Listener
	var peers []metaserver.Peer
	for i := 0; i < n; i++ {
		raftLis = append(raftLis, listenFree(c.t))
		grpcLis = append(grpcLis, listenFree(c.t))
		peers = append(peers, metaserver.Peer{ID: fmt.Sprintf("m%d", i+1), RaftAddr: raftLis[i].Addr().String()})
	}
	for i := 0; i < n; i++ {
		cfg := metaserver.DefaultConfig()
		cfg.ID = peers[i].ID
		cfg.Dir = filepath.Join(c.Dir, cfg.ID)
		cfg.RaftAddr, cfg.GRPCAddr = raftLis[i].Addr().String(), grpcLis[i].Addr().String()
		cfg.Peers = peers
		// Short timings: elections in ~100-300 ms keep failover tests fast.
		cfg.HeartbeatTimeout = 200 * time.Millisecond
		cfg.ElectionTimeout = 200 * time.Millisecond
		cfg.LeaderLeaseTimeout = 100 * time.Millisecond
		cfg.DataServerGrace = 3 * time.Second
		cfg.GCInterval = 500 * time.Millisecond
		cfg.GCGrace = time.Second
		cfg.RepairDelay = c.opts.RepairDelay
		cfg.RepairInterval = 200 * time.Millisecond
		cfg.NoRepair = !c.opts.Heal
		cfg.AuditInterval, cfg.OrphanGrace = c.opts.AuditInterval, c.opts.OrphanGrace
		// A rotated capability key signs after 2 s: 10 dataserver heartbeats.
		cfg.CapActivationDelay, cfg.CapLifetime = 2*time.Second, c.opts.CapLifetime
		if c.opts.Policy != nil {
			cfg.DefaultPolicy = c.opts.Policy
		}
		if c.opts.SnapshotThreshold > 0 {
			cfg.SnapshotThreshold = c.opts.SnapshotThreshold
			cfg.SnapshotInterval = 100 * time.Millisecond
		}
		if c.opts.ServiceIP != "" {
			cfg.ServiceIP, cfg.ServicePort = c.opts.ServiceIP, c.servicePort
		}
		if c.opts.TrailingLogs > 0 {
			cfg.TrailingLogs = c.opts.TrailingLogs
		}
		cfg.Logger = c.log.With("member", cfg.ID)
		cfg.TLS, cfg.Audit = c.Identity(pki.RoleMeta), c.opts.Audit
		m := &Meta{Cfg: cfg, Switch: netfault.New()}
		m.Cfg.Net = m.Switch
		c.Meta = append(c.Meta, m)
		c.startMeta(i, raftLis[i], grpcLis[i])
	}
}

// MetaAddrs are the gRPC addresses of all metaservers.
func (c *Cluster) MetaAddrs() []string {
	var out []string
	for _, m := range c.Meta {
		out = append(out, m.Cfg.GRPCAddr)
	}
	return out
}

// RestartMeta starts metaserver i (again), on the same directory and ports.
func (c *Cluster) RestartMeta(i int) {
	c.t.Helper()
	raftLis, err := relisten(c.Meta[i].Cfg.RaftAddr)
	if err != nil {
		c.t.Fatalf("testcluster: meta %d: %v", i, err)
	}
	grpcLis, err := relisten(c.Meta[i].Cfg.GRPCAddr)
	if err != nil {
		raftLis.Close()
		c.t.Fatalf("testcluster: meta %d: %v", i, err)
	}
	c.startMeta(i, raftLis, grpcLis)
}

func (c *Cluster) startMeta(i int, raftLis, grpcLis net.Listener) {
	c.t.Helper()
	m := c.Meta[i]
	if m.Srv != nil {
		c.t.Fatalf("testcluster: meta %d is running", i)
	}
	cfg := m.Cfg
	cfg.RaftListener, cfg.GRPCListener = raftLis, grpcLis
	srv, err := metaserver.New(cfg)
	if err == nil {
		err = srv.Start(context.Background())
	}
	if err != nil {
		raftLis.Close()
		grpcLis.Close()
		c.t.Fatalf("testcluster: start meta %d: %v", i, err)
	}
	m.Srv = srv
}

// AddMeta starts a new, empty metaserver that is not a voter yet (no
// peers: it waits to be added with AddMember) and returns its index.
func (c *Cluster) AddMeta(id string) int {
	c.t.Helper()
	cfg := c.Meta[0].Cfg
	cfg.ID = id
	cfg.Dir = filepath.Join(c.Dir, id)
	cfg.Peers = nil
	raftLis, grpcLis := listenFree(c.t), listenFree(c.t)
	cfg.RaftAddr, cfg.GRPCAddr = raftLis.Addr().String(), grpcLis.Addr().String()
	cfg.Logger = c.log.With("member", id)
	m := &Meta{Cfg: cfg, Switch: netfault.New()}
	m.Cfg.Net = m.Switch
	c.Meta = append(c.Meta, m)
	c.startMeta(len(c.Meta)-1, raftLis, grpcLis)
	return len(c.Meta) - 1
}

// WipeMeta kills metaserver i and deletes its disk state.
func (c *Cluster) WipeMeta(i int) {
	c.t.Helper()
	c.KillMeta(i)
	if err := os.RemoveAll(c.Meta[i].Cfg.Dir); err != nil {
		c.t.Fatalf("testcluster: wipe meta %d: %v", i, err)
	}
}

// KillMeta stops metaserver i abruptly (its disk state stays).
func (c *Cluster) KillMeta(i int) {
	if m := c.Meta[i]; m.Srv != nil {
		m.Srv.Close()
		m.Srv = nil
	}
}

// PartitionMeta cuts metaserver i off from everyone; HealMeta reconnects it.
func (c *Cluster) PartitionMeta(i int) { c.Meta[i].Switch.Cut() }

// HealMeta reconnects a partitioned metaserver.
func (c *Cluster) HealMeta(i int) { c.Meta[i].Switch.Heal() }

// Leader returns the index of the current ready leader, or -1.
func (c *Cluster) Leader() int {
	for i, m := range c.Meta {
		if m.Srv != nil && !m.Switch.IsCut() && m.Srv.IsLeader() {
			return i
		}
	}
	return -1
}

// WaitLeader waits (up to 15 s) for a ready leader and returns its index.
func (c *Cluster) WaitLeader() int {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if i := c.Leader(); i >= 0 {
			return i
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("testcluster: no leader elected")
	return -1
}

// AddData starts a new dataserver and returns its index.
func (c *Cluster) AddData() int {
	c.t.Helper()
	i := len(c.Data)
	cfg := dataserver.DefaultConfig()
	cfg.Dirs = []string{filepath.Join(c.Dir, fmt.Sprintf("d%d", i+1))}
	lis := listenFree(c.t)
	cfg.ListenAddr = lis.Addr().String()
	cfg.MetaAddrs = c.MetaAddrs()
	cfg.HeartbeatInterval = 200 * time.Millisecond
	cfg.Fsync = c.opts.Fsync
	cfg.ReserveBytes = 1 << 20
	cfg.ScrubRate, cfg.ScrubInterval = c.opts.ScrubRate, c.opts.ScrubInterval
	if c.opts.Labels != nil {
		cfg.Labels = c.opts.Labels(i)
	}
	cfg.Logger = c.log.With("member", fmt.Sprintf("d%d", i+1))
	cfg.TLS, cfg.Audit = c.Identity(pki.RoleData), c.opts.Audit
	sw := netfault.New()
	cfg.Net = sw
	c.Data = append(c.Data, &Data{Cfg: cfg, Switch: sw})
	c.startData(i, lis)
	return i
}

// RestartData starts dataserver i (again) on the same directories and port.
func (c *Cluster) RestartData(i int) {
	c.t.Helper()
	lis, err := relisten(c.Data[i].Cfg.ListenAddr)
	if err != nil {
		c.t.Fatalf("testcluster: data %d: %v", i, err)
	}
	c.startData(i, lis)
}

func (c *Cluster) startData(i int, lis net.Listener) {
	c.t.Helper()
	d := c.Data[i]
	if d.Srv != nil {
		lis.Close()
		c.t.Fatalf("testcluster: data %d is running", i)
	}
	cfg := d.Cfg
	cfg.Listener = lis
	srv, err := dataserver.New(cfg)
	if err == nil {
		err = srv.Start(context.Background())
	}
	if err != nil {
		lis.Close()
		if srv != nil {
			srv.Close()
		}
		c.t.Fatalf("testcluster: start data %d: %v", i, err)
	}
	d.Srv = srv
}

// KillData stops dataserver i (its shard files stay on disk).
func (c *Cluster) KillData(i int) {
	if d := c.Data[i]; d.Srv != nil {
		d.Srv.Close()
		d.Srv = nil
	}
}

// PartitionData cuts dataserver i off: clients cannot reach it and it
// cannot heartbeat. HealData reconnects it.
func (c *Cluster) PartitionData(i int) { c.Data[i].Switch.Cut() }

// HealData reconnects a partitioned dataserver.
func (c *Cluster) HealData(i int) { c.Data[i].Switch.Heal() }

// WaitDataServers waits until the leader sees n live dataservers.
func (c *Cluster) WaitDataServers(n int) {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		// The leader may count a dataserver whose registration reply it
		// has not received yet (lost or late on a loaded machine): wait
		// for the servers' own ids too.
		if c.liveData() >= n && c.dataIDsKnown() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("testcluster: fewer than %d dataservers registered", n)
}

// dataIDsKnown reports whether every running dataserver has its id.
func (c *Cluster) dataIDsKnown() bool {
	for _, d := range c.Data {
		if d.Srv != nil && d.Srv.ID() == 0 {
			return false
		}
	}
	return true
}

func (c *Cluster) liveData() int {
	l := c.Leader()
	if l < 0 {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := c.Meta[l].Srv.ClusterStatus(ctx, &stratapb.ClusterStatusRequest{})
	if err != nil {
		return 0
	}
	n := 0
	for _, ds := range st.Dataservers {
		if ds.Alive {
			n++
		}
	}
	return n
}

// Close stops every member. It is registered with t.Cleanup by New.
func (c *Cluster) Close() {
	for i := range c.Data {
		c.KillData(i)
	}
	for i := range c.Meta {
		c.KillMeta(i)
	}
}
