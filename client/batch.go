package client

import (
	"context"
	"fmt"
	"sync"
	"syscall"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// Metadata reads (Lookup, GetAttr) are small; a unary gRPC call costs more
// CPU than the lookup itself. The batcher gathers concurrent reads into
// Batch RPCs, answered behind one leader check: a call goes out at once
// when fewer than maxReadBatches batches are in flight, so a lone caller
// waits for nothing; calls that arrive while the pipe is full queue and go
// together in the next batch. The goroutine that sends a batch also sends
// what queued behind it, so no extra goroutine is needed.
const (
	maxReadBatches = 4
	maxBatchOps    = 1024
)

type readBatcher struct {
	c *Client

	mu       sync.Mutex
	pending  []*batchCall
	inflight int
}

type batchCall struct {
	op   *stratapb.BatchOp
	done chan struct{}
	attr *stratapb.Attr
	err  error
}

func (b *readBatcher) do(ctx context.Context, op *stratapb.BatchOp) (*stratapb.Attr, error) {
	call := &batchCall{op: op, done: make(chan struct{})}
	b.mu.Lock()
	b.pending = append(b.pending, call)
	if b.inflight < maxReadBatches {
		b.inflight++
		b.mu.Unlock()
		b.sendLoop(ctx)
	} else {
		b.mu.Unlock()
	}
	select {
	case <-call.done:
		return call.attr, call.err
	case <-ctx.Done():
		// The batch may still answer; its result is dropped.
		return nil, ctx.Err()
	}
}

// sendLoop sends queued calls until the queue is empty.
func (b *readBatcher) sendLoop(ctx context.Context) {
	for {
		b.mu.Lock()
		n := min(len(b.pending), maxBatchOps)
		if n == 0 {
			b.inflight--
			b.mu.Unlock()
			return
		}
		batch := b.pending[:n:n]
		b.pending = append([]*batchCall(nil), b.pending[n:]...)
		b.mu.Unlock()
		// The batch serves other callers too: it must not die with the
		// context of the caller that happens to send it.
		b.send(context.WithoutCancel(ctx), batch)
	}
}

func (b *readBatcher) send(ctx context.Context, batch []*batchCall) {
	req := &stratapb.BatchRequest{Header: b.c.NewHeader(), Ops: make([]*stratapb.BatchOp, len(batch))}
	for i, call := range batch {
		req.Ops[i] = call.op
	}
	var resp *stratapb.BatchResponse
	err := b.c.call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		r, err := mc.Batch(ctx, req)
		resp = r
		return err
	})
	for i, call := range batch {
		switch {
		case err != nil:
			call.err = err
		case i >= len(resp.Results):
			call.err = fmt.Errorf("client: batch answered %d of %d reads: %w", len(resp.Results), len(batch), syscall.EIO)
		case resp.Results[i].Errno != 0:
			r := resp.Results[i]
			call.err = fmt.Errorf("%s: %w", r.Message, syscall.Errno(r.Errno))
		default:
			call.attr = resp.Results[i].Attr
		}
		close(call.done)
	}
}
