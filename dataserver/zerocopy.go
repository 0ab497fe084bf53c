package dataserver

import (
	"context"
	"errors"
	"math/bits"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// Zero-copy, pooled replies for ReadShard.
//
// With the stock codec a read costs a fresh buffer for the blocks (its
// allocation and page faults dominate small reads) and a copy into gRPC's
// own buffer. Here the blocks are read into a pooled buffer and handed to
// the transport as they are: a unary interceptor swaps the handler's
// *stratapb.ReadShardResponse for a *readReply, and the server codec
// encodes that as the protobuf header bytes, a view of the pooled buffer,
// and the shard_size field. gRPC frees the view once the bytes are written,
// which returns the buffer to the pool. The wire format is the ordinary
// ReadShardResponse; clients notice nothing.

// bufPool is a mem.BufferPool of power-of-two buffers from 4 KiB to 64 MiB.
// Buffers are not zeroed: a read fills every byte it hands out (a short
// read is an error and sends nothing).
type bufPool struct {
	tiers [maxPoolShift - minPoolShift + 1]sync.Pool
}

const (
	minPoolShift = 12
	maxPoolShift = 26 // MaxShardSize
)

var _ mem.BufferPool = (*bufPool)(nil)

func poolTier(n int) int {
	return max(bits.Len(uint(n-1)), minPoolShift) - minPoolShift
}

func (p *bufPool) Get(n int) *[]byte {
	t := poolTier(n)
	if t >= len(p.tiers) {
		b := make([]byte, n)
		return &b
	}
	if bp, ok := p.tiers[t].Get().(*[]byte); ok {
		*bp = (*bp)[:n]
		return bp
	}
	b := make([]byte, n, 1<<(t+minPoolShift))
	return &b
}

func (p *bufPool) Put(bp *[]byte) {
	c := cap(*bp)
	if t := poolTier(c); c == 1<<(t+minPoolShift) && t < len(p.tiers) {
		p.tiers[t].Put(bp)
	}
}

// replyKey carries a *pooledRead from the interceptor to the handler.
type replyKey struct{}

// pooledRead is filled by ReadShard when it read into a pooled buffer.
type pooledRead struct {
	pool *bufPool
	buf  *[]byte
}

// pooledAlloc returns an allocator for readRange that takes the buffer
// from the pool when the interceptor asked for it (nil otherwise: make).
func pooledAlloc(ctx context.Context) (func(int) []byte, *pooledRead) {
	pr, _ := ctx.Value(replyKey{}).(*pooledRead)
	if pr == nil {
		return nil, nil
	}
	return func(n int) []byte {
		pr.buf = pr.pool.Get(n)
		return *pr.buf
	}, pr
}

// release returns the buffer after a failed read.
func (pr *pooledRead) release() {
	if pr != nil && pr.buf != nil {
		pr.pool.Put(pr.buf)
		pr.buf = nil
	}
}

// pooledReplies is the interceptor half: it offers a pool to ReadShard and
// wraps a pooled response for the codec.
func pooledReplies(pool *bufPool) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if info.FullMethod != stratapb.Data_ReadShard_FullMethodName {
			return h(ctx, req)
		}
		pr := &pooledRead{pool: pool}
		resp, err := h(context.WithValue(ctx, replyKey{}, pr), req)
		msg, ok := resp.(*stratapb.ReadShardResponse)
		if err != nil || !ok || pr.buf == nil {
			pr.release()
			return resp, err
		}
		return &readReply{msg: msg, pr: pr}, nil
	}
}

// readReply is a ReadShardResponse whose data lies in a pooled buffer.
type readReply struct {
	msg  *stratapb.ReadShardResponse
	pr   *pooledRead
	sent atomic.Bool
}

// encode emits the protobuf encoding of msg, fields in number order as
// proto.Marshal would, with the data as a view of the pooled buffer.
func (r *readReply) encode() (mem.BufferSlice, error) {
	if r.sent.Swap(true) {
		return nil, errors.New("dataserver: read reply encoded twice")
	}
	out := make(mem.BufferSlice, 0, 3)
	if data := r.msg.GetData(); len(data) > 0 {
		out = append(out, mem.SliceBuffer(protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.BytesType), uint64(len(data)))))
		out = append(out, r.view(data))
	} else {
		r.pr.release()
	}
	if sz := r.msg.GetShardSize(); sz != 0 {
		out = append(out, mem.SliceBuffer(protowire.AppendVarint(protowire.AppendTag(nil, 2, protowire.VarintType), sz)))
	}
	return out, nil
}

// view returns data as a mem.Buffer that gives the pooled buffer back when
// gRPC frees it.
func (r *readReply) view(data []byte) mem.Buffer {
	buf := *r.pr.buf
	lo := cap(buf) - cap(data) // where data starts in buf, if it is a view of buf
	if lo < 0 || lo+len(data) > len(buf) || &buf[lo] != &data[0] {
		// Not ours to hand out: send it as it is.
		r.pr.release()
		return mem.SliceBuffer(data)
	}
	root := mem.NewBuffer(r.pr.buf, r.pr.pool)
	v := root.Slice(lo, lo+len(data))
	root.Free() // the view holds the reference now
	return v
}

// serverCodec is the proto codec, except for readReply.
type serverCodec struct{ base encoding.CodecV2 }

func newServerCodec() serverCodec { return serverCodec{base: encoding.GetCodecV2(proto.Name)} }

func (c serverCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*readReply); ok {
		return r.encode()
	}
	return c.base.Marshal(v)
}

func (c serverCodec) Unmarshal(data mem.BufferSlice, v any) error { return c.base.Unmarshal(data, v) }

func (c serverCodec) Name() string { return c.base.Name() }
