package fuse

import (
	"context"
	"slices"
)

const (
	// fullChunksPerFlush is how many complete chunks wait before they are
	// sent together: the client writes the chunks of one WriteAt in
	// parallel (MaxInflightChunks, 4 by default) and commits them in one
	// metadata command.
	fullChunksPerFlush = 4
	// maxBuffered bounds the written-but-unsent bytes of one file.
	maxBuffered = 64 << 20
)

// writeBuf holds data written through the mount and not yet sent to
// Strata, as at most one contiguous dirty range per chunk. Sequential
// writes fill whole chunks, which go out without reading anything back
// (chunks are immutable: a partial chunk write reads the rest of the old
// chunk, patches it and writes a new one). A write that does not touch
// the dirty range of its chunk first sends that range, so random writes
// degrade to write-through rather than to an unbounded map of fragments.
//
// It is per inode, not per handle: two handles of one file on one mount
// must see each other's writes, and the size the kernel is told must
// include them. It is guarded by the node's mutex.
type writeBuf struct {
	ranges map[uint64]*dirtyRange // by chunk index
	bytes  int64
}

// dirtyRange is data for bytes [lo, lo+len(data)) of one chunk.
type dirtyRange struct {
	lo   int64
	data []byte
}

func (d *dirtyRange) hi() int64 { return d.lo + int64(len(d.data)) }

// touches reports whether [off, off+n) overlaps or abuts the range.
func (d *dirtyRange) touches(off, n int64) bool { return off <= d.hi() && off+n >= d.lo }

// put lays p over the range at off, which must touch it, growing it.
func (d *dirtyRange) put(off int64, p []byte, cs int64) {
	lo, hi := min(d.lo, off), max(d.hi(), off+int64(len(p)))
	if lo < d.lo {
		data := make([]byte, hi-lo, max(hi-lo, int64(cap(d.data))))
		copy(data[d.lo-lo:], d.data)
		d.data = data
	} else if hi > d.hi() {
		// Sequential writers grow a range to the whole chunk: reserve it
		// at once instead of doubling through it.
		if int64(cap(d.data)) < hi-lo && hi-lo >= 64<<10 {
			d.data = slices.Grow(d.data, int(cs-lo)-len(d.data))
		}
		d.data = append(d.data, make([]byte, hi-d.hi())...)
	}
	d.lo = lo
	copy(d.data[off-lo:], p)
}

func (w *writeBuf) empty() bool { return len(w.ranges) == 0 }

// end is the file offset just past the last buffered byte (0 if none).
func (w *writeBuf) end(cs int64) uint64 {
	var end int64
	for idx, d := range w.ranges {
		end = max(end, int64(idx)*cs+d.hi())
	}
	return uint64(end)
}

// fullChunks counts the chunks whose whole content is buffered.
func (w *writeBuf) fullChunks(cs int64) int {
	n := 0
	for _, d := range w.ranges {
		if d.lo == 0 && d.hi() == cs {
			n++
		}
	}
	return n
}

// bufferWrite adds p at file offset off to the write buffer, sending
// what must go first or what is ready. Called with n.mu held.
func (n *node) bufferWrite(ctx context.Context, p []byte, off int64) error {
	cs := n.cs
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
			d = nil
		}
		if d == nil {
			d = &dirtyRange{lo: in}
			n.wb.ranges[idx] = d
		}
		before := len(d.data)
		d.put(in, p[:k], cs)
		n.wb.bytes += int64(len(d.data) - before)
		p, off = p[k:], off+k
	}
	switch {
	case n.wb.bytes >= maxBuffered:
		return n.flushLocked(ctx, false)
	case n.wb.fullChunks(cs) >= fullChunksPerFlush:
		return n.flushLocked(ctx, true)
	}
	return nil
}

// flushLocked sends buffered data to Strata: all of it, or with onlyFull
// just the complete chunks (a sequential writer is still filling the
// last one). Called with n.mu held. Data that fails to go out is dropped
// and the error returned, as NFS reports a failed write-back on close.
func (n *node) flushLocked(ctx context.Context, onlyFull bool) error {
	var idxs []uint64
	for idx, d := range n.wb.ranges {
		if !onlyFull || d.lo == 0 && d.hi() == n.cs {
			idxs = append(idxs, idx)
		}
	}
	return n.sendRanges(ctx, idxs)
}

// sendRanges writes the dirty ranges of chunks idxs, merging ranges that
// continue each other across chunk boundaries into one WriteAt (so whole
// chunks are written in parallel and committed together), and removes
// them from the buffer.
func (n *node) sendRanges(ctx context.Context, idxs []uint64) error {
	slices.Sort(idxs)
	var firstErr error
	for len(idxs) > 0 {
		run := 1
		for run < len(idxs) && idxs[run] == idxs[run-1]+1 &&
			n.wb.ranges[idxs[run-1]].hi() == n.cs && n.wb.ranges[idxs[run]].lo == 0 {
			run++
		}
		off, data := n.joinRun(idxs[:run])
		_, err := n.m.cl.WriteAt(ctx, n.ino(), data, off)
		// After the write, so that a prefetch that saw the old data is
		// older than the new generation (a failed write may have
		// committed some chunks too).
		n.gen.Add(1)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		idxs = idxs[run:]
	}
	return firstErr
}

// joinRun removes the ranges of consecutive chunks idxs from the buffer
// and returns them as one piece of the file.
func (n *node) joinRun(idxs []uint64) (int64, []byte) {
	first := n.wb.ranges[idxs[0]]
	off := int64(idxs[0])*n.cs + first.lo
	data := first.data
	if len(idxs) > 1 {
		data = make([]byte, 0, int64(len(idxs))*n.cs)
		for _, idx := range idxs {
			data = append(data, n.wb.ranges[idx].data...)
		}
	}
	for _, idx := range idxs {
		n.wb.bytes -= int64(len(n.wb.ranges[idx].data))
		delete(n.wb.ranges, idx)
	}
	return off, data
}
