package dataserver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/reedsolomon"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-hpc/strata/internal/crc32c"
	"github.com/strata-hpc/strata/internal/metaconn"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// maxRebuildShard bounds the shard a rebuild will hold in memory (with its
// k sources): a whole shard must fit one gRPC message anyway.
const maxRebuildShard = metaconn.MaxMsgSize - 1<<20

// healCounters count what this server did for self-healing.
type healCounters struct {
	rebuilt, rebuiltBytes         atomic.Uint64
	scrubbed, scrubbedBytes, bads atomic.Uint64
	scrubPasses                   atomic.Uint64
}

func (h *healCounters) collectors() []prometheus.Collector {
	c := func(name, help string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help},
			func() float64 { return float64(v.Load()) })
	}
	return []prometheus.Collector{
		c("rebuilt_shards_total", "Shards rebuilt here for repair, drain or rebalance.", &h.rebuilt),
		c("rebuilt_bytes_total", "Bytes of shards rebuilt here.", &h.rebuiltBytes),
		c("scrubbed_shards_total", "Shards re-read and verified by the scrubber.", &h.scrubbed),
		c("scrubbed_bytes_total", "Bytes re-read and verified by the scrubber.", &h.scrubbedBytes),
		c("scrub_bad_shards_total", "Shards the scrubber found corrupt or missing (each reported).", &h.bads),
		c("scrub_passes_total", "Completed passes of the scrubber over every shard.", &h.scrubPasses),
	}
}

// repairService implements stratapb.RepairServer: rebuilding a shard from
// its peers, and listing the inventory for the metadata service's audit.
type repairService struct {
	stratapb.UnimplementedRepairServer
	srv   *Server
	peers *peerConns
}

// peerConns caches connections to other dataservers.
type peerConns struct {
	creds grpc.DialOption // TLS to a data peer, or plain text
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func (p *peerConns) get(addr string) (stratapb.DataClient, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cc, ok := p.conns[addr]; ok {
		return stratapb.NewDataClient(cc), nil
	}
	cc, err := grpc.NewClient(addr, metaconn.DialOptions(p.creds)...)
	if err != nil {
		return nil, fmt.Errorf("dataserver: dial peer %s: %w", addr, err)
	}
	if p.conns == nil {
		p.conns = map[string]*grpc.ClientConn{}
	}
	p.conns[addr] = cc
	return stratapb.NewDataClient(cc), nil
}

func (p *peerConns) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for a, cc := range p.conns {
		cc.Close()
		delete(p.conns, a)
	}
}

func (r *repairService) ListShards(ctx context.Context, _ *stratapb.ListShardsRequest) (*stratapb.ListShardsResponse, error) {
	keys := r.srv.store.Keys()
	resp := &stratapb.ListShardsResponse{Shards: make([]*stratapb.ListedShard, 0, len(keys))}
	for _, k := range keys {
		info, err := r.srv.store.Stat(ctx, k)
		if err != nil {
			continue // gone since, or corrupt: the scrubber reports those
		}
		resp.Shards = append(resp.Shards, &stratapb.ListedShard{ChunkId: k.ChunkID, Index: k.Index, Size: info.Size, MtimeNs: info.ModTime.UnixNano()})
	}
	return resp, nil
}

// RebuildShard fetches k surviving shards of the stripe from their servers,
// decodes the missing one, checks the chunk's end-to-end CRC when it has
// one, and stores the shard here.
func (r *repairService) RebuildShard(ctx context.Context, req *stratapb.RebuildShardRequest) (*stratapb.RebuildShardResponse, error) {
	ch := req.GetChunk()
	if err := checkRebuild(ch, req.GetIndex()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	shards, err := r.fetch(ctx, ch, req.GetIndex(), req.GetSources())
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	data, err := decodeShard(ch, shards, int(req.GetIndex()))
	if err != nil {
		return nil, status.Error(codes.DataLoss, err.Error())
	}
	k := Key{ChunkID: ch.GetId(), Index: req.GetIndex()}
	if err := r.srv.store.Put(ctx, k, data, crc32c.Checksum(data)); err != nil {
		return nil, toStatus(err)
	}
	r.srv.metrics.heal.rebuilt.Add(1)
	r.srv.metrics.heal.rebuiltBytes.Add(uint64(len(data)))
	return &stratapb.RebuildShardResponse{Bytes: uint64(len(data))}, nil
}

func checkRebuild(ch *stratapb.Chunk, index uint32) error {
	k, m := int(ch.GetDataShards()), int(ch.GetParityShards())
	switch {
	case ch == nil:
		return errors.New("rebuild: no chunk")
	case k < 1 || m < 0 || k+m > 256 || len(ch.GetServers()) != k+m:
		return fmt.Errorf("rebuild: chunk %d: bad stripe %d+%d with %d servers", ch.GetId(), k, m, len(ch.GetServers()))
	case int(index) >= k+m:
		return fmt.Errorf("rebuild: chunk %d has no shard %d", ch.GetId(), index)
	case ch.GetShardSize() == 0 || ch.GetShardSize() > maxRebuildShard:
		return fmt.Errorf("rebuild: chunk %d: shard size %d", ch.GetId(), ch.GetShardSize())
	case ch.GetScheme() == stratapb.Scheme_REPLICATED && k != 1:
		return fmt.Errorf("rebuild: chunk %d: replicated with %d data shards", ch.GetId(), k)
	}
	return nil
}

// fetch reads whole shards from the sources, in parallel, until k have
// arrived (a replicated chunk needs one). Shards that fail are skipped.
func (r *repairService) fetch(ctx context.Context, ch *stratapb.Chunk, index uint32, sources map[uint32]string) ([][]byte, error) {
	need := int(ch.GetDataShards())
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	type got struct {
		i    int
		data []byte
		err  error
	}
	results := make(chan got, len(ch.GetServers()))
	started := 0
	for i, id := range ch.GetServers() {
		addr, ok := sources[id]
		if i == int(index) || id == 0 || !ok {
			continue
		}
		started++
		go func() {
			data, err := r.readPeer(ctx, addr, ch.GetId(), uint32(i), ch.GetShardSize())
			results <- got{i, data, err}
		}()
	}
	shards := make([][]byte, len(ch.GetServers()))
	have := 0
	var errs []error
	for range started {
		g := <-results
		if g.err != nil {
			errs = append(errs, fmt.Errorf("shard %d: %w", g.i, g.err))
			continue
		}
		shards[g.i] = g.data
		if have++; have == need {
			return shards, nil
		}
	}
	return nil, fmt.Errorf("rebuild chunk %d: %d of %d shards readable: %w", ch.GetId(), have, need, errors.Join(errs...))
}

func (r *repairService) readPeer(ctx context.Context, addr string, chunk uint64, index, size uint32) ([]byte, error) {
	dc, err := r.peers.get(addr)
	if err != nil {
		return nil, err
	}
	resp, err := dc.ReadShard(ctx, &stratapb.ReadShardRequest{Key: &stratapb.ShardKey{ChunkId: chunk, Index: index}}, grpc.MaxCallRecvMsgSize(metaconn.MaxMsgSize))
	if err != nil {
		return nil, err
	}
	if len(resp.GetData()) != int(size) {
		return nil, fmt.Errorf("%s holds %d bytes, want %d", addr, len(resp.GetData()), size)
	}
	return resp.GetData(), nil
}

// decodeShard computes shard index from the fetched ones and verifies the
// chunk CRC when the metadata has one that covers the whole chunk.
func decodeShard(ch *stratapb.Chunk, shards [][]byte, index int) ([]byte, error) {
	k, m := int(ch.GetDataShards()), int(ch.GetParityShards())
	size, shardSize := int(ch.GetSize()), int(ch.GetShardSize())
	if ch.GetScheme() == stratapb.Scheme_REPLICATED {
		for _, s := range shards {
			if s != nil {
				if err := verifyChunk(ch, s[:min(size, len(s))], size == shardSize); err != nil {
					return nil, err
				}
				return slices.Clone(s), nil
			}
		}
		return nil, errors.New("no replica fetched")
	}
	enc, err := reedsolomon.New(k, max(m, 1))
	if err != nil {
		return nil, fmt.Errorf("rebuild: codec %d+%d: %w", k, m, err)
	}
	if m == 0 {
		return nil, errors.New("rebuild: a stripe without parity cannot be rebuilt")
	}
	if err := enc.Reconstruct(shards); err != nil {
		return nil, fmt.Errorf("rebuild chunk %d: decode: %w", ch.GetId(), err)
	}
	whole := make([]byte, 0, k*shardSize)
	for _, s := range shards[:k] {
		whole = append(whole, s...)
	}
	verifiable := size > 0 && shardSize == (size+k-1)/k
	if err := verifyChunk(ch, whole[:min(size, len(whole))], verifiable); err != nil {
		return nil, err
	}
	return shards[index], nil
}

// verifyChunk checks the end-to-end CRC: a wrong but self-consistent
// source shard must not be spread further.
func verifyChunk(ch *stratapb.Chunk, data []byte, verifiable bool) error {
	if !verifiable || ch.GetCrc32C() == 0 {
		return nil
	}
	if got := crc32c.Checksum(data); got != ch.GetCrc32C() {
		return fmt.Errorf("rebuild chunk %d: decoded data has CRC %08x, metadata says %08x", ch.GetId(), got, ch.GetCrc32C())
	}
	return nil
}
