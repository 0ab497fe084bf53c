package client

import (
	"context"
	"fmt"
	"io"
	"sync"
	"syscall"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// chunkPage is how many chunks' metadata Get asks for at a time (1 GiB of
// 4 MiB chunks): small messages, few round trips.
const chunkPage = 256

func (c *Client) getChunks(ctx context.Context, ino, first, count uint64) (*stratapb.GetChunksResponse, error) {
	req := &stratapb.GetChunksRequest{Header: c.NewHeader(), Ino: ino, FirstIndex: first, Count: count}
	var resp *stratapb.GetChunksResponse
	err := c.call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		var err error
		resp, err = mc.GetChunks(ctx, req)
		return err
	})
	c.caps.note(resp.GetCaps(), capRead)
	return resp, err
}

// fileChunkSize returns the chunk size of a regular file's attributes.
func fileChunkSize(op string, attr *stratapb.Attr) (int64, error) {
	switch attr.GetType() {
	case stratapb.FileType_REGULAR:
	case stratapb.FileType_DIRECTORY:
		return 0, errnoErr(op, inodeTarget(attr.GetIno()), syscall.EISDIR, "")
	default:
		return 0, errnoErr(op, inodeTarget(attr.GetIno()), syscall.EINVAL, "not a regular file")
	}
	if err := checkPolicy(attr.GetPolicy()); err != nil {
		return 0, errnoErr(op, inodeTarget(attr.GetIno()), syscall.EIO, "unusable stripe policy: %v", err)
	}
	return int64(attr.GetPolicy().GetChunkSize()), nil
}

// chunksFor fetches the metadata of the chunks under file range
// [off, off+n) in one GetChunks call, using the cached chunk size of the
// file (fixed at create) and checking it against the answer.
func (c *Client) chunksFor(ctx context.Context, op string, ino uint64, off int64, n int) (*stratapb.GetChunksResponse, int64, error) {
	for range 2 {
		cs, err := c.chunkSize(ctx, op, ino)
		if err != nil {
			return nil, 0, err
		}
		first := uint64(off / cs)
		last := uint64((off + int64(n) - 1) / cs)
		resp, err := c.getChunks(ctx, ino, first, last-first+1)
		if err != nil {
			return nil, 0, opErr(ctx, op, inodeTarget(ino), err)
		}
		got, err := fileChunkSize(op, resp.GetAttr())
		if err != nil {
			return nil, 0, err
		}
		if got == cs {
			return resp, cs, nil
		}
		c.chunkSizes.put(ino, got) // inode number reused: try again
	}
	return nil, 0, errnoErr(op, inodeTarget(ino), syscall.EIO, "chunk size keeps changing")
}

func (c *Client) chunkSize(ctx context.Context, op string, ino uint64) (int64, error) {
	if cs, ok := c.chunkSizes.get(ino); ok {
		return cs, nil
	}
	attr, err := c.getAttr(ctx, ino)
	if err != nil {
		return 0, opErr(ctx, op, inodeTarget(ino), err)
	}
	cs, err := fileChunkSize(op, attr)
	if err != nil {
		return 0, err
	}
	c.chunkSizes.put(ino, cs)
	return cs, nil
}

// chunkSizeCache remembers the chunk size of files (fixed at create), so
// that ReadAt and WriteAt can ask for exactly the chunks they need in one
// call. Every GetChunks answer checks the entry, so a stale one (an inode
// number reused) costs one extra call, never a wrong read. It forgets
// everything when full: cheap, and refilled on demand.
type chunkSizeCache struct {
	mu sync.Mutex
	m  map[uint64]int64
}

const maxCachedChunkSizes = 1 << 16

func (cc *chunkSizeCache) get(ino uint64) (int64, bool) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cs, ok := cc.m[ino]
	return cs, ok
}

func (cc *chunkSizeCache) put(ino uint64, cs int64) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.m == nil || len(cc.m) >= maxCachedChunkSizes {
		cc.m = make(map[uint64]int64)
	}
	cc.m[ino] = cs
}

func byIndex(chunks []*stratapb.Chunk) map[uint64]*stratapb.Chunk {
	m := make(map[uint64]*stratapb.Chunk, len(chunks))
	for _, ch := range chunks {
		m[ch.GetIndex()] = ch
	}
	return m
}

// ReadAt reads len(p) bytes of inode ino at off. Like os.File.ReadAt, it
// returns io.EOF with n < len(p) when the file ends first. Chunks are read
// in parallel; within a chunk only the data shards that hold the range are
// read.
func (c *Client) ReadAt(ctx context.Context, ino uint64, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errnoErr("read", inodeTarget(ino), syscall.EINVAL, "negative offset %d", off)
	}
	if len(p) == 0 {
		return 0, nil
	}
	resp, cs, err := c.chunksFor(ctx, "read", ino, off, len(p))
	if err != nil {
		return 0, err
	}
	size := int64(resp.GetAttr().GetSize())
	if off >= size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), size-off))
	err = c.readRange(ctx, ino, cs, size, byIndex(resp.GetChunks()), resp.GetServerAddrs(), p[:n], off)
	if err != nil {
		return 0, err
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// readRange fills p with the file bytes at off (inside the file), chunk by
// chunk, MaxInflightChunks at a time.
func (c *Client) readRange(ctx context.Context, ino uint64, cs, size int64, chunks map[uint64]*stratapb.Chunk, addrs map[uint32]string, p []byte, off int64) error {
	g := newGroup(ctx, c.cfg.MaxInflightChunks)
	end := off + int64(len(p))
	for pos := off; pos < end; {
		idx := uint64(pos / cs)
		ref := newChunkRef(ino, cs, size, idx, chunks[idx], addrs)
		next := min(end, ref.base+cs)
		dst := p[pos-off : next-off]
		inChunk := int(pos - ref.base)
		g.Go(func(ctx context.Context) error { return c.readChunkPart(ctx, ref, inChunk, dst) })
		pos = next
	}
	return g.Wait()
}

// fetched is one chunk of a Get on its way to the writer.
type fetched struct {
	buf  *[]byte
	done chan struct{}
	err  error
}

// Get writes the whole file at p (following symlinks) to w and returns the
// number of bytes written. Up to MaxInflightChunks chunks are fetched ahead
// of the one being written, so that the network and w both stay busy.
func (c *Client) Get(ctx context.Context, p string, w io.Writer) (int64, error) {
	attr, err := c.resolvePath(ctx, "get", p, true)
	if err != nil {
		return 0, err
	}
	if _, err := fileChunkSize("get", attr); err != nil {
		return 0, fmt.Errorf("client: get %s: %w", p, err)
	}
	n, err := c.copyOut(ctx, attr.GetIno(), w)
	if err != nil {
		return n, fmt.Errorf("client: get %s: %w", p, err)
	}
	return n, nil
}

// copyOut streams inode ino to w: a producer walks the chunk list and
// starts fetches, the caller writes them in order.
func (c *Client) copyOut(ctx context.Context, ino uint64, w io.Writer) (int64, error) {
	page, err := c.getChunks(ctx, ino, 0, chunkPage)
	if err != nil {
		return 0, opErr(ctx, "get", inodeTarget(ino), err)
	}
	cs, err := fileChunkSize("get", page.GetAttr())
	if err != nil {
		return 0, err
	}
	// The size seen at the start is what Get returns (close-to-open).
	size := int64(page.GetAttr().GetSize())
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	queue := make(chan *fetched, c.cfg.MaxInflightChunks)
	go c.produceFetches(ctx, ino, cs, size, page, queue)

	var written int64
	var werr error
	for f := range queue {
		<-f.done
		if werr == nil && f.err != nil {
			werr = f.err
		}
		if werr == nil {
			n, err := w.Write(*f.buf)
			written += int64(n)
			if err != nil {
				werr = fmt.Errorf("write output: %w", err)
			}
		}
		c.bufs.put(f.buf)
		if werr != nil {
			cancel() // the producer stops; the loop drains what it started
		}
	}
	if werr == nil && ctx.Err() != nil {
		werr = ctx.Err()
	}
	return written, werr
}

// produceFetches starts one fetch per chunk of the file, in order, and
// queues them for the writer; the queue's capacity bounds the read-ahead.
func (c *Client) produceFetches(ctx context.Context, ino uint64, cs, size int64, page *stratapb.GetChunksResponse, queue chan<- *fetched) {
	defer close(queue)
	nChunks := uint64((size + cs - 1) / cs)
	chunks, addrs, pageEnd := byIndex(page.GetChunks()), page.GetServerAddrs(), uint64(chunkPage)
	for idx := uint64(0); idx < nChunks; idx++ {
		f := &fetched{done: make(chan struct{})}
		if idx >= pageEnd {
			next, err := c.getChunks(ctx, ino, idx, chunkPage)
			if err != nil {
				f.err = opErr(ctx, "get", inodeTarget(ino), err)
				close(f.done)
				f.buf = c.bufs.get(0)
				queue <- f // the writer is draining; this cannot block forever
				return
			}
			chunks, addrs, pageEnd = byIndex(next.GetChunks()), next.GetServerAddrs(), idx+chunkPage
		}
		ref := newChunkRef(ino, cs, size, idx, chunks[idx], addrs)
		f.buf = c.bufs.get(int(min(cs, size-ref.base)))
		select {
		case queue <- f:
		case <-ctx.Done():
			c.bufs.put(f.buf)
			return
		}
		go func() {
			defer close(f.done)
			f.err = c.readChunkPart(ctx, ref, 0, *f.buf)
		}()
	}
}
