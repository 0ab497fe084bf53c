package metaserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strata-hpc/strata/internal/audit"
	"github.com/strata-hpc/strata/internal/capability"
	"github.com/strata-hpc/strata/internal/netfault"
	"github.com/strata-hpc/strata/internal/pki"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// Peer is one initial voter of a new cluster.
type Peer struct {
	ID       string
	RaftAddr string
}

// Config is everything one metaserver needs. Flags of `strata meta` bind to
// it; tests fill it directly.
type Config struct {
	ID       string // raft server id; unique in the cluster
	Dir      string // raft log, stable store and snapshots
	RaftAddr string // raft transport listen address (host:port)
	// RaftAdvertise is the address peers use to reach RaftAddr; default
	// RaftAddr (which then must not be a wildcard or port 0).
	RaftAdvertise string
	GRPCAddr      string // gRPC listen address
	// RaftListener and GRPCListener, when set, are used instead of
	// listening on RaftAddr and GRPCAddr (which must still name them). The
	// server closes them. Tests use this to hold their ports.
	RaftListener net.Listener
	GRPCListener net.Listener
	// GRPCAdvertise is the address clients are redirected to; default the
	// actual gRPC listen address.
	GRPCAdvertise string
	// Peers are the voters of a new cluster, this server included. A server
	// whose Dir holds no raft state bootstraps with them; every server of a
	// new cluster must be given the same list. Ignored once state exists.
	Peers []Peer

	MetricsAddr string // if set, serve /metrics here

	// ServiceIP is the dedicated address of the service ("10.77.0.100/24",
	// or a loopback address such as 127.0.0.100 in a dev cluster): the
	// leader adds it to ServiceIface, announces it with gratuitous ARP, and
	// serves gRPC on it at the port of GRPCAddr. Empty: no service IP.
	ServiceIP    string
	ServiceIface string
	// ServicePort is the port served on the service IP; default the port
	// of GRPCAddr. (Servers sharing one host, as in `strata dev`, have
	// different gRPC ports but must agree on this one.)
	ServicePort int

	// Raft timings. Defaults suit a LAN; tests may shorten them.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	SnapshotThreshold  uint64
	SnapshotInterval   time.Duration
	TrailingLogs       uint64
	ApplyTimeout       time.Duration

	// DataServerGrace is how long a silent dataserver is still treated as
	// alive.
	DataServerGrace time.Duration
	// GCInterval is how often the leader deletes shards of chunks that no
	// file references any more; GCGrace is how long such a chunk is kept
	// first, for clients that fetched the chunk list before it changed.
	GCInterval time.Duration
	GCGrace    time.Duration

	// RepairDelay is how long a dataserver may be silent before it is
	// declared lost and its shards are rebuilt elsewhere (NOTES.md says why
	// 10 minutes). RepairInterval is how often the leader scans for
	// stripes to repair while idle. AuditInterval is how often it compares
	// every dataserver's shard inventory with the metadata; a shard no
	// chunk references is deleted once it is older than OrphanGrace.
	RepairDelay    time.Duration
	RepairInterval time.Duration
	AuditInterval  time.Duration
	OrphanGrace    time.Duration
	// NoRepair keeps the repair scheduler (repair, drain, rebalance) idle:
	// for tests of other parts that inspect where shards are.
	NoRepair bool

	DefaultPolicy *stratapb.StripePolicy

	// Shard capabilities (caps.go): CapLifetime is how long a capability
	// the metadata service signs stays valid (clients refresh theirs at
	// half of it); CapActivationDelay is how long after `strata cap
	// rotate` the new key starts signing (it must exceed the dataservers'
	// heartbeat interval, so that they all know the key by then); CapSkew
	// is the clock difference between servers that key retirement allows
	// for (dataservers allow capability.DefaultSkew on expiry).
	CapLifetime        time.Duration
	CapActivationDelay time.Duration
	CapSkew            time.Duration
	// TLS, when set, puts every connection behind mutual TLS with this
	// meta identity: gRPC (calls authorised per method by role), raft
	// (peers must be role meta), metrics, and the dials to other servers.
	// nil: plain text (--insecure).
	TLS *pki.Identity
	// Audit receives refused handshakes and calls, tenant and quota
	// changes and refused tenant requests (nil: none).
	Audit *audit.Log

	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Net, when set, lets a test cut this server off the network.
	Net *netfault.Switch

	// Limits bounds request sizes and per-client rates (limits.go).
	Limits Limits
	// AuditLog, when set, gets the records of tenant and quota changes and
	// of refused tenant requests (nil: none are kept).
	AuditLog *audit.Log
}

// Default small-file threshold: chunks below this size are replicated
// rather than erasure coded. Measured (BENCHMARKS.md): below ~128 KiB the
// per-shard RPC cost of 6 shards outweighs the 1.5x space saving; 3 copies
// of a small chunk cost little.
const DefaultSmallThreshold = 128 << 10

// DefaultPolicy is 4+2 with 4 MiB chunks.
func DefaultPolicy() *stratapb.StripePolicy {
	return &stratapb.StripePolicy{DataShards: 4, ParityShards: 2, ChunkSize: 4 << 20, SmallThreshold: DefaultSmallThreshold}
}

// DefaultConfig returns a Config with every tunable at its default.
func DefaultConfig() Config {
	return Config{
		// A follower calls an election 300-600 ms after the leader falls
		// silent (raft randomises up to twice the timeout): failover in
		// under a second on a LAN, with ample margin over LAN round trips.
		HeartbeatTimeout:   300 * time.Millisecond,
		ElectionTimeout:    300 * time.Millisecond,
		LeaderLeaseTimeout: 150 * time.Millisecond,
		SnapshotThreshold:  16384,
		SnapshotInterval:   60 * time.Second,
		TrailingLogs:       10240,
		ApplyTimeout:       10 * time.Second,
		DataServerGrace:    6 * time.Second,
		GCInterval:         2 * time.Second,
		GCGrace:            time.Minute,
		RepairDelay:        10 * time.Minute,
		RepairInterval:     5 * time.Second,
		AuditInterval:      time.Hour,
		OrphanGrace:        time.Hour,
		DefaultPolicy:      DefaultPolicy(),
		CapLifetime:        5 * time.Minute,
		CapActivationDelay: 10 * time.Second,
		CapSkew:            capability.DefaultSkew,
	}
}

// Validate checks the config and fills defaults for unset fields.
func (c *Config) Validate() error {
	d := DefaultConfig()
	var errs []error
	if c.ID == "" {
		errs = append(errs, errors.New("id is required"))
	}
	if c.Dir == "" {
		errs = append(errs, errors.New("dir is required"))
	}
	if _, _, err := net.SplitHostPort(c.RaftAddr); err != nil {
		errs = append(errs, fmt.Errorf("raft address %q: %w", c.RaftAddr, err))
	}
	if _, _, err := net.SplitHostPort(c.GRPCAddr); err != nil {
		errs = append(errs, fmt.Errorf("grpc address %q: %w", c.GRPCAddr, err))
	}
	setDur(&c.HeartbeatTimeout, d.HeartbeatTimeout)
	setDur(&c.ElectionTimeout, d.ElectionTimeout)
	setDur(&c.LeaderLeaseTimeout, d.LeaderLeaseTimeout)
	setDur(&c.SnapshotInterval, d.SnapshotInterval)
	setDur(&c.ApplyTimeout, d.ApplyTimeout)
	setDur(&c.DataServerGrace, d.DataServerGrace)
	setDur(&c.GCInterval, d.GCInterval)
	setDur(&c.GCGrace, d.GCGrace)
	setDur(&c.RepairDelay, d.RepairDelay)
	setDur(&c.RepairInterval, d.RepairInterval)
	setDur(&c.AuditInterval, d.AuditInterval)
	setDur(&c.OrphanGrace, d.OrphanGrace)
	setDur(&c.CapLifetime, d.CapLifetime)
	setDur(&c.CapActivationDelay, d.CapActivationDelay)
	setDur(&c.CapSkew, d.CapSkew)
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		errs = append(errs, fmt.Errorf("leader lease %v must not exceed heartbeat timeout %v", c.LeaderLeaseTimeout, c.HeartbeatTimeout))
	}
	c.Limits.fill()
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = d.SnapshotThreshold
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = d.TrailingLogs
	}
	if c.DefaultPolicy == nil {
		c.DefaultPolicy = d.DefaultPolicy
	}
	if err := validatePolicy(c.DefaultPolicy); err != nil {
		errs = append(errs, fmt.Errorf("default policy: %w", err))
	}
	seen := map[string]bool{}
	for _, p := range c.Peers {
		if p.ID == "" || p.RaftAddr == "" || seen[p.ID] {
			errs = append(errs, fmt.Errorf("peer %q/%q: ids must be unique and addresses set", p.ID, p.RaftAddr))
		}
		seen[p.ID] = true
	}
	if len(c.Peers) > 0 && !seen[c.ID] {
		errs = append(errs, fmt.Errorf("peers must include this server %q", c.ID))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("metaserver: config: %w", err)
	}
	return nil
}

func setDur(v *time.Duration, def time.Duration) {
	if *v <= 0 {
		*v = def
	}
}
