package client

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// The pipeline of WriteFileDedup: a reader hashes chunks ahead; a batcher
// looks each batch up and starts uploads of what is missing; a committer
// waits for a batch's uploads and commits the batches in order. So reading
// and hashing, lookups, uploads and commits of successive batches overlap,
// and the file grows as a valid prefix of the input.

// dedupPipe is the state the stages of one WriteFileDedup share.
type dedupPipe struct {
	c       *Client
	ino     uint64
	cs      int64
	bufLen  int
	ctx     context.Context
	cancel  context.CancelFunc
	once    sync.Once
	err     error
	slots   chan struct{} // chunk buffers alive
	uploads chan struct{} // chunk uploads in flight
	st      DedupStats    // the committer's
	// collect, when set, receives the commits instead of the file
	// (StoreContent: the caller commits them itself).
	collect *[]*stratapb.ChunkCommit
}

// pendingBatch is a looked-up batch whose uploads may still be running.
type pendingBatch struct {
	chunks  []*dedupChunk
	write   []*dedupChunk
	shared  []*stratapb.ChunkCommit
	written []*stratapb.Chunk // written[i] is write[i] once uploaded
	errs    []error
	wg      sync.WaitGroup
}

func (c *Client) newDedupPipe(ctx context.Context, ino uint64, cs int64, bufLen int) *dedupPipe {
	p := &dedupPipe{
		c: c, ino: ino, cs: cs, bufLen: bufLen,
		// Two batches being read and looked up, plus the uploads.
		slots:   make(chan struct{}, 2*dedupBatch+c.cfg.MaxInflightChunks),
		uploads: make(chan struct{}, c.cfg.MaxInflightChunks),
	}
	p.ctx, p.cancel = context.WithCancel(ctx)
	return p
}

func (p *dedupPipe) fail(err error) {
	p.once.Do(func() {
		p.err = err
		p.cancel()
	})
}

func (p *dedupPipe) release(dc *dedupChunk) {
	p.c.bufs.put(dc.buf)
	<-p.slots
}

// run drives the stages and returns once every batch is committed or the
// first error stopped them (with every buffer returned).
func (p *dedupPipe) run(r io.Reader) (DedupStats, error) {
	defer p.cancel()
	read := make(chan *dedupChunk, dedupBatch)
	batches := make(chan *pendingBatch, 1)
	go p.readChunks(r, read)
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.commitBatches(batches)
	}()
	p.makeBatches(read, batches)
	<-done
	if p.err != nil {
		return p.st, p.err
	}
	return p.st, p.ctx.Err()
}

// readChunks reads and hashes chunks, in order, until EOF or failure.
func (p *dedupPipe) readChunks(r io.Reader, out chan<- *dedupChunk) {
	defer close(out)
	for index := uint64(0); ; index++ {
		select {
		case p.slots <- struct{}{}:
		case <-p.ctx.Done():
			return
		}
		buf := p.c.bufs.get(p.bufLen)
		n, err := io.ReadFull(r, (*buf)[:p.cs])
		if n > 0 {
			data := (*buf)[:n]
			sum := sha256.Sum256(data)
			out <- &dedupChunk{index: index, buf: buf, size: n, hash: sum[:], zero: isZero(data)}
		} else {
			p.c.bufs.put(buf)
			<-p.slots
		}
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			return
		case err != nil:
			p.fail(fmt.Errorf("read: %w", err))
			return
		}
	}
}

// makeBatches gathers chunks into batches (what has been read, up to
// dedupBatch), looks each up and starts its uploads.
func (p *dedupPipe) makeBatches(in <-chan *dedupChunk, out chan<- *pendingBatch) {
	defer close(out)
	for dc := range in {
		batch := []*dedupChunk{dc}
	gather:
		for len(batch) < dedupBatch {
			select {
			case more, ok := <-in:
				if !ok {
					break gather
				}
				batch = append(batch, more)
			default:
				break gather
			}
		}
		if p.ctx.Err() != nil {
			p.drop(batch, in)
			return
		}
		pb, err := p.prepare(batch)
		if err != nil {
			p.fail(err)
			p.drop(batch, in)
			return
		}
		out <- pb
	}
}

// drop returns the buffers of batch and of everything still coming.
func (p *dedupPipe) drop(batch []*dedupChunk, in <-chan *dedupChunk) {
	for _, dc := range batch {
		p.release(dc)
	}
	for dc := range in {
		p.release(dc)
	}
}

// prepare looks a batch up and starts uploading its missing contents.
func (p *dedupPipe) prepare(batch []*dedupChunk) (*pendingBatch, error) {
	var todo []*dedupChunk
	var hashes [][]byte
	for _, dc := range batch {
		if !dc.zero {
			todo = append(todo, dc)
			hashes = append(hashes, dc.hash)
		}
	}
	found, err := p.c.LookupChunks(p.ctx, hashes)
	if err != nil {
		return nil, err
	}
	pb := &pendingBatch{chunks: batch}
	pb.write, pb.shared = classify(todo, found)
	if len(pb.write) == 0 {
		return pb, nil
	}
	sizes := make([]uint32, len(pb.write))
	for i, dc := range pb.write {
		sizes[i] = uint32(dc.size)
	}
	resp, err := p.c.allocate(p.ctx, p.ino, sizes)
	if err != nil {
		return nil, opErr(p.ctx, "dedup write", inodeTarget(p.ino), err)
	}
	pb.written, pb.errs = make([]*stratapb.Chunk, len(pb.write)), make([]error, len(pb.write))
	for i, dc := range pb.write {
		pb.wg.Add(1)
		go p.upload(pb, i, dc, resp.GetAllocations()[i], resp.GetServerAddrs())
	}
	return pb, nil
}

func (p *dedupPipe) upload(pb *pendingBatch, i int, dc *dedupChunk, a *stratapb.Allocation, addrs map[uint32]string) {
	defer pb.wg.Done()
	select {
	case p.uploads <- struct{}{}:
	case <-p.ctx.Done():
		pb.errs[i] = p.ctx.Err()
		return
	}
	defer func() { <-p.uploads }()
	ch, err := p.c.writeChunk(p.ctx, dc.index, (*dc.buf)[:cap(*dc.buf)], dc.size, a, addrs)
	if err == nil {
		ch.Hash = dc.hash
	}
	pb.written[i], pb.errs[i] = ch, err
}

// commitBatches commits batches in order as their uploads finish. After a
// failure it only waits for uploads and returns buffers.
func (p *dedupPipe) commitBatches(in <-chan *pendingBatch) {
	for pb := range in {
		pb.wg.Wait()
		if p.ctx.Err() == nil {
			if err := p.commit(pb); err != nil {
				p.fail(err)
			}
		}
		for _, dc := range pb.chunks {
			p.release(dc)
		}
	}
}

// commit commits one uploaded batch; if a chunk it shares was freed since
// the lookup (ESTALE), the batch is done again from the lookup.
func (p *dedupPipe) commit(pb *pendingBatch) error {
	if err := errors.Join(pb.errs...); err != nil {
		return opErr(p.ctx, "dedup write", inodeTarget(p.ino), err)
	}
	fresh := fillShared(pb.shared, pb.written)
	if p.collect != nil {
		*p.collect = append(append(*p.collect, fresh...), pb.shared...)
		p.st.add(pb.chunks, pb.written, len(pb.shared))
		return nil
	}
	last := pb.chunks[len(pb.chunks)-1]
	end := last.index*uint64(p.cs) + uint64(last.size)
	_, err := p.c.commit(p.ctx, p.ino, append(fresh, pb.shared...), end)
	switch {
	case err == nil:
		p.st.add(pb.chunks, pb.written, len(pb.shared))
		return nil
	case isErrno(err, syscall.ESTALE):
		return p.c.retryStale(p.ctx, func() error { return p.c.dedupStep(p.ctx, p.ino, p.cs, pb.chunks, &p.st) })
	}
	return opErr(p.ctx, "dedup write", inodeTarget(p.ino), err)
}
