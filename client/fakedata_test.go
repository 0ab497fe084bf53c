package client

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-hpc/strata/internal/metaconn"
	"github.com/strata-hpc/strata/internal/rpcerr"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// fakeData is an in-memory dataserver with fault injection, served over
// real gRPC on a loopback port, so that the client's data path runs as it
// does against real dataservers.
type fakeData struct {
	stratapb.UnimplementedDataServer
	id   uint32
	addr string
	srv  *grpc.Server

	mu      sync.Mutex
	shards  map[[2]uint64][]byte
	down    bool               // every RPC fails Unavailable
	corrupt map[[2]uint64]bool // reads fail DataLoss
	failW   bool               // writes fail ENOSPC

	reads, writes atomic.Int64
}

func startFakeData(t testing.TB, id uint32) *fakeData {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &fakeData{
		id: id, addr: lis.Addr().String(),
		shards: make(map[[2]uint64][]byte), corrupt: make(map[[2]uint64]bool),
		srv: grpc.NewServer(grpc.MaxRecvMsgSize(metaconn.MaxMsgSize), grpc.MaxSendMsgSize(metaconn.MaxMsgSize)),
	}
	stratapb.RegisterDataServer(d.srv, d)
	go d.srv.Serve(lis)
	t.Cleanup(d.srv.Stop)
	return d
}

func shardKey(k *stratapb.ShardKey) [2]uint64 { return [2]uint64{k.GetChunkId(), uint64(k.GetIndex())} }

func (d *fakeData) WriteShard(_ context.Context, req *stratapb.WriteShardRequest) (*stratapb.WriteShardResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.down {
		return nil, status.Error(codes.Unavailable, "fake: down")
	}
	if d.failW {
		return nil, rpcerr.Errno(syscall.ENOSPC, "fake: disk full")
	}
	if crc32c(req.GetData()) != req.GetCrc32C() {
		return nil, rpcerr.Errno(syscall.EINVAL, "fake: checksum mismatch")
	}
	d.writes.Add(1)
	d.shards[shardKey(req.GetKey())] = append([]byte(nil), req.GetData()...)
	return &stratapb.WriteShardResponse{}, nil
}

func (d *fakeData) ReadShard(_ context.Context, req *stratapb.ReadShardRequest) (*stratapb.ReadShardResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.down {
		return nil, status.Error(codes.Unavailable, "fake: down")
	}
	k := shardKey(req.GetKey())
	data, ok := d.shards[k]
	switch {
	case !ok:
		return nil, rpcerr.Errno(syscall.ENOENT, "fake: no shard %v", k)
	case d.corrupt[k]:
		return nil, status.Error(codes.DataLoss, "fake: block checksum mismatch")
	}
	off, n := req.GetOffset(), req.GetLength()
	if n == 0 {
		n = uint64(len(data)) - min(off, uint64(len(data)))
	}
	if off+n > uint64(len(data)) {
		return nil, rpcerr.Errno(syscall.EINVAL, "fake: range %d+%d past shard size %d", off, n, len(data))
	}
	d.reads.Add(1)
	return &stratapb.ReadShardResponse{Data: append([]byte(nil), data[off:off+n]...), ShardSize: uint64(len(data))}, nil
}

func (d *fakeData) setDown(v bool) {
	d.mu.Lock()
	d.down = v
	d.mu.Unlock()
}

// mutate changes a stored shard in place (silent corruption that the
// dataserver's own checksums would not catch).
func (d *fakeData) mutate(chunkID uint64, shard int, fn func([]byte)) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	data, ok := d.shards[[2]uint64{chunkID, uint64(shard)}]
	if ok {
		fn(data)
	}
	return ok
}

func (d *fakeData) drop(chunkID uint64, shard int) {
	d.mu.Lock()
	delete(d.shards, [2]uint64{chunkID, uint64(shard)})
	d.mu.Unlock()
}

func (d *fakeData) setCorrupt(chunkID uint64, shard int) {
	d.mu.Lock()
	d.corrupt[[2]uint64{chunkID, uint64(shard)}] = true
	d.mu.Unlock()
}

func (d *fakeData) String() string { return fmt.Sprintf("fake dataserver %d at %s", d.id, d.addr) }
