package client

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/strata-hpc/strata/internal/metaconn"
	"github.com/strata-hpc/strata/proto/stratapb"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

func crc32Update(crc uint32, b []byte) uint32 { return crc32.Update(crc, castagnoli, b) }

// dataConns caches one gRPC connection per dataserver address; gRPC
// multiplexes every concurrent shard RPC to a server over it.
type dataConns struct {
	creds  grpc.DialOption // TLS to a data role, or plain text
	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	closed bool
}

func newDataConns(creds grpc.DialOption) *dataConns {
	return &dataConns{creds: creds, conns: make(map[string]*grpc.ClientConn)}
}

// dataDialOptions cap gRPC's reconnect back-off (default up to 2 minutes):
// a restarted dataserver should serve reads again within seconds, while
// RPCs to a dead one still fail fast and go to other shards.
func dataDialOptions(creds grpc.DialOption) []grpc.DialOption {
	bc := backoff.DefaultConfig
	bc.MaxDelay = 3 * time.Second
	return metaconn.DialOptions(creds,
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bc, MinConnectTimeout: 5 * time.Second}),
	)
}

func (d *dataConns) client(addr string) (stratapb.DataClient, error) {
	if addr == "" {
		return nil, errors.New("no address known for dataserver")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, errors.New("client closed")
	}
	cc, ok := d.conns[addr]
	if !ok {
		var err error
		cc, err = grpc.NewClient(addr, dataDialOptions(d.creds)...)
		if err != nil {
			return nil, fmt.Errorf("dial dataserver %s: %w", addr, err)
		}
		d.conns[addr] = cc
	}
	return stratapb.NewDataClient(cc), nil
}

func (d *dataConns) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	var errs []error
	for addr, cc := range d.conns {
		errs = append(errs, cc.Close())
		delete(d.conns, addr)
	}
	return errors.Join(errs...)
}

// writeShard stores one shard on the dataserver at addr.
func (c *Client) writeShard(ctx context.Context, addr string, chunkID uint64, index int, data []byte) error {
	dc, err := c.data.client(addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ShardTimeout)
	defer cancel()
	// The capability came with the allocation just made; a write never
	// outlasts its lifetime (minutes), so it is not refreshed.
	capb, _ := c.caps.get(chunkID, capWrite)
	_, err = dc.WriteShard(ctx, &stratapb.WriteShardRequest{
		Key:        &stratapb.ShardKey{ChunkId: chunkID, Index: uint32(index)},
		Data:       data,
		Crc32C:     crc32c(data),
		Capability: capb,
	})
	return err
}

// readShard reads n bytes at off of one shard. A short answer is an error:
// the metadata says the shard holds these bytes, so anything else is a
// damaged or foreign shard.
func (c *Client) readShard(ctx context.Context, addr string, chunkID uint64, index, off, n int, capb []byte) ([]byte, error) {
	dc, err := c.data.client(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ShardTimeout)
	defer cancel()
	resp, err := dc.ReadShard(ctx, &stratapb.ReadShardRequest{
		Key:        &stratapb.ShardKey{ChunkId: chunkID, Index: uint32(index)},
		Offset:     uint64(off),
		Length:     uint64(n),
		Capability: capb,
	})
	if err != nil {
		return nil, err
	}
	if len(resp.GetData()) != n {
		return nil, fmt.Errorf("short shard read: got %d bytes at offset %d, want %d", len(resp.GetData()), off, n)
	}
	return resp.GetData(), nil
}

// badShardReporter sends ReportBadShard in the background: reads must not
// wait for it or fail because of it. Reports go through a bounded queue
// (dropped when full) and are deduplicated for a while, so that a client
// hammering a damaged chunk does not flood the leader.
type badShardReporter struct {
	c      *Client
	queue  chan *stratapb.ReportBadShardRequest
	done   chan struct{}
	ctx    context.Context // canceled when the grace period at close ends
	cancel context.CancelFunc
	mu     sync.Mutex
	recent map[[2]uint64]time.Time
	closed bool
}

const (
	reportQueueLen   = 1024
	reportDedupe     = time.Minute
	reportTimeout    = 10 * time.Second
	reportCloseGrace = 2 * time.Second
)

func newBadShardReporter(c *Client) *badShardReporter {
	ctx, cancel := context.WithCancel(context.Background())
	r := &badShardReporter{
		c:      c,
		ctx:    ctx,
		cancel: cancel,
		queue:  make(chan *stratapb.ReportBadShardRequest, reportQueueLen),
		done:   make(chan struct{}),
		recent: make(map[[2]uint64]time.Time),
	}
	go r.run()
	return r
}

// report queues a report that shard of chunk (of file ino) on server is
// bad or missing.
func (r *badShardReporter) report(ino, chunkID uint64, shard int, server uint32, reason string) {
	key := [2]uint64{chunkID, uint64(shard)}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	if t, ok := r.recent[key]; ok && now.Sub(t) < reportDedupe {
		return
	}
	if len(r.recent) >= reportQueueLen*4 {
		clear(r.recent) // crude bound; a repeated report is harmless
	}
	r.recent[key] = now
	req := &stratapb.ReportBadShardRequest{
		Header: r.c.NewHeader(), ChunkId: chunkID, ShardIndex: uint32(shard), ServerId: server, Reason: reason, Ino: ino,
	}
	select {
	case r.queue <- req:
	default:
		r.c.log.Warn("bad shard report dropped: queue full", "chunk", chunkID, "shard", shard, "server", server)
	}
}

func (r *badShardReporter) run() {
	defer close(r.done)
	for req := range r.queue {
		if r.ctx.Err() != nil {
			continue // closing: drop what is left rather than redial
		}
		ctx, cancel := context.WithTimeout(r.ctx, reportTimeout)
		err := r.c.call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
			_, err := mc.ReportBadShard(ctx, req)
			return err
		})
		cancel()
		if err != nil {
			r.c.log.Warn("reporting bad shard failed", "chunk", req.GetChunkId(),
				"shard", req.GetShardIndex(), "server", req.GetServerId(), "err", err)
		}
	}
}

// close stops taking reports and waits briefly for queued ones.
func (r *badShardReporter) close() {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		close(r.queue)
	}
	r.mu.Unlock()
	select {
	case <-r.done:
	case <-time.After(reportCloseGrace):
		r.c.log.Warn("bad shard reports dropped at close", "pending", len(r.queue))
		r.cancel()
		<-r.done
	}
	r.cancel()
}
