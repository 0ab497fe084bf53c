// Package metaconn is a connection to the metadata service that follows the
// Raft leader. Clients and dataservers both use it: they are given one or
// more metaserver addresses (or the service IP), and every call goes to the
// current leader, following "not leader" hints and retrying through an
// election with bounded back-off. Callers must make their requests
// idempotent (a RequestHeader with a fixed request id) before calling, since
// a request whose reply was lost is sent again.
package metaconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/strata-hpc/strata/internal/rpcerr"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// Options tune a Conn. The zero value is usable.
type Options struct {
	// AttemptTimeout bounds one attempt against the known leader, so that
	// a hung (SIGSTOPped, partitioned) leader costs at most this much
	// before the call moves on. A request that timed out but was applied
	// is answered from the dedup table when retried. Default 2s.
	AttemptTimeout time.Duration
	// DiscoveryTimeout bounds an attempt while the leader is unknown (the
	// first call, or after the leader stopped answering): a seed that does
	// not answer quickly is skipped for the next. Default 1s.
	DiscoveryTimeout time.Duration
	// RetryBudget bounds the whole call, across attempts, when the caller's
	// context has no earlier deadline. Default 60s.
	RetryBudget time.Duration
	// DialOptions are added to every connection (TLS, interceptors).
	DialOptions []grpc.DialOption
	Logger      *slog.Logger
}

// Conn follows the metadata leader. It is safe for concurrent use.
type Conn struct {
	opts  Options
	seeds []string
	log   *slog.Logger

	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	leader string // best known leader address; "" when unknown
	next   int    // round-robin position in seeds when the leader is unknown
}

// MaxMsgSize is the largest gRPC message Strata sends or accepts (a whole
// replicated chunk plus framing).
const MaxMsgSize = 64 << 20

// Flow-control windows of Strata's gRPC connections (per stream, per
// connection). Servers use the same values.
const (
	WindowSize     = 8 << 20
	ConnWindowSize = 32 << 20
)

// New returns a Conn over the given metaserver addresses. It does not dial
// until the first call.
func New(addrs []string, opts Options) (*Conn, error) {
	if len(addrs) == 0 {
		return nil, errors.New("metaconn: no metadata address given")
	}
	for _, a := range addrs {
		if a == "" {
			return nil, errors.New("metaconn: empty metadata address")
		}
	}
	if opts.AttemptTimeout <= 0 {
		opts.AttemptTimeout = 2 * time.Second
	}
	if opts.DiscoveryTimeout <= 0 {
		opts.DiscoveryTimeout = time.Second
	}
	if opts.RetryBudget <= 0 {
		opts.RetryBudget = 60 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Conn{
		opts:  opts,
		seeds: append([]string(nil), addrs...),
		log:   log.With("component", "metaconn"),
		conns: make(map[string]*grpc.ClientConn),
		// Start at a random seed: many clients given the same list then
		// do not all knock on the first server, and one dead server does
		// not delay every client's first call.
		next: rand.IntN(len(addrs)),
	}, nil
}

// DialOptions are the options every Strata gRPC client uses. They start
// with plain-text credentials; callers put pki.DialCreds (mutual TLS) in
// extra, which comes later and wins.
func DialOptions(extra ...grpc.DialOption) []grpc.DialOption {
	o := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMsgSize), grpc.MaxCallSendMsgSize(MaxMsgSize)),
		// Shards are MiB-sized: gRPC's default 64 KiB flow-control window
		// would cost a round trip per 64 KiB. Fixed large windows (which
		// also turn off BDP probing) let a shard flow in one go.
		grpc.WithInitialWindowSize(WindowSize),
		grpc.WithInitialConnWindowSize(ConnWindowSize),
		grpc.WithReadBufferSize(256 << 10),
		grpc.WithWriteBufferSize(256 << 10),
	}
	return append(o, extra...)
}

func (c *Conn) conn(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc, ok := c.conns[addr]; ok {
		return cc, nil
	}
	opts := append([]grpc.DialOption{connectParams(c.opts.DiscoveryTimeout)}, c.opts.DialOptions...)
	cc, err := grpc.NewClient(addr, DialOptions(opts...)...)
	if err != nil {
		return nil, fmt.Errorf("metaconn: dial %s: %w", addr, err)
	}
	c.conns[addr] = cc
	return cc, nil
}

// connectParams bound how long a connection attempt may take and how long
// gRPC waits between attempts. gRPC's defaults (20 s to connect, back-off
// growing to 2 min) are wrong for a service that moves: a hung leader
// (SIGSTOP) still completes the TCP handshake in its kernel but never
// sends the HTTP/2 preface, and a fresh client whose first connection
// lands there would sit out the whole 20 s, though the new leader has
// taken the service IP within a second. With a short connect timeout the
// attempt fails, and the next one (a new TCP connection, by then routed
// to the new leader's MAC) succeeds.
func connectParams(timeout time.Duration) grpc.DialOption {
	bc := backoff.DefaultConfig
	bc.BaseDelay = 50 * time.Millisecond
	bc.MaxDelay = 500 * time.Millisecond
	return grpc.WithConnectParams(grpc.ConnectParams{Backoff: bc, MinConnectTimeout: timeout})
}

// target picks the server for the next attempt, and how long to give it:
// the known leader, else the next seed in turn, briefly.
func (c *Conn) target() (string, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leader != "" {
		return c.leader, c.opts.AttemptTimeout
	}
	a := c.seeds[c.next%len(c.seeds)]
	c.next++
	return a, c.opts.DiscoveryTimeout
}

func (c *Conn) setLeader(addr string) {
	c.mu.Lock()
	c.leader = addr
	c.mu.Unlock()
}

// forget drops addr as leader after a failed attempt, so the next attempt
// tries another server.
func (c *Conn) forget(addr string) {
	c.mu.Lock()
	if c.leader == addr {
		c.leader = ""
	}
	c.mu.Unlock()
}

// Leader returns the address of the last server that answered as leader.
func (c *Conn) Leader() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leader
}

// Call runs fn against the leader until it succeeds, fails with an error
// that retrying cannot fix, or the context (or the retry budget) ends.
func (c *Conn) Call(ctx context.Context, fn func(ctx context.Context, mc stratapb.MetaClient) error) error {
	return c.CallConn(ctx, func(ctx context.Context, cc grpc.ClientConnInterface) error {
		return fn(ctx, stratapb.NewMetaClient(cc))
	})
}

// CallConn is Call for any service of the metadata servers (Meta, Snap,
// Heal, Lock, ...): fn gets the connection to the server tried and makes its client.
func (c *Conn) CallConn(ctx context.Context, fn func(ctx context.Context, cc grpc.ClientConnInterface) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.RetryBudget)
		defer cancel()
	}
	backoff := 5 * time.Millisecond
	var lastErr error
	for attempt := 0; ; attempt++ {
		addr, timeout := c.target()
		err := c.attempt(ctx, addr, timeout, fn)
		if err == nil {
			c.setLeader(addr)
			return nil
		}
		lastErr = err
		if hint, nl := rpcerr.LeaderHint(err); nl && hint != "" && hint != addr {
			// A follower told us where the leader is: go there at once.
			c.setLeader(hint)
			continue
		}
		if !rpcerr.Retryable(err) {
			if ctx.Err() == nil || rpcerr.ErrnoOf(err) != 0 {
				return err
			}
		}
		// A server that refused us for our rate is the right one (and is
		// alive): stay with it, back off longer.
		limited := rpcerr.IsRateLimited(err)
		if !limited {
			c.forget(addr)
		}
		if attempt > 0 && attempt%len(c.seeds) == 0 {
			c.log.Debug("metadata call retrying", "attempt", attempt, "err", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("metaconn: no metadata leader answered in time: %w", lastErr)
		case <-time.After(backoff):
		}
		// Bounded exponential back-off: an election takes a few hundred
		// milliseconds, so there is no point waiting longer than that.
		ceiling := 250 * time.Millisecond
		if limited {
			ceiling = time.Second
		}
		if backoff *= 2; backoff > ceiling {
			backoff = ceiling
		}
	}
}

func (c *Conn) attempt(ctx context.Context, addr string, timeout time.Duration, fn func(ctx context.Context, cc grpc.ClientConnInterface) error) error {
	cc, err := c.conn(addr)
	if err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return fn(actx, cc)
}

// Close closes every connection.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for a, cc := range c.conns {
		if err := cc.Close(); err != nil {
			errs = append(errs, err)
		}
		delete(c.conns, a)
	}
	return errors.Join(errs...)
}
