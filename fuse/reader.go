package fuse

import (
	"context"
	"errors"
	"io"
	"sync"
)

const (
	// readaheadBytes bounds what one handle fetches ahead of a sequential
	// reader (in whole chunks, at least minAhead of them): enough to
	// keep several chunk fetches in flight, since one 4 MiB chunk takes a
	// few milliseconds and the kernel asks for at most 1 MiB at a time.
	readaheadBytes = 16 << 20
	minAhead       = 2
	maxAhead       = 16
	// seqSlack is how far from the previous read's end a read may start
	// and still count as sequential: the kernel sends its readahead
	// requests concurrently, and go-fuse may serve them out of order.
	seqSlack = 4 * maxIO
)

// reader reads a file for one handle. Random reads go straight to the
// client (which uses the node's chunk cache). Sequential reads are served
// from whole chunks held in memory, fetched ahead of the reader so that it
// never waits for the chunk it reads next; whole-chunk reads are also what
// fills the on-disk chunk cache.
type reader struct {
	n *node

	mu     sync.Mutex
	next   int64                 // end of the previous read
	streak int                   // sequential reads in a row
	win    map[int64]*aheadChunk // by chunk index
	closed bool
}

// aheadChunk is one chunk fetched (or being fetched) for the window.
type aheadChunk struct {
	gen    uint64 // node.gen when the fetch started
	done   chan struct{}
	data   []byte // the chunk's bytes up to the end of the file
	err    error
	cancel context.CancelFunc
}

func (r *reader) read(ctx context.Context, dest []byte, off int64) (int, error) {
	cs, ahead := r.plan(off, len(dest))
	if ahead == 0 {
		return r.direct(ctx, dest, off)
	}
	got, err := r.fromWindow(ctx, dest, off, cs, ahead)
	if err != nil || got == len(dest) {
		return got, err
	}
	// The window could not serve the rest (end of the file as this mount
	// knew it, or a failed prefetch): the client decides.
	more, err := r.direct(ctx, dest[got:], off+int64(got))
	return got + more, err
}

func (r *reader) direct(ctx context.Context, dest []byte, off int64) (int, error) {
	cnt, err := r.n.readAt(ctx, dest, off)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return cnt, err
}

// readAt reads the file from Strata: a frozen file through its kept chunk
// list (imagecache.go), any other asking for the chunks it reads.
func (n *node) readAt(ctx context.Context, p []byte, off int64) (int, error) {
	if n.isFrozen() {
		return n.m.frozen.readAt(ctx, n.ino(), p, off)
	}
	return n.m.cl.ReadAt(ctx, n.ino(), p, off)
}

// plan classifies a read and returns the file's chunk size and how many
// chunks to keep fetched ahead of it; 0 means a random read.
func (r *reader) plan(off int64, n int) (int64, int) {
	r.n.mu.Lock()
	cs := r.n.cs
	r.n.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	seq := off >= r.next-seqSlack && off <= r.next+seqSlack
	if !seq || cs <= 0 || r.closed {
		r.streak, r.next = 0, off+int64(n)
		r.dropLocked()
		return cs, 0
	}
	r.streak++
	r.next = max(r.next, off+int64(n))
	// Ramp up: one read at the start of a file fetches little ahead.
	limit := max(minAhead, min(maxAhead, int(readaheadBytes/cs)))
	return cs, min(r.streak, limit)
}

// fromWindow copies what it can of [off, off+len(dest)) from the window's
// chunks, waiting for them, and returns how many bytes it copied.
func (r *reader) fromWindow(ctx context.Context, dest []byte, off, cs int64, ahead int) (int, error) {
	got := 0
	for got < len(dest) {
		pos := off + int64(got)
		idx := pos / cs
		ch := r.chunk(idx, cs, ahead)
		if ch == nil {
			return got, nil
		}
		select {
		case <-ch.done:
		case <-ctx.Done():
			return got, ctx.Err()
		}
		in := pos - idx*cs
		if ch.err != nil || in >= int64(len(ch.data)) {
			return got, nil
		}
		got += copy(dest[got:], ch.data[in:])
		if int64(len(ch.data)) < cs {
			return got, nil // the chunk ends the file as it was fetched
		}
	}
	return got, nil
}

// chunk returns the window's chunk idx, starting its fetch if needed, and
// starts the fetches of the ahead chunks after it. It drops chunks behind
// (one is kept, for reads that arrive out of order) and everything when
// this mount wrote to the file since the fetches began. nil means the
// handle is closed.
func (r *reader) chunk(idx, cs int64, ahead int) *aheadChunk {
	gen := r.n.gen.Load()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	if r.win == nil {
		r.win = make(map[int64]*aheadChunk)
	}
	for i, ch := range r.win {
		if ch.gen != gen || i < idx-1 || i > idx+int64(ahead) {
			r.dropOneLocked(i, ch)
		}
	}
	ch := r.startLocked(idx, cs, gen)
	for i := idx + 1; i <= idx+int64(ahead) && i*cs < r.sizeHint(); i++ {
		r.startLocked(i, cs, gen)
	}
	return ch
}

// sizeHint is the file size this mount knows: no prefetch goes past it.
func (r *reader) sizeHint() int64 {
	r.n.mu.Lock()
	defer r.n.mu.Unlock()
	return int64(r.n.size)
}

func (r *reader) startLocked(idx, cs int64, gen uint64) *aheadChunk {
	if ch, ok := r.win[idx]; ok {
		return ch
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch := &aheadChunk{gen: gen, done: make(chan struct{}), cancel: cancel}
	r.win[idx] = ch
	go func() {
		defer close(ch.done)
		defer cancel()
		buf := make([]byte, cs)
		cnt, err := r.n.readAt(ctx, buf, idx*cs)
		if errors.Is(err, io.EOF) {
			err = nil
		}
		ch.data, ch.err = buf[:cnt], err
	}()
	return ch
}

// dropOneLocked removes chunk i from the window. A fetch still running is
// cancelled; a reader waiting on it sees the error and reads directly.
func (r *reader) dropOneLocked(i int64, ch *aheadChunk) {
	ch.cancel()
	delete(r.win, i)
}

func (r *reader) dropLocked() {
	for i, ch := range r.win {
		r.dropOneLocked(i, ch)
	}
}

// close stops the handle's prefetches and frees its window.
func (r *reader) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	r.dropLocked()
}
