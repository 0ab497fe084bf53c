// Package client is the one Go client library of Strata: the CLI and the
// FUSE layer talk to the servers only through it.
//
// It resolves paths against the metadata service (which it reaches through
// metaconn, following the Raft leader), and moves file data to and from the
// dataservers itself: a chunk is cut into k data shards plus m Reed–Solomon
// parity shards (or r full replicas for small chunks), written to different
// dataservers in parallel, and read back from the data shards that cover the
// wanted bytes, rebuilding from parity when some are lost.
//
// Every metadata mutation carries a RequestHeader whose request id is drawn
// once per logical operation and reused on every retry, so an operation is
// applied once even when a reply is lost in a leader failover.
package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/strata-hpc/strata/internal/metaconn"
	"github.com/strata-hpc/strata/internal/pki"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// Config configures a Client. MetaAddrs is required; the rest has defaults.
type Config struct {
	// MetaAddrs are metaserver gRPC addresses (or the one service IP).
	MetaAddrs []string
	// Tenant selects the namespace root; "" is the default tenant. Only
	// the administrator may choose; a tenant is known by its token.
	Tenant string
	// TenantToken, when set, is sent with every metadata request (gRPC
	// metadata strata-tenant-token): the caller is that tenant, confined
	// to its namespace. Empty: the cluster administrator.
	TenantToken string
	Logger      *slog.Logger
	// ShardTimeout bounds one shard RPC to one dataserver. Default 30s.
	ShardTimeout time.Duration
	// StaleReads lets any metaserver answer reads from its own state, which
	// may lag the leader's (tools that ask one server what it has applied).
	StaleReads bool
	// MaxInflightChunks is how many chunks one stream (Put, Get, ReadAt,
	// WriteAt) encodes, uploads or fetches at once. Default 4.
	MaxInflightChunks int
	// CacheDir holds the local on-disk chunk cache, which every client of
	// the node may share; "" means no cache. CacheBytes bounds it
	// (default DefaultCacheBytes). See chunkcache.go.
	CacheDir   string
	CacheBytes int64
	// TLS, when set, is the identity (role client, or bootctl inside the
	// boot controller) presented to every server; metaservers must show
	// role meta and dataservers role data. nil: plain text (--insecure).
	TLS *pki.Identity
}

const (
	defaultShardTimeout      = 30 * time.Second
	defaultMaxInflightChunks = 4
	// rootIno is the inode of the tenant's root directory. The metadata
	// service maps it to the root of the tenant named in the header.
	rootIno = 1
)

// Client is a connection to one Strata cluster. It is safe for concurrent
// use; one Client per process is enough.
type Client struct {
	cfg        Config
	log        *slog.Logger
	meta       *metaconn.Conn
	data       *dataConns
	codecs     codecCache
	bufs       bufferPool
	reports    *badShardReporter
	reads      readBatcher
	clientID   string
	nextReq    atomic.Uint64
	chunkSizes chunkSizeCache
	cache      *chunkCache // nil without Config.CacheDir
	caps       capStore    // shard capabilities by chunk id (caps.go)
	closeOnce  sync.Once
}

// New returns a Client. It does not contact the cluster until the first
// call.
func New(cfg Config) (*Client, error) {
	if len(cfg.MetaAddrs) == 0 {
		return nil, errors.New("client: no metadata address given (Config.MetaAddrs)")
	}
	if cfg.ShardTimeout <= 0 {
		cfg.ShardTimeout = defaultShardTimeout
	}
	if cfg.MaxInflightChunks <= 0 {
		cfg.MaxInflightChunks = defaultMaxInflightChunks
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger.With("component", "client")
	mopts := metaconn.Options{Logger: cfg.Logger,
		DialOptions: []grpc.DialOption{pki.DialCreds(cfg.TLS, pki.RoleMeta)}}
	if cfg.TenantToken != "" {
		mopts.DialOptions = append(mopts.DialOptions, grpc.WithPerRPCCredentials(tenantToken(cfg.TenantToken)))
	}
	meta, err := metaconn.New(cfg.MetaAddrs, mopts)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	id, err := randomID()
	var cache *chunkCache
	if err == nil && cfg.CacheDir != "" {
		cache, err = openChunkCache(cfg.CacheDir, cfg.CacheBytes, log)
	}
	if err != nil {
		meta.Close()
		return nil, err
	}
	c := &Client{
		cfg:      cfg,
		log:      log,
		meta:     meta,
		data:     newDataConns(pki.DialCreds(cfg.TLS, pki.RoleData)),
		clientID: id,
		cache:    cache,
	}
	c.reports = newBadShardReporter(c)
	c.reads.c = c
	return c, nil
}

func randomID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("client: random client id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// Close stops background work (pending bad-shard reports get a short grace
// period) and closes every connection.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.reports.close()
		err = errors.Join(c.data.close(), c.meta.Close())
	})
	return err
}

// Meta returns the metadata connection, for callers that need RPCs this
// package does not wrap. Use NewHeader for their request headers.
func (c *Client) Meta() *metaconn.Conn { return c.meta }

// NewHeader returns a request header with a fresh request id. Build it once
// per logical operation, outside the closure given to metaconn.Conn.Call,
// so that retries reuse it.
func (c *Client) NewHeader() *stratapb.RequestHeader {
	return &stratapb.RequestHeader{
		ClientId:  c.clientID,
		RequestId: c.nextReq.Add(1),
		Tenant:    c.cfg.Tenant,
		StaleOk:   c.cfg.StaleReads,
	}
}

// call runs one metadata RPC through the leader-following connection.
func (c *Client) call(ctx context.Context, fn func(ctx context.Context, mc stratapb.MetaClient) error) error {
	return c.meta.Call(ctx, fn)
}
