package client

import (
	"context"
	"time"

	"google.golang.org/grpc"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// Cluster-wide advisory locks (the metadata service's lock table; see
// metaserver/locks.go). A mount opens a session, renews its lease well
// within the TTL, and takes and releases locks in it. Errors carry the
// errno: EAGAIN for a conflict, ENOLCK when the session is unknown or its
// lease lapsed (its locks are gone; renew and retry).

func (c *Client) lockCall(ctx context.Context, op string, fn func(ctx context.Context, lc stratapb.LockClient) error) error {
	err := c.meta.CallConn(ctx, func(ctx context.Context, cc grpc.ClientConnInterface) error {
		return fn(ctx, stratapb.NewLockClient(cc))
	})
	if err != nil {
		return opErr(ctx, op, "lock table", err)
	}
	return nil
}

// LockKeepAlive opens or renews a lock session with the given lease. It
// reports whether the session was still alive (false: new, or lapsed and
// started anew without its old locks).
func (c *Client) LockKeepAlive(ctx context.Context, session string, ttl time.Duration) (bool, error) {
	req := &stratapb.LockKeepAliveRequest{Header: c.NewHeader(), Session: session, TtlMs: ttl.Milliseconds()}
	var renewed bool
	err := c.lockCall(ctx, "lock keepalive", func(ctx context.Context, lc stratapb.LockClient) error {
		resp, err := lc.KeepAlive(ctx, req)
		renewed = resp.GetRenewed()
		return err
	})
	return renewed, err
}

// LockEndSession ends a session and releases all its locks.
func (c *Client) LockEndSession(ctx context.Context, session string) error {
	req := &stratapb.LockKeepAliveRequest{Header: c.NewHeader(), Session: session, End: true}
	return c.lockCall(ctx, "lock end", func(ctx context.Context, lc stratapb.LockClient) error {
		_, err := lc.KeepAlive(ctx, req)
		return err
	})
}

// SetLock takes, changes or (Type UNLOCK) releases a lock on inode ino,
// without waiting: a conflicting lock fails it with EAGAIN.
func (c *Client) SetLock(ctx context.Context, ino uint64, l *stratapb.FileLock) error {
	req := &stratapb.SetLockRequest{Header: c.NewHeader(), Ino: ino, Lock: l}
	return c.lockCall(ctx, "setlk", func(ctx context.Context, lc stratapb.LockClient) error {
		_, err := lc.SetLock(ctx, req)
		return err
	})
}

// GetLock returns a lock that conflicts with l, or nil.
func (c *Client) GetLock(ctx context.Context, ino uint64, l *stratapb.FileLock) (*stratapb.FileLock, error) {
	req := &stratapb.GetLockRequest{Header: c.NewHeader(), Ino: ino, Lock: l}
	var out *stratapb.FileLock
	err := c.lockCall(ctx, "getlk", func(ctx context.Context, lc stratapb.LockClient) error {
		resp, err := lc.GetLock(ctx, req)
		out = resp.GetConflict()
		return err
	})
	return out, err
}

// ReleaseLocks drops every lock of one owner (of one kind, or all kinds
// with LOCK_KIND_UNSPECIFIED) on inode ino.
func (c *Client) ReleaseLocks(ctx context.Context, ino uint64, session string, owner uint64, kind stratapb.LockKind) error {
	req := &stratapb.ReleaseLocksRequest{Header: c.NewHeader(), Ino: ino, Session: session, Owner: owner, Kind: kind}
	return c.lockCall(ctx, "release locks", func(ctx context.Context, lc stratapb.LockClient) error {
		_, err := lc.ReleaseLocks(ctx, req)
		return err
	})
}
