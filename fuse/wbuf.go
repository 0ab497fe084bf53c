package fuse

import (
	"context"
	"slices"
	"sync"
)

const (
	// fullChunksPerFlush is how many complete chunks wait before they are
	// sent together: the client writes the chunks of one WriteAt in
	// parallel (MaxInflightChunks, 4 by default) and commits them in one
	// metadata command.
	fullChunksPerFlush = 4
	// maxSends is how many such batches of full chunks go out in the
	// background at once while the writer goes on filling the next: the
	// FUSE write, the uploads and the commits overlap instead of taking
	// turns.
	maxSends = 2
	// maxBuffered bounds the written-but-unsent bytes of one file.
	maxBuffered = 64 << 20
	// bigRange is the size from which a dirty range lives in a pooled
	// buffer of a whole chunk (sequential writers reach it at once).
	bigRange = 64 << 10
)

// writeBuf holds data written through the mount and not yet sent to
// Strata, as at most one contiguous dirty range per chunk. Sequential
// writes fill whole chunks, which go out without reading anything back
// (chunks are immutable: a partial chunk write reads the rest of the old
// chunk, patches it and writes a new one). A write that does not touch
// the dirty range of its chunk first sends that range, so random writes
// degrade to write-through rather than to an unbounded map of fragments.
//
// Batches of full chunks are sent in the background (at most maxSends at
// once); everything else that sends data (close, fsync, truncate, a read,
// a random write) first waits for those, so that writes reach Strata in
// order, and reports their error. As with NFS, a failed background write
// is reported by the next write, fsync or close of the file.
//
// It is per inode, not per handle: two handles of one file on one mount
// must see each other's writes, and the size the kernel is told must
// include them. It is guarded by the node's mutex.
type writeBuf struct {
	ranges map[uint64]*dirtyRange // by chunk index
	bytes  int64

	sends    int             // background batches in flight
	sending  map[uint64]bool // their chunk indexes
	sendEnd  uint64          // file offset past their last byte
	sendErr  error           // first error of one, not yet reported
	sendDone *sync.Cond      // on the node's mutex; a batch ended
}

// dirtyRange is data for bytes [lo, hi) of one chunk, held in buf from
// chunk offset base on. Small ranges have a buffer of their own; ranges
// of bigRange and more a pooled buffer of the whole chunk (base 0), so a
// sequential writer copies each byte once and allocates nothing.
type dirtyRange struct {
	lo, hi int64
	base   int64
	buf    []byte
	pooled *[]byte
}

func (d *dirtyRange) data() []byte { return d.buf[d.lo-d.base : d.hi-d.base] }

// touches reports whether [off, off+n) overlaps or abuts the range.
func (d *dirtyRange) touches(off, n int64) bool { return off <= d.hi && off+n >= d.lo }

// put lays p over the range at off, which must touch it, growing it.
func (d *dirtyRange) put(off int64, p []byte, cs int64, pool *bufPool) {
	lo, hi := min(d.lo, off), max(d.hi, off+int64(len(p)))
	switch {
	case d.pooled == nil && hi-lo >= bigRange:
		bp := pool.get(int(cs))
		copy((*bp)[d.lo:d.hi], d.data())
		d.pooled, d.buf, d.base = bp, (*bp)[:cs], 0
	case d.pooled != nil:
	case lo < d.lo:
		buf := make([]byte, hi-lo)
		copy(buf[d.lo-lo:], d.data())
		d.buf, d.base = buf, lo
	case hi > d.hi:
		d.buf = append(d.buf[:d.hi-d.base], make([]byte, hi-d.hi)...)
	}
	d.lo, d.hi = lo, hi
	copy(d.buf[off-d.base:], p)
}

func (d *dirtyRange) release(pool *bufPool) {
	if d.pooled != nil {
		pool.put(d.pooled)
		d.pooled, d.buf = nil, nil
	}
}

// bufPool recycles whole-chunk buffers: a fresh 4 MiB buffer costs page
// faults and zeroing, which showed as a tenth of the write path's CPU.
type bufPool struct {
	mu    sync.Mutex
	pools map[int]*sync.Pool // by size
}

func (bp *bufPool) pool(size int) *sync.Pool {
	bp.mu.Lock()
	defer bp.mu.Unlock()
	if bp.pools == nil {
		bp.pools = make(map[int]*sync.Pool)
	}
	p := bp.pools[size]
	if p == nil {
		p = &sync.Pool{New: func() any { b := make([]byte, size); return &b }}
		bp.pools[size] = p
	}
	return p
}

func (bp *bufPool) get(size int) *[]byte { return bp.pool(size).Get().(*[]byte) }
func (bp *bufPool) put(b *[]byte)        { bp.pool(len(*b)).Put(b) }

// quiet reports whether nothing is buffered or being sent.
func (w *writeBuf) quiet() bool { return len(w.ranges) == 0 && w.sends == 0 }

// end is the file offset just past the last buffered or in-flight byte
// (0 if none).
func (w *writeBuf) end(cs int64) uint64 {
	var end int64
	for idx, d := range w.ranges {
		end = max(end, int64(idx)*cs+d.hi)
	}
	if w.sends > 0 {
		return max(uint64(end), w.sendEnd)
	}
	return uint64(end)
}

// fullChunks lists the chunks whose whole content is buffered.
func (w *writeBuf) fullChunks(cs int64) []uint64 {
	var idxs []uint64
	for idx, d := range w.ranges {
		if d.lo == 0 && d.hi == cs {
			idxs = append(idxs, idx)
		}
	}
	return idxs
}

// bufferWrite adds p at file offset off to the write buffer, sending
// what must go first or what is ready. Called with n.mu held.
func (n *node) bufferWrite(ctx context.Context, p []byte, off int64) error {
	cs := n.cs
	if err := n.takeSendErrLocked(); err != nil {
		return err
	}
	if n.wb.ranges == nil {
		n.wb.ranges = make(map[uint64]*dirtyRange)
	}
	for len(p) > 0 {
		idx := uint64(off / cs)
		in := off % cs
		k := min(int64(len(p)), cs-in)
		d := n.wb.ranges[idx]
		if d != nil && !d.touches(in, k) {
			if err := n.sendRanges(ctx, []uint64{idx}); err != nil {
				return err
			}
			// sendRanges may have waited (releasing n.mu), and another
			// write to this chunk may have been buffered meanwhile: look
			// again.
			continue
		}
		if d == nil {
			d = &dirtyRange{lo: in, hi: in, base: in}
			n.wb.ranges[idx] = d
		}
		before := d.hi - d.lo
		d.put(in, p[:k], cs, &n.m.bufs)
		n.wb.bytes += d.hi - d.lo - before
		p, off = p[k:], off+k
	}
	if n.wb.bytes >= maxBuffered {
		return n.flushLocked(ctx)
	}
	if len(n.wb.fullChunks(cs)) >= fullChunksPerFlush {
		n.sendInBackgroundLocked(ctx)
	}
	return nil
}

// sendInBackgroundLocked takes the full chunks out of the buffer and
// sends them from a goroutine, after waiting for a free send slot (and
// for any earlier send of one of these chunks, so that the newer content
// commits last). The wait releases n.mu, so the full chunks are listed
// again after it: other writes may have changed the buffer.
func (n *node) sendInBackgroundLocked(ctx context.Context) {
	if n.wb.sendDone == nil {
		n.wb.sendDone = sync.NewCond(&n.mu)
		n.wb.sending = make(map[uint64]bool)
	}
	var idxs []uint64
	for {
		idxs = n.wb.fullChunks(n.cs)
		if len(idxs) == 0 {
			return
		}
		if n.wb.sends < maxSends && !slices.ContainsFunc(idxs, func(i uint64) bool { return n.wb.sending[i] }) {
			break
		}
		n.wb.sendDone.Wait()
	}
	slices.Sort(idxs)
	// Full chunks in a row join into one WriteAtv (written in parallel,
	// committed together); the batch is one run in the usual sequential
	// case, else several.
	runs := n.takeRuns(idxs)
	for _, idx := range idxs {
		n.wb.sending[idx] = true
	}
	last := idxs[len(idxs)-1]
	n.wb.sendEnd = max(n.wb.sendEnd, (last+1)*uint64(n.cs))
	n.wb.sends++
	ctx = context.WithoutCancel(ctx)
	go func() {
		err := n.writeRuns(ctx, runs)
		n.mu.Lock()
		defer n.mu.Unlock()
		for _, idx := range idxs {
			delete(n.wb.sending, idx)
		}
		n.wb.sends--
		if err != nil && n.wb.sendErr == nil {
			n.wb.sendErr = err
		}
		n.wb.sendDone.Broadcast()
	}()
}

// waitSendsLocked waits until no background send is in flight and
// returns (and forgets) the first error one had.
func (n *node) waitSendsLocked() error {
	for n.wb.sends > 0 {
		n.wb.sendDone.Wait()
	}
	return n.takeSendErrLocked()
}

func (n *node) takeSendErrLocked() error {
	err := n.wb.sendErr
	n.wb.sendErr = nil
	return err
}

// flushLocked sends everything buffered to Strata, after the background
// sends, and returns the first error of any. Called with n.mu held. Data
// that fails to go out is dropped and the error returned, as NFS reports
// a failed write-back on close.
func (n *node) flushLocked(ctx context.Context) error {
	return n.sendRanges(ctx, nil)
}

// sendRanges waits for the background sends, then writes the dirty
// ranges of chunks idxs (nil: all of them) that are still buffered after
// the wait, merging ranges that continue each other across chunk
// boundaries into one WriteAtv (so whole chunks are written in parallel
// and committed together), and removes them from the buffer.
func (n *node) sendRanges(ctx context.Context, idxs []uint64) error {
	waitErr := n.waitSendsLocked()
	var present []uint64
	for idx := range n.wb.ranges {
		if idxs == nil || slices.Contains(idxs, idx) {
			present = append(present, idx)
		}
	}
	slices.Sort(present)
	err := n.writeRuns(ctx, n.takeRuns(present))
	if waitErr != nil {
		return waitErr
	}
	return err
}

// run is consecutive dirty ranges, one piece of the file.
type run struct {
	off    int64
	ranges []*dirtyRange
}

// takeRuns removes the ranges of chunks idxs (sorted) from the buffer,
// grouped into runs of ranges that continue each other.
func (n *node) takeRuns(idxs []uint64) []run {
	var runs []run
	var prev *dirtyRange
	for i, idx := range idxs {
		d := n.wb.ranges[idx]
		delete(n.wb.ranges, idx)
		n.wb.bytes -= d.hi - d.lo
		if i > 0 && idxs[i-1] == idx-1 && prev.hi == n.cs && d.lo == 0 {
			r := &runs[len(runs)-1]
			r.ranges = append(r.ranges, d)
		} else {
			runs = append(runs, run{off: int64(idx)*n.cs + d.lo, ranges: []*dirtyRange{d}})
		}
		prev = d
	}
	return runs
}

// writeRuns sends runs and returns their buffers to the pool. It does not
// need n.mu (background sends run without it).
func (n *node) writeRuns(ctx context.Context, runs []run) error {
	var firstErr error
	for _, r := range runs {
		bufs := make([][]byte, len(r.ranges))
		for i, d := range r.ranges {
			bufs[i] = d.data()
		}
		done := n.m.changing()
		_, err := n.m.cl.WriteAtv(ctx, n.ino(), bufs, r.off)
		done()
		// After the write, so that a prefetch that saw the old data is
		// older than the new generation (a failed write may have
		// committed some chunks too).
		n.gen.Add(1)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		for _, d := range r.ranges {
			d.release(&n.m.bufs)
		}
	}
	return firstErr
}
