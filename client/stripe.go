package client

import (
	"errors"
	"fmt"
	"sync"

	"github.com/klauspost/reedsolomon"

	"github.com/strata-hpc/strata/internal/metaconn"
	"github.com/strata-hpc/strata/proto/stratapb"
)

const (
	// maxChunkSize keeps a whole replicated chunk (one shard) inside one
	// gRPC message.
	maxChunkSize = metaconn.MaxMsgSize - 1<<20
	// maxShards is the most shards GF(2^8) Reed–Solomon supports.
	maxShards = 256
)

// checkPolicy rejects stripe policies no chunk could be stored with.
func checkPolicy(p *stratapb.StripePolicy) error {
	switch {
	case p == nil:
		return errors.New("no stripe policy")
	case p.GetDataShards() < 1:
		return fmt.Errorf("data_shards is %d, need at least 1", p.GetDataShards())
	case p.GetDataShards()+p.GetParityShards() > maxShards:
		return fmt.Errorf("data_shards+parity_shards is %d, at most %d", p.GetDataShards()+p.GetParityShards(), maxShards)
	case p.GetChunkSize() < 1 || p.GetChunkSize() > maxChunkSize:
		return fmt.Errorf("chunk_size is %d, must be in [1, %d]", p.GetChunkSize(), maxChunkSize)
	}
	return nil
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// layout is the shape of one stored chunk: how its bytes map onto shards.
// An erasure-coded chunk is cut into k data shards of shardSize bytes, one
// after the other (the last one zero padded), exactly as reedsolomon's
// Split does, followed by m parity shards; as written, shardSize is
// ceil(size/k). A replicated chunk has k = 1 and m+1 full copies.
//
// A truncate that cuts a chunk lowers its size in the metadata but not its
// shardSize, which therefore is the stride to map bytes with.
type layout struct {
	scheme    stratapb.Scheme
	k, m      int
	size      int
	shardSize int
	// verifiable is set when the chunk's CRC32C covers exactly its size
	// bytes: it was never cut by a truncate, and carries a checksum (the
	// metadata service zeroes it when it cuts a chunk).
	verifiable bool
}

// chunkLayout checks a chunk's metadata before any byte is read with it, so
// that inconsistent metadata fails loudly instead of returning wrong data.
func chunkLayout(ch *stratapb.Chunk) (layout, error) {
	l := layout{
		scheme:    ch.GetScheme(),
		k:         int(ch.GetDataShards()),
		m:         int(ch.GetParityShards()),
		size:      int(ch.GetSize()),
		shardSize: int(ch.GetShardSize()),
	}
	if l.size <= 0 || l.k < 1 || l.m < 0 || l.k+l.m > maxShards || len(ch.GetServers()) != l.k+l.m {
		return l, fmt.Errorf("chunk %d: bad shape: size %d, %d+%d shards, %d servers",
			ch.GetId(), l.size, l.k, l.m, len(ch.GetServers()))
	}
	switch l.scheme {
	case stratapb.Scheme_ERASURE:
		if l.shardSize*l.k < l.size {
			return l, fmt.Errorf("chunk %d: %d shards of %d bytes cannot hold %d bytes", ch.GetId(), l.k, l.shardSize, l.size)
		}
		l.verifiable = l.shardSize == ceilDiv(l.size, l.k)
	case stratapb.Scheme_REPLICATED:
		if l.k != 1 || l.shardSize < l.size {
			return l, fmt.Errorf("chunk %d: replicated with %d data shards of %d bytes for %d bytes",
				ch.GetId(), l.k, l.shardSize, l.size)
		}
		l.verifiable = l.shardSize == l.size
	default:
		return l, fmt.Errorf("chunk %d: unknown scheme %v", ch.GetId(), l.scheme)
	}
	l.verifiable = l.verifiable && ch.GetCrc32C() != 0
	return l, nil
}

// segment is the part of a byte range that one data shard holds: n bytes
// at column col of shard, landing at offset at of the range.
type segment struct {
	shard, col, n, at int
}

// segments maps the chunk byte range [off, off+n) onto data shards. The
// range must lie inside the chunk.
func (l layout) segments(off, n int) []segment {
	segs := make([]segment, 0, ceilDiv(n, l.shardSize)+1)
	at := 0
	for n > 0 {
		s, col := off/l.shardSize, off%l.shardSize
		take := min(n, l.shardSize-col)
		segs = append(segs, segment{shard: s, col: col, n: take, at: at})
		off, n, at = off+take, n-take, at+take
	}
	return segs
}

// stripeLen is the size of one buffer that holds a chunk of size bytes
// with its parity, shard after shard.
func stripeLen(k, m, size int) int { return (k + m) * ceilDiv(size, k) }

// encodeStripe encodes the chunk whose size bytes are at the start of buf
// (cap(buf) >= stripeLen) in place: it zeroes the padding of the last data
// shard, computes the parity, and returns the k+m shards as sub-slices of
// buf, so that encoding costs no copy and no allocation.
func encodeStripe(enc reedsolomon.Encoder, buf []byte, size, k, m int) ([][]byte, error) {
	ss := ceilDiv(size, k)
	buf = buf[:(k+m)*ss]
	clear(buf[size : k*ss])
	shards := make([][]byte, k+m)
	for i := range shards {
		shards[i] = buf[i*ss : (i+1)*ss : (i+1)*ss]
	}
	if m == 0 {
		return shards, nil
	}
	if err := enc.Encode(shards); err != nil {
		return nil, fmt.Errorf("client: encode %d+%d stripe of %d bytes: %w", k, m, size, err)
	}
	return shards, nil
}

// codecCache keeps one encoder per (k, m): building one inverts matrices,
// and encoders are safe for concurrent use (they keep their inversion cache
// behind a lock).
type codecCache struct {
	mu  sync.Mutex
	enc map[[2]int]reedsolomon.Encoder
}

// get returns the encoder for k+m. Every Strata component must build it
// with reedsolomon.New(k, m) and no matrix option (Cauchy, Leopard, ...),
// or dataservers and clients would disagree about parity.
func (cc *codecCache) get(k, m int) (reedsolomon.Encoder, error) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	key := [2]int{k, m}
	if e, ok := cc.enc[key]; ok {
		return e, nil
	}
	e, err := reedsolomon.New(k, m)
	if err != nil {
		return nil, fmt.Errorf("client: reed-solomon %d+%d: %w", k, m, err)
	}
	if cc.enc == nil {
		cc.enc = make(map[[2]int]reedsolomon.Encoder)
	}
	cc.enc[key] = e
	return e, nil
}

// bufferPool recycles the large buffers of chunk streams. Sizes are rounded
// up to 64 KiB classes so that a few pools serve every policy in use;
// smaller buffers are not worth pooling.
type bufferPool struct {
	pools sync.Map // int class -> *sync.Pool
}

const bufClass = 64 << 10

func (bp *bufferPool) get(n int) *[]byte {
	if n < bufClass {
		b := make([]byte, n)
		return &b
	}
	class := ceilDiv(n, bufClass) * bufClass
	p, _ := bp.pools.LoadOrStore(class, &sync.Pool{})
	if v := p.(*sync.Pool).Get(); v != nil {
		b := v.(*[]byte)
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, class)
	return &b
}

func (bp *bufferPool) put(b *[]byte) {
	if b == nil || cap(*b) < bufClass || cap(*b)%bufClass != 0 {
		return
	}
	if p, ok := bp.pools.Load(cap(*b)); ok {
		p.(*sync.Pool).Put(b)
	}
}
