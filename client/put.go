package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// PutOptions tune Put.
type PutOptions struct {
	// Mode is the permission bits of a new file; 0 means 0644.
	Mode uint32
	// Policy is the stripe policy of a new file; nil inherits the parent
	// directory's.
	Policy *stratapb.StripePolicy
}

const (
	// allocBatch and commitBatch bound how many chunks share one
	// AllocateChunks or CommitChunks call: each is a Raft commit, so
	// batching saves round trips without holding back much data.
	allocBatch  = 8
	commitBatch = 8
)

// Put writes everything r yields to the file at p, creating it or
// truncating it first (through a final symlink, as open(O_CREAT|O_TRUNC)
// does). The stream is cut into chunks of the file's chunk
// size; MaxInflightChunks of them are encoded and uploaded at once while
// the next is read, and the written chunks are committed in order, in
// batches, so the file grows as a valid prefix of the input. On error the
// file holds a prefix of the data.
func (c *Client) Put(ctx context.Context, p string, r io.Reader, opts PutOptions) (*stratapb.Attr, error) {
	if opts.Policy != nil {
		if err := checkPolicy(opts.Policy); err != nil {
			return nil, errnoErr("put", p, syscall.EINVAL, "%v", err)
		}
	}
	dir, name, err := c.resolveCreate(ctx, "put", p)
	if err != nil {
		return nil, err
	}
	mode := opts.Mode
	if mode == 0 {
		mode = 0o644
	}
	attr, err := c.create(ctx, dir.GetIno(), name, mode, opts.Policy)
	if err != nil {
		return nil, opErr(ctx, "put", p, err)
	}
	if _, err := fileChunkSize("put", attr); err != nil {
		return nil, fmt.Errorf("client: put %s: %w", p, err)
	}
	out, err := c.putStream(ctx, attr, r)
	if err != nil {
		return nil, fmt.Errorf("client: put %s: %w", p, err)
	}
	return out, nil
}

// putChunk is one chunk of a Put stream, from read to commit.
type putChunk struct {
	index uint64
	buf   *[]byte // pooled; data at the start, room for parity after
	size  int
}

// putPipeline holds the state shared by the stages of one Put.
type putPipeline struct {
	c      *Client
	ino    uint64
	cs     int
	bufLen int
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
	err    error
	// slots bounds the chunk buffers alive at once: one being read plus
	// MaxInflightChunks being encoded and uploaded.
	slots chan struct{}
}

func (pp *putPipeline) fail(err error) {
	pp.once.Do(func() {
		pp.err = err
		pp.cancel()
	})
}

func (pp *putPipeline) release(pc *putChunk) {
	pp.c.bufs.put(pc.buf)
	<-pp.slots
}

// putStream runs the stages: read (here), allocate, upload (one goroutine
// per chunk), commit in index order.
func (c *Client) putStream(ctx context.Context, attr *stratapb.Attr, r io.Reader) (*stratapb.Attr, error) {
	pol := attr.GetPolicy()
	cs := int(pol.GetChunkSize())
	k, m := int(pol.GetDataShards()), int(pol.GetParityShards())
	pp := &putPipeline{
		c: c, ino: attr.GetIno(), cs: cs,
		bufLen: max(stripeLen(k, m, cs), cs),
		slots:  make(chan struct{}, c.cfg.MaxInflightChunks+1),
	}
	pp.ctx, pp.cancel = context.WithCancel(ctx)
	defer pp.cancel()

	toAlloc := make(chan *putChunk, c.cfg.MaxInflightChunks)
	written := make(chan *stratapb.Chunk, c.cfg.MaxInflightChunks+1)
	go pp.allocateAndUpload(toAlloc, written)
	commitDone := make(chan *stratapb.Attr, 1)
	go func() { commitDone <- pp.commitInOrder(written) }()

	pp.readChunks(r, toAlloc)
	last := <-commitDone
	if pp.err != nil {
		return nil, pp.err
	}
	if err := pp.ctx.Err(); err != nil {
		return nil, err // the caller gave up; some chunks were not committed
	}
	if last == nil {
		return attr, nil // empty input: the truncated file is the result
	}
	return last, nil
}

// readChunks cuts r into chunks and hands them to the allocator.
func (pp *putPipeline) readChunks(r io.Reader, out chan<- *putChunk) {
	defer close(out)
	for index := uint64(0); ; index++ {
		select {
		case pp.slots <- struct{}{}:
		case <-pp.ctx.Done():
			return
		}
		pc := &putChunk{index: index, buf: pp.c.bufs.get(pp.bufLen)}
		n, err := io.ReadFull(r, (*pc.buf)[:pp.cs])
		pc.size = n
		if n > 0 {
			select {
			case out <- pc:
			case <-pp.ctx.Done():
				pp.release(pc)
				return
			}
		} else {
			pp.release(pc)
		}
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			return
		case err != nil:
			pp.fail(fmt.Errorf("read input at offset %d: %w", int64(index)*int64(pp.cs)+int64(n), err))
			return
		}
	}
}

// allocateAndUpload allocates the chunks that are ready in one call and
// starts their uploads; it closes out when every upload has ended.
func (pp *putPipeline) allocateAndUpload(in <-chan *putChunk, out chan<- *stratapb.Chunk) {
	var uploads sync.WaitGroup
	defer func() {
		uploads.Wait()
		close(out)
	}()
	for first := range in {
		batch := gatherReady(first, in, allocBatch)
		if pp.ctx.Err() != nil {
			pp.releaseAll(batch)
			continue // drain until the reader stops
		}
		sizes := make([]uint32, len(batch))
		for i, pc := range batch {
			sizes[i] = uint32(pc.size)
		}
		resp, err := pp.c.allocate(pp.ctx, pp.ino, sizes)
		if err != nil {
			pp.fail(opErr(pp.ctx, "allocate", inodeTarget(pp.ino), err))
			pp.releaseAll(batch)
			continue
		}
		for i, pc := range batch {
			a := resp.GetAllocations()[i]
			uploads.Go(func() {
				defer pp.release(pc)
				ch, err := pp.c.writeChunk(pp.ctx, pc.index, *pc.buf, pc.size, a, resp.GetServerAddrs())
				if err != nil {
					pp.fail(err)
					return
				}
				out <- ch
			})
		}
	}
}

func (pp *putPipeline) releaseAll(batch []*putChunk) {
	for _, pc := range batch {
		pp.release(pc)
	}
}

// gatherReady returns first plus whatever else is already waiting in in,
// up to limit, without blocking.
func gatherReady(first *putChunk, in <-chan *putChunk, limit int) []*putChunk {
	batch := []*putChunk{first}
	for len(batch) < limit {
		select {
		case pc, ok := <-in:
			if !ok {
				return batch
			}
			batch = append(batch, pc)
		default:
			return batch
		}
	}
	return batch
}

// commitInOrder commits written chunks as contiguous runs from index 0, in
// batches, and returns the attributes after the last commit. It drains in
// until it closes, even after a failure, so that no uploader blocks.
func (pp *putPipeline) commitInOrder(in <-chan *stratapb.Chunk) *stratapb.Attr {
	pending := make(map[uint64]*stratapb.Chunk)
	var ready []*stratapb.ChunkCommit
	var next uint64
	var last *stratapb.Attr
	flush := func() {
		if len(ready) == 0 || pp.ctx.Err() != nil {
			return
		}
		end := ready[len(ready)-1].GetChunk()
		minSize := end.GetIndex()*uint64(pp.cs) + uint64(end.GetSize())
		attr, err := pp.c.commit(pp.ctx, pp.ino, ready, minSize)
		if err != nil {
			pp.fail(opErr(pp.ctx, "commit", inodeTarget(pp.ino), err))
			return
		}
		last, ready = attr, nil
	}
	for ch := range in {
		pending[ch.GetIndex()] = ch
		for pending[next] != nil {
			ready = append(ready, &stratapb.ChunkCommit{Chunk: pending[next]})
			delete(pending, next)
			next++
		}
		if len(ready) >= commitBatch {
			flush()
		}
	}
	flush()
	if pp.ctx.Err() == nil && len(pending) > 0 {
		pp.fail(errors.New("internal error: chunks written out of sequence were never committed"))
	}
	return last
}
