package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-hpc/strata/internal/rpcerr"
)

// ErrNotEnoughShards is the error of a read that found fewer than k usable
// shards of a chunk. It wraps syscall.EIO so that FUSE reports EIO. The
// error actually returned is a *ChunkError naming what failed.
var ErrNotEnoughShards = fmt.Errorf("client: not enough shards to read chunk: %w", syscall.EIO)

// ShardFailure says why one shard of a chunk could not be used.
type ShardFailure struct {
	Shard  int    // index in the stripe
	Server uint32 // dataserver id
	Addr   string // dataserver address ("" when the cluster did not know it)
	Err    error
}

func (f ShardFailure) String() string {
	addr := f.Addr
	if addr == "" {
		addr = "address unknown"
	}
	return fmt.Sprintf("shard %d on server %d (%s): %s", f.Shard, f.Server, addr, shardReason(f.Err))
}

// ChunkError is returned when a range of a chunk cannot be read: fewer than
// k shards could be fetched, or every combination of them failed the chunk
// checksum. It unwraps to ErrNotEnoughShards (and so to syscall.EIO).
type ChunkError struct {
	Ino        uint64
	ChunkIndex uint64
	ChunkID    uint64
	FileOffset int64 // first byte of the range that was asked for
	Length     int
	Need       int // shards needed (k)
	Have       int // shards that could be used
	Failures   []ShardFailure
	Reason     string // extra context, e.g. checksum mismatch
}

func (e *ChunkError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "client: inode %d chunk %d (id %d) at file offset %d (+%d bytes): ",
		e.Ino, e.ChunkIndex, e.ChunkID, e.FileOffset, e.Length)
	if e.Reason != "" {
		b.WriteString(e.Reason)
		b.WriteString("; ")
	}
	fmt.Fprintf(&b, "%d usable shards, need %d", e.Have, e.Need)
	for i, f := range e.Failures {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(f.String())
	}
	return b.String()
}

func (e *ChunkError) Unwrap() error { return ErrNotEnoughShards }

// opErr wraps an error of operation op on target (a path or "inode N") so
// that errors.Is sees the POSIX errno the metadata service sent, or the
// caller's context error when the caller gave up.
func opErr(ctx context.Context, op, target string, err error) error {
	what := op
	if target != "" {
		what += " " + target
	}
	if errno := rpcerr.ErrnoOf(err); errno != 0 {
		return fmt.Errorf("client: %s: %w", what, errno)
	}
	if ctx.Err() != nil {
		switch status.Code(err) {
		case codes.Canceled, codes.DeadlineExceeded:
			return fmt.Errorf("client: %s: %w", what, ctx.Err())
		}
	}
	return fmt.Errorf("client: %s: %w", what, err)
}

// errnoErr builds an error for a condition the client itself detects.
func errnoErr(op, target string, errno syscall.Errno, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if msg == "" {
		return fmt.Errorf("client: %s %s: %w", op, target, errno)
	}
	return fmt.Errorf("client: %s %s: %s: %w", op, target, msg, errno)
}

func inodeTarget(ino uint64) string { return fmt.Sprintf("inode %d", ino) }

// isErrno reports whether err carries errno, locally or from the server.
func isErrno(err error, errno syscall.Errno) bool {
	return errors.Is(err, errno) || rpcerr.ErrnoOf(err) == errno
}

// shardReason describes a shard RPC error briefly, for error messages,
// logs and bad-shard reports.
func shardReason(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	var what string
	switch st.Code() {
	case codes.NotFound:
		what = "not found"
	case codes.DataLoss:
		what = "data loss (block checksum)"
	case codes.Unavailable:
		what = "unavailable"
	case codes.DeadlineExceeded:
		what = "timed out"
	default:
		what = strings.ToLower(st.Code().String())
	}
	return what + ": " + st.Message()
}

func (c *Client) chunkError(ref chunkRef, off, n, need, have int, fails []ShardFailure, reason string) error {
	return &ChunkError{
		Ino: ref.ino, ChunkIndex: ref.ch.GetIndex(), ChunkID: ref.ch.GetId(),
		FileOffset: ref.base + int64(off), Length: n,
		Need: need, Have: have, Failures: fails, Reason: reason,
	}
}

// reportFailures tells the metadata service, in the background, about
// every shard a read found bad or missing, so that it schedules repair.
// Nothing is reported when the caller gave up: the failures may be nothing
// but the cancellation.
func (c *Client) reportFailures(ctx context.Context, ref chunkRef, off int, fails []ShardFailure) {
	if len(fails) == 0 || ctx.Err() != nil {
		return
	}
	for _, f := range fails {
		if errors.Is(f.Err, errUnplaced) {
			continue // the metadata service knows; repair is already due
		}
		if denied(f.Err) {
			continue // a refused capability says nothing about the shard
		}
		c.log.Warn("bad shard", "ino", ref.ino, "chunk", ref.ch.GetId(), "index", ref.ch.GetIndex(),
			"offset", ref.base+int64(off), "shard", f.Shard, "server", f.Server, "addr", f.Addr, "err", f.Err)
		c.reports.report(ref.ino, ref.ch.GetId(), f.Shard, f.Server, shardReason(f.Err))
	}
}

func sortedFailures(m map[int]ShardFailure) []ShardFailure {
	out := make([]ShardFailure, 0, len(m))
	for _, f := range m {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b ShardFailure) int { return a.Shard - b.Shard })
	return out
}
