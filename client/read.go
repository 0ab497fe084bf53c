package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"

	"github.com/klauspost/reedsolomon"

	"github.com/strata-hpc/strata/proto/stratapb"
)

var (
	// errChecksum marks shard data that disagrees with the chunk's checksum.
	errChecksum = errors.New("chunk checksum mismatch")
	// errUnplaced marks a shard the chunk was written without (server id
	// 0: too few dataservers were up); repair places it later.
	errUnplaced = errors.New("shard not placed")
)

// chunkRef locates one chunk of a file for reading.
type chunkRef struct {
	ino   uint64
	base  int64           // file offset of the chunk's first byte
	ch    *stratapb.Chunk // nil for a hole
	addrs map[uint32]string
	// valid is how many bytes from the chunk's start hold data: the chunk
	// size, cut at the end of the file. The rest of the chunk reads as
	// zeros.
	valid int
}

func newChunkRef(ino uint64, cs, fileSize int64, idx uint64, ch *stratapb.Chunk, addrs map[uint32]string) chunkRef {
	ref := chunkRef{ino: ino, base: int64(idx) * cs, ch: ch, addrs: addrs}
	if ch != nil {
		ref.valid = int(max(0, min(int64(ch.GetSize()), fileSize-ref.base)))
	}
	return ref
}

func (ref chunkRef) addr(shard int) (uint32, string) {
	id := ref.ch.GetServers()[shard]
	return id, ref.addrs[id]
}

// failure describes why shard could not be used.
func (ref chunkRef) failure(shard int, err error) ShardFailure {
	id, addr := ref.addr(shard)
	return ShardFailure{Shard: shard, Server: id, Addr: addr, Err: err}
}

// readRefShard reads n bytes at off of one shard of the chunk.
func (c *Client) readRefShard(ctx context.Context, ref chunkRef, shard, off, n int) ([]byte, error) {
	id, addr := ref.addr(shard)
	if id == 0 {
		return nil, errUnplaced
	}
	tok, err := c.readCap(ctx, ref)
	if err != nil {
		return nil, err
	}
	read := func() ([]byte, error) { return c.readShard(ctx, addr, ref.ch.GetId(), shard, off, n, tok) }
	data, err := retryKeysPending(ctx, read)
	if denied(err) {
		// Expired on the way, or signed with a key this dataserver has
		// not heard of yet: fetch a new one and try once more.
		c.caps.forget(ref.ch.GetId())
		if tok, err = c.readCap(ctx, ref); err != nil {
			return nil, err
		}
		data, err = retryKeysPending(ctx, read)
	}
	return data, err
}

// readChunkPart fills dst with bytes [off, off+len(dst)) of the chunk's
// slot in the file: data where the chunk has some, zeros elsewhere.
func (c *Client) readChunkPart(ctx context.Context, ref chunkRef, off int, dst []byte) error {
	n := max(0, min(ref.valid-off, len(dst)))
	if n > 0 {
		if err := c.readChunk(ctx, ref, off, dst[:n]); err != nil {
			return err
		}
	}
	clear(dst[n:])
	return nil
}

// readChunk fills dst with bytes [off, off+len(dst)) of the chunk, which
// must lie inside its data: from the local chunk cache when it holds the
// chunk, else from the dataservers. A whole chunk fetched goes into the
// cache.
func (c *Client) readChunk(ctx context.Context, ref chunkRef, off int, dst []byte) error {
	l, err := chunkLayout(ref.ch)
	if err != nil {
		return fmt.Errorf("client: inode %d: inconsistent chunk metadata: %v: %w", ref.ino, err, syscall.EIO)
	}
	if c.cache == nil {
		return c.fetchChunk(ctx, ref, l, off, dst)
	}
	k := keyOf(ref.ch)
	if c.cache.get(k, dst, off, c.scratch) {
		return nil
	}
	if err := c.fetchChunk(ctx, ref, l, off, dst); err != nil {
		return err
	}
	if off == 0 && len(dst) == l.size {
		c.cache.put(k, dst)
	}
	return nil
}

// scratch lends a pooled buffer of n bytes.
func (c *Client) scratch(n int) (*[]byte, func()) {
	b := c.bufs.get(n)
	return b, func() { c.bufs.put(b) }
}

// fetchChunk reads bytes [off, off+len(dst)) of the chunk from the
// dataservers. A read of the whole chunk is checked against the chunk's
// CRC32C.
func (c *Client) fetchChunk(ctx context.Context, ref chunkRef, l layout, off int, dst []byte) error {
	whole := off == 0 && len(dst) == l.size && l.verifiable
	if l.scheme == stratapb.Scheme_REPLICATED {
		return c.readReplicated(ctx, ref, off, dst, whole)
	}
	if err := c.readErasure(ctx, ref, l, off, dst); err != nil {
		return err
	}
	if whole && crc32c(dst) != ref.ch.GetCrc32C() {
		return c.recoverChecksum(ctx, ref, l, dst)
	}
	return nil
}

// readReplicated reads from one replica, falling back to the others.
func (c *Client) readReplicated(ctx context.Context, ref chunkRef, off int, dst []byte, whole bool) error {
	r := len(ref.ch.GetServers())
	start := int(ref.ch.GetId() % uint64(r)) // spread readers over replicas
	var fails []ShardFailure
	for i := range r {
		shard := (start + i) % r
		data, err := c.readRefShard(ctx, ref, shard, off, len(dst))
		if err == nil && whole && crc32c(data) != ref.ch.GetCrc32C() {
			err = errChecksum
		}
		if err == nil {
			copy(dst, data)
			c.reportFailures(ctx, ref, off, fails)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fails = append(fails, ref.failure(shard, err))
	}
	c.reportFailures(ctx, ref, off, fails)
	return c.chunkError(ref, off, len(dst), 1, 0, fails, "")
}

// readErasure reads the byte range from the data shards that hold it, in
// parallel, and rebuilds the parts whose shards failed.
func (c *Client) readErasure(ctx context.Context, ref chunkRef, l layout, off int, dst []byte) error {
	segs := l.segments(off, len(dst))
	errs := make([]error, len(segs))
	var wg sync.WaitGroup
	for i, s := range segs {
		wg.Go(func() {
			data, err := c.readRefShard(ctx, ref, s.shard, s.col, s.n)
			if err == nil {
				copy(dst[s.at:s.at+s.n], data)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	failed := false
	for _, err := range errs {
		failed = failed || err != nil
	}
	if !failed {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return c.degradedRead(ctx, ref, l, off, dst, segs, errs)
}

// degradedRead rebuilds the segments whose shard reads failed. Reed–Solomon
// works column by column, so it needs only the columns [lo, hi) that the
// failed segments cover, from any k shards: data segments already read
// are reused and the rest is fetched from the other shards (parity too),
// more rounds if some of those fail.
//
// Zero padding past the chunk's data is not assumed: a chunk cut by a
// truncate still holds its old bytes there.
func (c *Client) degradedRead(ctx context.Context, ref chunkRef, l layout, off int, dst []byte, segs []segment, errs []error) error {
	bad := make(map[int]ShardFailure)
	lo, hi := l.shardSize, 0
	for i, s := range segs {
		if errs[i] != nil {
			bad[s.shard] = ref.failure(s.shard, errs[i])
			lo, hi = min(lo, s.col), max(hi, s.col+s.n)
		}
	}
	pieces := make([][]byte, l.k+l.m)
	for i, s := range segs {
		if errs[i] == nil && s.col <= lo && s.col+s.n >= hi {
			pieces[s.shard] = dst[s.at+lo-s.col : s.at+hi-s.col]
		}
	}
	if err := c.fetchColumns(ctx, ref, l, lo, hi, pieces, bad); err != nil {
		return err
	}
	c.reportFailures(ctx, ref, off, sortedFailures(bad))
	if have := countPresent(pieces); have < l.k {
		return c.chunkError(ref, off, len(dst), l.k, have, sortedFailures(bad), "")
	}
	enc, err := c.codecs.get(l.k, l.m)
	if err != nil {
		return err
	}
	scratch := c.bufs.get(l.k * (hi - lo))
	defer c.bufs.put(scratch)
	if err := rebuildSegments(enc, l.k, lo, hi, pieces, segs, errs, *scratch, dst); err != nil {
		return fmt.Errorf("client: inode %d chunk %d: reconstruct: %w", ref.ino, ref.ch.GetId(), err)
	}
	c.log.Warn("degraded read", "ino", ref.ino, "chunk", ref.ch.GetId(), "index", ref.ch.GetIndex(),
		"bad_shards", len(bad), "offset", ref.base+int64(off), "len", len(dst))
	return nil
}

// rebuildSegments reconstructs the missing data pieces (columns [lo, hi)
// of each shard) and puts the parts the failed segments need into dst. A
// failed segment that spans exactly [lo, hi) is rebuilt in place in dst;
// the others go to scratch (room for k pieces) and are copied.
func rebuildSegments(enc reedsolomon.Encoder, k, lo, hi int, pieces [][]byte, segs []segment, errs []error, scratch, dst []byte) error {
	width := hi - lo
	inPlace := make([]bool, len(segs))
	for i, s := range segs {
		if errs[i] != nil && s.col == lo && s.n == width {
			pieces[s.shard] = dst[s.at : s.at : s.at+width] // empty, with room: filled by ReconstructData
			inPlace[i] = true
		}
	}
	for j := range k {
		if len(pieces[j]) == 0 && cap(pieces[j]) < width {
			pieces[j] = scratch[j*width : j*width : (j+1)*width]
		}
	}
	if err := enc.ReconstructData(pieces); err != nil {
		return err
	}
	for i, s := range segs {
		if errs[i] != nil && !inPlace[i] {
			copy(dst[s.at:s.at+s.n], pieces[s.shard][s.col-lo:])
		}
	}
	return nil
}

// fetchColumns reads columns [lo, hi) of shards not yet in pieces until k
// are present or no shard is left to try. Failures are added to bad.
func (c *Client) fetchColumns(ctx context.Context, ref chunkRef, l layout, lo, hi int, pieces [][]byte, bad map[int]ShardFailure) error {
	for {
		need := l.k - countPresent(pieces)
		if need <= 0 {
			return nil
		}
		var try []int
		for j := range pieces {
			if pieces[j] == nil && !hasKey(bad, j) && len(try) < need {
				try = append(try, j)
			}
		}
		if len(try) == 0 {
			return nil // the caller reports what is missing
		}
		results := make([][]byte, len(try))
		errs := make([]error, len(try))
		var wg sync.WaitGroup
		for i, j := range try {
			wg.Go(func() {
				results[i], errs[i] = c.readRefShard(ctx, ref, j, lo, hi-lo)
			})
		}
		wg.Wait()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		for i, j := range try {
			if errs[i] != nil {
				bad[j] = ref.failure(j, errs[i])
				continue
			}
			pieces[j] = results[i]
		}
	}
}

// recoverChecksum handles a whole-chunk read whose bytes disagree with the
// chunk checksum although every shard read succeeded (each dataserver
// checks its own blocks, so this means a shard holds the wrong, but
// self-consistent, data). It fetches every shard and tries leaving out up
// to m of them, rebuilding from the rest, until the checksum matches.
func (c *Client) recoverChecksum(ctx context.Context, ref chunkRef, l layout, dst []byte) error {
	full := make([][]byte, l.k+l.m)
	bad := make(map[int]ShardFailure)
	if err := c.fetchColumns(ctx, ref, l, 0, l.shardSize, full, bad); err != nil {
		return err
	}
	// fetchColumns stops at k shards; the search needs them all.
	for j := range full {
		if full[j] == nil && !hasKey(bad, j) {
			data, err := c.readRefShard(ctx, ref, j, 0, l.shardSize)
			if err != nil {
				bad[j] = ref.failure(j, err)
				continue
			}
			full[j] = data
		}
	}
	enc, err := c.codecs.get(l.k, l.m)
	if err != nil {
		return err
	}
	wrong, ok := searchConsistent(enc, full, l, ref.ch.GetCrc32C(), dst)
	for _, j := range wrong {
		bad[j] = ref.failure(j, errChecksum)
	}
	c.reportFailures(ctx, ref, 0, sortedFailures(bad))
	if !ok {
		return c.chunkError(ref, 0, len(dst), l.k, countPresent(full), sortedFailures(bad),
			"chunk checksum mismatch with every combination of shards")
	}
	c.log.Warn("chunk checksum mismatch repaired from parity", "ino", ref.ino, "chunk", ref.ch.GetId(), "wrong_shards", wrong)
	return nil
}

// maxChecksumTries bounds the subsets recoverChecksum tries, so that a
// wide stripe (say 10+4) cannot turn one bad read into thousands of
// decodes.
const maxChecksumTries = 64

// searchConsistent looks for a set of at most m shards that, left out,
// makes the chunk match want. On success dst holds the chunk and wrong the
// shards left out.
func searchConsistent(enc interface{ ReconstructData([][]byte) error }, full [][]byte, l layout, want uint32, dst []byte) (wrong []int, ok bool) {
	var present []int
	for j, p := range full {
		if p != nil {
			present = append(present, j)
		}
	}
	tries := 0
	for drop := 0; drop <= l.m && len(present)-drop >= l.k; drop++ {
		for _, subset := range combinations(present, drop) {
			if tries++; tries > maxChecksumTries {
				return nil, false
			}
			pieces := make([][]byte, len(full))
			copy(pieces, full)
			for _, j := range subset {
				pieces[j] = nil
			}
			if enc.ReconstructData(pieces) != nil {
				continue
			}
			if joinedCRC(pieces[:l.k], l.size) == want {
				joinData(dst, pieces[:l.k])
				return subset, true
			}
		}
	}
	return nil, false
}

// joinedCRC is the CRC32C of the first size bytes of the data shards.
func joinedCRC(data [][]byte, size int) uint32 {
	var crc uint32
	for _, d := range data {
		n := min(len(d), size)
		crc = crc32Update(crc, d[:n])
		size -= n
	}
	return crc
}

func joinData(dst []byte, data [][]byte) {
	at := 0
	for _, d := range data {
		at += copy(dst[at:], d)
	}
}

// combinations returns every subset of set with n elements.
func combinations(set []int, n int) [][]int {
	if n == 0 {
		return [][]int{nil}
	}
	var out [][]int
	for i := range set {
		for _, rest := range combinations(set[i+1:], n-1) {
			out = append(out, append([]int{set[i]}, rest...))
		}
	}
	return out
}

func countPresent(pieces [][]byte) int {
	n := 0
	for _, p := range pieces {
		if len(p) > 0 {
			n++
		}
	}
	return n
}

func hasKey[K comparable, V any](m map[K]V, k K) bool {
	_, ok := m[k]
	return ok
}
