package client

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-hpc/strata/internal/rpcerr"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// Shard capabilities (issue 8). Every layout the metadata service hands
// out (AllocateChunks, GetChunks) carries a signed capability per chunk;
// the dataservers serve a shard request only with one. The client keeps
// them by chunk id, attaches them to every shard request, and refreshes a
// read capability (by asking for the chunk's layout again) once half its
// lifetime has passed by the client's own clock, or when a dataserver
// refuses it. The local chunk cache needs none: it holds data already
// read.

// maxCaps bounds the capabilities kept; past it, expired ones are dropped,
// and if that is not enough, all (they are fetched again on demand).
const maxCaps = 1 << 16

type capEntry struct {
	tok       []byte
	refreshAt time.Time // half the lifetime: ask for a fresh one
	expireAt  time.Time // by this client's clock
}

// capKind tells read capabilities (from GetChunks) from write ones (from
// AllocateChunks): a client that reads back what it just wrote must not
// present the write capability.
type capKind bool

const (
	capRead  capKind = false
	capWrite capKind = true
)

type capKey struct {
	chunk uint64
	kind  capKind
}

// capStore holds the client's capabilities by chunk id and kind. The zero
// value is ready to use.
type capStore struct {
	mu       sync.Mutex
	m        map[capKey]capEntry
	inflight map[uint64]chan struct{} // read refreshes running, by chunk id
}

// note keeps the capabilities of a layout response.
func (s *capStore) note(caps *stratapb.Capabilities, kind capKind) {
	if len(caps.GetByChunk()) == 0 {
		return
	}
	now := time.Now()
	ttl := time.Duration(caps.GetTtlMs()) * time.Millisecond
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[capKey]capEntry)
	}
	if len(s.m)+len(caps.GetByChunk()) > maxCaps {
		s.pruneLocked(now)
	}
	for id, tok := range caps.GetByChunk() {
		s.m[capKey{id, kind}] = capEntry{tok: tok, refreshAt: now.Add(ttl / 2), expireAt: now.Add(ttl)}
	}
}

func (s *capStore) pruneLocked(now time.Time) {
	for id, e := range s.m {
		if now.After(e.expireAt) {
			delete(s.m, id)
		}
	}
	if len(s.m) > maxCaps/2 {
		clear(s.m)
	}
}

// get returns the capability of kind for chunk and whether it is still
// fresh.
func (s *capStore) get(chunk uint64, kind capKind) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[capKey{chunk, kind}]
	return e.tok, ok && time.Now().Before(e.refreshAt)
}

// forget drops chunk's read capability (a dataserver refused it).
func (s *capStore) forget(chunk uint64) {
	s.mu.Lock()
	delete(s.m, capKey{chunk, capRead})
	s.mu.Unlock()
}

// refresh runs fetch for chunk unless another goroutine is already
// refreshing it, in which case it waits for that one: the shards of a
// chunk are read in parallel, and one GetChunks serves them all.
func (s *capStore) refresh(ctx context.Context, chunk uint64, fetch func() error) error {
	s.mu.Lock()
	if ch, ok := s.inflight[chunk]; ok {
		s.mu.Unlock()
		select {
		case <-ch:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if s.inflight == nil {
		s.inflight = make(map[uint64]chan struct{})
	}
	ch := make(chan struct{})
	s.inflight[chunk] = ch
	s.mu.Unlock()
	err := fetch()
	s.mu.Lock()
	delete(s.inflight, chunk)
	s.mu.Unlock()
	close(ch)
	return err
}

// readCap returns a fresh read capability for ref's chunk, asking the
// metadata service for the chunk's layout again when the one held is old
// (a long read, a layout cached by an open file) or missing.
func (c *Client) readCap(ctx context.Context, ref chunkRef) ([]byte, error) {
	id := ref.ch.GetId()
	if tok, fresh := c.caps.get(id, capRead); fresh {
		return tok, nil
	}
	err := c.caps.refresh(ctx, id, func() error {
		_, err := c.getChunks(ctx, ref.ino, ref.ch.GetIndex(), 1)
		return err
	})
	tok, _ := c.caps.get(id, capRead)
	if tok == nil {
		if err != nil {
			return nil, fmt.Errorf("refresh capability of chunk %d: %w", id, err)
		}
		// The file no longer has this chunk at that index (it was
		// overwritten since the layout was fetched).
		return nil, fmt.Errorf("no capability for chunk %d: the file changed: %w", id, syscall.ESTALE)
	}
	return tok, nil
}

// denied reports whether a dataserver refused the request's capability.
func denied(err error) bool { return status.Code(err) == codes.PermissionDenied }

// keysPending reports whether a dataserver has no capability keys yet: it
// has just started and not yet registered with the metadata service.
func keysPending(err error) bool {
	return status.Code(err) == codes.Unavailable && rpcerr.ErrnoOf(err) == syscall.EAGAIN
}

// keysWait is how long a shard request waits for a freshly started
// dataserver to get its keys (one registration, about a heartbeat).
const keysWait = 5 * time.Second

// retryKeysPending runs call again while the dataserver says it has no
// keys yet, for up to keysWait.
func retryKeysPending[T any](ctx context.Context, call func() (T, error)) (T, error) {
	deadline := time.Now().Add(keysWait)
	delay := 20 * time.Millisecond
	for {
		v, err := call()
		if !keysPending(err) || time.Now().After(deadline) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(delay):
		}
		delay = min(2*delay, 500*time.Millisecond)
	}
}
