package dataserver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-hpc/strata/internal/capability"
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
	fg                            foreground // client I/O, for the heartbeat
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
// one, and stores the shard here. A source that makes the CRC fail is
// reported bad, as the scrubber would.
func (r *repairService) RebuildShard(ctx context.Context, req *stratapb.RebuildShardRequest) (*stratapb.RebuildShardResponse, error) {
	ch := req.GetChunk()
	if err := checkRebuild(ch, req.GetIndex()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := r.srv.auth.check(ctx, "rebuild", req.GetCapability(), ch.GetId(), capability.OpRebuild); err != nil {
		return nil, err
	}
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	data, suspect, err := newRebuildJob(r, ch, int(req.GetIndex()), req.GetSources(), req.GetCapability()).run(fctx)
	var fe fetchError
	switch {
	case errors.As(err, &fe):
		return nil, status.Error(codes.Unavailable, err.Error())
	case err != nil:
		return nil, status.Error(codes.DataLoss, err.Error())
	}
	if suspect >= 0 {
		r.reportSource(ctx, ch, suspect)
	}
	k := Key{ChunkID: ch.GetId(), Index: req.GetIndex()}
	if err := r.srv.store.Put(ctx, k, data, crc32c.Checksum(data)); err != nil {
		return nil, toStatus(err)
	}
	r.srv.metrics.heal.rebuilt.Add(1)
	r.srv.metrics.heal.rebuiltBytes.Add(uint64(len(data)))
	return &stratapb.RebuildShardResponse{Bytes: uint64(len(data))}, nil
}

// reportSource tells the metadata service that shard index of ch, on the
// server the chunk places it, made a rebuild fail its CRC: it is wrong
// although its block CRCs hold, and must be rebuilt too.
func (r *repairService) reportSource(ctx context.Context, ch *stratapb.Chunk, index int) {
	srv := r.srv
	id := ch.GetServers()[index]
	reason := fmt.Sprintf("rebuild: shard makes chunk %d fail its end-to-end CRC; another subset of sources verifies", ch.GetId())
	srv.log.Warn("rebuild: wrong source shard", "chunk", ch.GetId(), "shard", index, "server", id)
	if srv.meta == nil || srv.ID() == 0 {
		return
	}
	req := &stratapb.ReportBadShardRequest{ChunkId: ch.GetId(), ShardIndex: uint32(index), ServerId: id, Reason: reason}
	if err := srv.callMeta(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		_, err := mc.ReportBadShard(ctx, req)
		return err
	}); err != nil {
		srv.log.Warn("rebuild: report wrong source shard", "chunk", ch.GetId(), "shard", index, "err", err)
	}
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

// readPeer reads one whole shard from a peer. capb is the leader's
// capability, which allows the peers' reads too.
func (r *repairService) readPeer(ctx context.Context, addr string, chunk uint64, index, size uint32, capb []byte) ([]byte, error) {
	dc, err := r.peers.get(addr)
	if err != nil {
		return nil, err
	}
	resp, err := dc.ReadShard(repairIO(ctx), &stratapb.ReadShardRequest{Key: &stratapb.ShardKey{ChunkId: chunk, Index: index}, Capability: capb}, grpc.MaxCallRecvMsgSize(metaconn.MaxMsgSize))
	if err != nil {
		return nil, err
	}
	if len(resp.GetData()) != int(size) {
		return nil, fmt.Errorf("%s holds %d bytes, want %d", addr, len(resp.GetData()), size)
	}
	return resp.GetData(), nil
}
