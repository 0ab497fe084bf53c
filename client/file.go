package client

import (
	"context"
	"slices"
	"syscall"
	"time"

	"github.com/strata-hpc/strata/proto/stratapb"
)

const (
	// writeWindow is how many chunks one WriteAt step rewrites and commits
	// together, bounding memory for huge writes.
	writeWindow = 8
	// maxConflictRetries bounds how often a WriteAt or Truncate step starts
	// over when a concurrent writer replaced a chunk it was rewriting.
	maxConflictRetries = 5
)

// newChunk is a chunk to write: its new content and the id of the chunk
// it replaces (0 if none), which the commit checks.
type newChunk struct {
	index    uint64
	buf      *[]byte
	size     int
	expected uint64
}

// isConflict reports whether a commit failed because a chunk was replaced
// since it was read (the metadata service answers ESTALE, or EAGAIN).
func isConflict(err error) bool {
	return isErrno(err, syscall.ESTALE) || isErrno(err, syscall.EAGAIN)
}

// WriteAt writes p to inode ino at off. Chunks that p covers entirely are
// written fresh; a chunk it covers in part is read, patched and written as
// a new chunk (chunks are immutable), and the commit only applies if no
// one replaced the old chunk meanwhile, else the step is redone. The file
// grows to at least off+len(p). It returns how many bytes were committed.
func (c *Client) WriteAt(ctx context.Context, ino uint64, p []byte, off int64) (int, error) {
	return c.WriteAtv(ctx, ino, [][]byte{p}, off)
}

// WriteAtv is WriteAt of the concatenation of bufs, without joining them
// first: a caller that buffers a file chunk by chunk (the FUSE mount)
// saves a copy of every byte when each buffer holds one chunk's piece.
func (c *Client) WriteAtv(ctx context.Context, ino uint64, bufs [][]byte, off int64) (int, error) {
	if off < 0 {
		return 0, errnoErr("write", inodeTarget(ino), syscall.EINVAL, "negative offset %d", off)
	}
	v := vec(bufs)
	if v.len() == 0 {
		return 0, nil
	}
	cs, err := c.chunkSize(ctx, "write", ino)
	if err != nil {
		return 0, err
	}
	end := off + v.len()
	for pos := off; pos < end; {
		next := min(end, (pos/cs+writeWindow)*cs)
		err := c.retryConflicts(ctx, func() error {
			return c.writeStep(ctx, ino, v.sub(pos-off, next-off), pos)
		})
		if err != nil {
			return int(pos - off), err
		}
		pos = next
	}
	return int(v.len()), nil
}

// vec is a byte string held in several buffers.
type vec [][]byte

func (v vec) len() int64 {
	var n int64
	for _, b := range v {
		n += int64(len(b))
	}
	return n
}

// sub returns bytes [lo, hi) of v, sharing its buffers.
func (v vec) sub(lo, hi int64) vec {
	var out vec
	for _, b := range v {
		n := int64(len(b))
		if lo < n && hi > 0 {
			out = append(out, b[max(lo, 0):min(hi, n)])
		}
		lo, hi = lo-n, hi-n
	}
	return out
}

// bytes returns v as one slice: v's own buffer when it has one, else a
// copy (a range that straddles buffers).
func (v vec) bytes() []byte {
	if len(v) == 1 {
		return v[0]
	}
	return slices.Concat(v...)
}

// retryConflicts runs step again, with a short growing pause, while it
// fails with a commit conflict.
func (c *Client) retryConflicts(ctx context.Context, step func() error) error {
	pause := 2 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := step()
		if err == nil || !isConflict(err) || attempt >= maxConflictRetries {
			return err
		}
		c.log.Debug("chunk changed under a write; retrying", "attempt", attempt+1, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
		pause *= 2
	}
}

// writeStep writes data at off, which spans at most writeWindow chunks.
func (c *Client) writeStep(ctx context.Context, ino uint64, data vec, off int64) error {
	resp, cs, err := c.chunksFor(ctx, "write", ino, off, int(data.len()))
	if err != nil {
		return err
	}
	size := int64(resp.GetAttr().GetSize())
	chunks := byIndex(resp.GetChunks())
	pol := resp.GetAttr().GetPolicy()
	var todo []newChunk
	defer func() { c.releaseChunks(todo) }()
	end := off + data.len()
	for pos := off; pos < end; {
		idx := uint64(pos / cs)
		ref := newChunkRef(ino, cs, size, idx, chunks[idx], resp.GetServerAddrs())
		next := min(end, ref.base+cs)
		nc, err := c.patchChunk(ctx, ref, pol, int(pos-ref.base), data.sub(pos-off, next-off).bytes())
		if err != nil {
			return err
		}
		todo = append(todo, nc)
		pos = next
	}
	return c.replaceChunks(ctx, "write", ino, todo, uint64(end))
}

// patchChunk builds the new content of one chunk: its old bytes (zeros
// for holes) with data laid over at lo.
func (c *Client) patchChunk(ctx context.Context, ref chunkRef, pol *stratapb.StripePolicy, lo int, data []byte) (newChunk, error) {
	hi := lo + len(data)
	size := max(ref.valid, hi)
	nc := newChunk{index: uint64(ref.base) / uint64(pol.GetChunkSize()), size: size}
	if ref.ch != nil {
		nc.expected = ref.ch.GetId()
	}
	nc.buf = c.bufs.get(max(size, stripeLen(int(pol.GetDataShards()), int(pol.GetParityShards()), size)))
	b := (*nc.buf)[:size]
	if lo > 0 {
		if err := c.readChunkPart(ctx, ref, 0, b[:lo]); err != nil {
			c.bufs.put(nc.buf)
			return newChunk{}, err
		}
	}
	copy(b[lo:hi], data)
	if hi < size {
		if err := c.readChunkPart(ctx, ref, hi, b[hi:]); err != nil {
			c.bufs.put(nc.buf)
			return newChunk{}, err
		}
	}
	return nc, nil
}

func (c *Client) releaseChunks(todo []newChunk) {
	for _, nc := range todo {
		c.bufs.put(nc.buf)
	}
}

// replaceChunks writes new chunks and commits them in one transaction that
// applies only if each index still holds the chunk it was built from.
func (c *Client) replaceChunks(ctx context.Context, op string, ino uint64, todo []newChunk, minSize uint64) error {
	sizes := make([]uint32, len(todo))
	for i, nc := range todo {
		sizes[i] = uint32(nc.size)
	}
	resp, err := c.allocate(ctx, ino, sizes)
	if err != nil {
		return opErr(ctx, op, inodeTarget(ino), err)
	}
	commits := make([]*stratapb.ChunkCommit, len(todo))
	g := newGroup(ctx, c.cfg.MaxInflightChunks)
	for i, nc := range todo {
		g.Go(func(ctx context.Context) error {
			ch, err := c.writeChunk(ctx, nc.index, (*nc.buf)[:cap(*nc.buf)], nc.size, resp.GetAllocations()[i], resp.GetServerAddrs())
			commits[i] = &stratapb.ChunkCommit{Chunk: ch, ExpectedId: nc.expected, CheckExpected: true}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return opErr(ctx, op, inodeTarget(ino), err)
	}
	if _, err := c.commit(ctx, ino, commits, minSize); err != nil {
		return opErr(ctx, op, inodeTarget(ino), err)
	}
	return nil
}

// Truncate sets the size of inode ino. When it cuts a chunk in the
// middle, that chunk is first rewritten to its kept bytes, so that growing
// the file later shows zeros there, not the old data, and the chunk's
// checksum stays that of its content.
func (c *Client) Truncate(ctx context.Context, ino uint64, size uint64) error {
	attr, err := c.getAttr(ctx, ino)
	if err != nil {
		return opErr(ctx, "truncate", inodeTarget(ino), err)
	}
	cs, err := fileChunkSize("truncate", attr)
	if err != nil {
		return err
	}
	if size < attr.GetSize() && size%uint64(cs) != 0 {
		err := c.retryConflicts(ctx, func() error { return c.cutChunk(ctx, ino, size) })
		if err != nil {
			return err
		}
	}
	_, err = c.setAttr(ctx, &stratapb.SetAttrRequest{
		Ino: ino, Valid: uint32(stratapb.SetAttrMask_SETATTR_SIZE), Size: size,
	})
	if err != nil {
		return opErr(ctx, "truncate", inodeTarget(ino), err)
	}
	return nil
}

// cutChunk rewrites the chunk holding byte size to end there.
func (c *Client) cutChunk(ctx context.Context, ino uint64, size uint64) error {
	resp, cs, err := c.chunksFor(ctx, "truncate", ino, int64(size), 1)
	if err != nil {
		return err
	}
	idx := size / uint64(cs)
	ref := newChunkRef(ino, cs, int64(resp.GetAttr().GetSize()), idx, byIndex(resp.GetChunks())[idx], resp.GetServerAddrs())
	keep := int(size % uint64(cs))
	if ref.ch == nil || ref.valid <= keep {
		return nil // nothing stored past the cut
	}
	pol := resp.GetAttr().GetPolicy()
	nc := newChunk{index: idx, size: keep, expected: ref.ch.GetId()}
	nc.buf = c.bufs.get(max(keep, stripeLen(int(pol.GetDataShards()), int(pol.GetParityShards()), keep)))
	defer c.bufs.put(nc.buf)
	if err := c.readChunkPart(ctx, ref, 0, (*nc.buf)[:keep]); err != nil {
		return err
	}
	return c.replaceChunks(ctx, "truncate", ino, []newChunk{nc}, 0)
}
