package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// allocate asks the metadata service where to put chunks of these sizes.
func (c *Client) allocate(ctx context.Context, ino uint64, sizes []uint32) (*stratapb.AllocateChunksResponse, error) {
	req := &stratapb.AllocateChunksRequest{Header: c.NewHeader(), Ino: ino, Count: uint32(len(sizes)), Sizes: sizes}
	var resp *stratapb.AllocateChunksResponse
	err := c.call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		var err error
		resp, err = mc.AllocateChunks(ctx, req)
		return err
	})
	c.caps.note(resp.GetCaps(), capWrite)
	if err != nil {
		return nil, err
	}
	if len(resp.GetAllocations()) != len(sizes) {
		return nil, fmt.Errorf("allocate: asked for %d chunks, got %d: %w", len(sizes), len(resp.GetAllocations()), syscall.EIO)
	}
	return resp, nil
}

// commit adds written chunks to inode ino's chunk list in one transaction.
func (c *Client) commit(ctx context.Context, ino uint64, commits []*stratapb.ChunkCommit, minSize uint64) (*stratapb.Attr, error) {
	req := &stratapb.CommitChunksRequest{
		Header: c.NewHeader(), Ino: ino, Chunks: commits, MinSize: minSize, MtimeNs: time.Now().UnixNano(),
	}
	var attr *stratapb.Attr
	err := c.call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		resp, err := mc.CommitChunks(ctx, req)
		attr = resp.GetAttr()
		return err
	})
	return attr, err
}

// writeChunk encodes a chunk (size bytes at the start of buf) by the
// scheme its allocation chose, stores every shard, and returns the chunk
// metadata to commit. buf should have room for the parity (stripeLen),
// so that encoding happens in place; otherwise it is copied once.
func (c *Client) writeChunk(ctx context.Context, index uint64, buf []byte, size int, a *stratapb.Allocation, addrs map[uint32]string) (*stratapb.Chunk, error) {
	k, m := int(a.GetDataShards()), int(a.GetParityShards())
	if k < 1 || m < 0 || k+m > maxShards || len(a.GetServers()) != k+m {
		return nil, fmt.Errorf("chunk %d: bad allocation: %d+%d shards on %d servers: %w", index, k, m, len(a.GetServers()), syscall.EIO)
	}
	data := buf[:size]
	var shards [][]byte
	shardSize := size
	switch a.GetScheme() {
	case stratapb.Scheme_REPLICATED:
		if k != 1 {
			return nil, fmt.Errorf("chunk %d: replicated allocation with %d data shards: %w", index, k, syscall.EIO)
		}
		shards = slices.Repeat([][]byte{data}, k+m)
	case stratapb.Scheme_ERASURE:
		enc, err := c.codecs.get(k, m)
		if err != nil {
			return nil, err
		}
		if need := stripeLen(k, m, size); cap(buf) < need {
			grown := c.bufs.get(need)
			defer c.bufs.put(grown)
			copy(*grown, data)
			buf = *grown
		}
		if shards, err = encodeStripe(enc, buf[:cap(buf)], size, k, m); err != nil {
			return nil, err
		}
		shardSize = ceilDiv(size, k)
	default:
		return nil, fmt.Errorf("chunk %d: allocation with unknown scheme %v: %w", index, a.GetScheme(), syscall.EIO)
	}
	servers, err := c.storeShards(ctx, a, addrs, shards)
	if err != nil {
		return nil, fmt.Errorf("chunk %d (id %d): %w", index, a.GetChunkId(), err)
	}
	return &stratapb.Chunk{
		Index: index, Id: a.GetChunkId(), Size: uint32(size), Scheme: a.GetScheme(),
		DataShards: uint32(k), ParityShards: uint32(m), ShardSize: uint32(shardSize),
		Servers: servers, Crc32C: crc32c(data),
	}, nil
}

// spares hands out the allocation's spare servers, each at most once and
// never one the stripe already uses, so that two shards of a stripe never
// share a server.
type spares struct {
	mu   sync.Mutex
	list []uint32
	used map[uint32]bool
}

func newSpares(a *stratapb.Allocation) *spares {
	s := &spares{list: a.GetSpares(), used: make(map[uint32]bool)}
	for _, id := range a.GetServers() {
		s.used[id] = true
	}
	return s
}

func (s *spares) take() (uint32, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range s.list {
		if !s.used[id] {
			s.used[id] = true
			return id, true
		}
	}
	return 0, false
}

// minStored is how many shards of a stripe of width shards must be stored
// for a write to count: k+1, so that one more loss is survivable, or the
// whole stripe if it is narrower. This is the metadata service's rule for
// degraded placement (as Ceph's min_size); repair fills in the rest.
func minStored(k, width int) int { return min(k+1, width) }

// storeShards writes every shard in parallel and returns the servers that
// hold them: the allocated ones, spares where a write failed, and 0 for a
// shard no server took (allowed down to minStored).
func (c *Client) storeShards(ctx context.Context, a *stratapb.Allocation, addrs map[uint32]string, shards [][]byte) ([]uint32, error) {
	servers := slices.Clone(a.GetServers())
	sp := newSpares(a)
	errs := make([]error, len(shards))
	var wg sync.WaitGroup
	for i := range shards {
		wg.Go(func() {
			errs[i] = c.storeShard(ctx, a.GetChunkId(), i, shards[i], &servers[i], sp, addrs)
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var failed []error
	for i, err := range errs {
		if err != nil {
			servers[i] = 0
			failed = append(failed, err)
		}
	}
	need := minStored(int(a.GetDataShards()), len(shards))
	if stored := len(shards) - len(failed); stored < need {
		return nil, fmt.Errorf("stored %d of %d shards, need %d: %w: %w", stored, len(shards), need, errors.Join(failed...), syscall.EIO)
	}
	if len(failed) > 0 {
		c.log.Warn("chunk written degraded; repair will complete it", "chunk", a.GetChunkId(),
			"stored", len(shards)-len(failed), "width", len(shards), "err", errors.Join(failed...))
	}
	return servers, nil
}

// storeShard writes shard i to *server (taking a spare first if the
// allocation left it unplaced), moving to spare servers on failure;
// *server ends as the server that took it.
func (c *Client) storeShard(ctx context.Context, chunkID uint64, i int, data []byte, server *uint32, sp *spares, addrs map[uint32]string) error {
	var tried []string
	for {
		if *server == 0 {
			next, ok := sp.take()
			if !ok {
				if len(tried) == 0 {
					return fmt.Errorf("shard %d: no server to place it on", i)
				}
				return fmt.Errorf("shard %d: no spare server left; tried %s", i, strings.Join(tried, "; "))
			}
			*server = next
		}
		addr := addrs[*server]
		_, err := retryKeysPending(ctx, func() (struct{}, error) {
			return struct{}{}, c.writeShard(ctx, addr, chunkID, i, data)
		})
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		tried = append(tried, fmt.Sprintf("server %d (%s): %s", *server, addr, shardReason(err)))
		c.log.Warn("shard write failed; trying a spare server", "chunk", chunkID, "shard", i,
			"server", *server, "addr", addr, "err", err)
		*server = 0
	}
}
