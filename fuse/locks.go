package fuse

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"math"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// Cluster-wide locks. flock(2) and fcntl(2) locks on the mount are the
// metadata service's (see metaserver/locks.go), not the kernel's: the
// mount asks the kernel to forward them (EnableLocks) and takes them in
// the cluster's lock table under a session of its own, whose lease it
// renews in the background. So a lock excludes processes on every mount,
// and survives a metadata leader failover (the table is raft state).
//
// Release follows Linux:
//   - POSIX (fcntl) locks belong to a process (the kernel's lock owner) and
//     go when that process closes any descriptor of the file: the kernel
//     sends FLUSH with the owner, and the mount drops that owner's locks
//     on the file (as libfuse does).
//   - flock and open-file-description (F_OFD_SETLK) locks belong to an
//     open file description (a FUSE handle) and go when its last
//     descriptor is closed (FUSE RELEASE).
//   - A mount that stops renewing (node dead, cut off, daemon killed) loses
//     all its locks when its lease lapses (Options.LockTTL).
//
// F_SETLKW waits by polling the lock table (10 ms, doubling to 250 ms);
// a signal to the waiting process interrupts the wait with EINTR.

const (
	defaultLockTTL = 10 * time.Second
	lockPollMax    = 250 * time.Millisecond
	// offsetMax is the kernel's "to the end of the file" (OFFSET_MAX).
	offsetMax = math.MaxInt64
)

var (
	_ fs.NodeGetlker  = (*node)(nil)
	_ fs.NodeSetlker  = (*node)(nil)
	_ fs.NodeSetlkwer = (*node)(nil)
)

// lockSession is the mount's session in the lock table, opened on first
// use.
type lockSession struct {
	m   *FS
	ttl time.Duration
	id  string

	// flushOwners maps the cancel channel of a FLUSH request being served
	// to its lock owner: go-fuse's node API does not pass the owner to
	// Flush, so the raw layer (ownerRaw) puts it here for the node's Flush
	// to find, keyed by what both see.
	flushOwners sync.Map // chan struct{} -> uint64

	mu      sync.Mutex
	started bool
	stop    chan struct{}
	done    chan struct{}
	posix   map[uint64]map[uint64]bool // ino -> owners with POSIX locks taken here
}

func newLockSession(m *FS, ttl time.Duration) *lockSession {
	if ttl <= 0 {
		ttl = defaultLockTTL
	}
	var b [8]byte
	rand.Read(b[:])
	return &lockSession{m: m, ttl: ttl, id: "mount-" + hex.EncodeToString(b[:]),
		stop: make(chan struct{}), done: make(chan struct{}), posix: map[uint64]map[uint64]bool{}}
}

// ensure opens the session and starts renewing it.
func (ls *lockSession) ensure(ctx context.Context) error {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.started {
		return nil
	}
	if _, err := ls.m.cl.LockKeepAlive(ctx, ls.id, ls.ttl); err != nil {
		return err
	}
	ls.started = true
	go ls.renew()
	return nil
}

// renew keeps the lease alive, three times per TTL, so that a failover
// (a few seconds of retries) does not let it lapse.
func (ls *lockSession) renew() {
	defer close(ls.done)
	t := time.NewTicker(ls.ttl / 4)
	defer t.Stop()
	for {
		select {
		case <-ls.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), ls.ttl/2)
		renewed, err := ls.m.cl.LockKeepAlive(ctx, ls.id, ls.ttl)
		cancel()
		switch {
		case err != nil:
			ls.m.log.Warn("renewing the lock lease failed; retrying", "session", ls.id, "err", err)
		case !renewed:
			ls.m.log.Error("the lock lease had lapsed: locks held through this mount were released", "session", ls.id)
		}
	}
}

// close ends the session, releasing its locks.
func (ls *lockSession) close() {
	ls.mu.Lock()
	started := ls.started
	ls.started = false
	ls.mu.Unlock()
	if !started {
		return
	}
	close(ls.stop)
	<-ls.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ls.m.cl.LockEndSession(ctx, ls.id); err != nil {
		ls.m.log.Warn("ending the lock session; its locks go when the lease lapses", "session", ls.id, "err", err)
	}
}

func (ls *lockSession) notePosix(ino, owner uint64) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.posix[ino] == nil {
		ls.posix[ino] = map[uint64]bool{}
	}
	ls.posix[ino][owner] = true
}

// takePosix reports whether owner took POSIX locks on ino through this
// mount, and forgets it.
func (ls *lockSession) takePosix(ino, owner uint64) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if !ls.posix[ino][owner] {
		return false
	}
	delete(ls.posix[ino], owner)
	if len(ls.posix[ino]) == 0 {
		delete(ls.posix, ino)
	}
	return true
}

// toLock converts the kernel's lock to the lock table's.
func (ls *lockSession) toLock(owner uint64, lk *gofuse.FileLock, flags uint32) *stratapb.FileLock {
	l := &stratapb.FileLock{Session: ls.id, Owner: owner, Kind: stratapb.LockKind_LOCK_KIND_POSIX,
		Start: lk.Start, End: lk.End, Pid: lk.Pid}
	if flags&gofuse.FUSE_LK_FLOCK != 0 {
		l.Kind = stratapb.LockKind_LOCK_KIND_FLOCK
	}
	if l.End >= offsetMax {
		l.End = math.MaxUint64
	}
	switch lk.Typ {
	case syscall.F_RDLCK:
		l.Type = stratapb.LockType_LOCK_TYPE_READ
	case syscall.F_WRLCK:
		l.Type = stratapb.LockType_LOCK_TYPE_WRITE
	default:
		l.Type = stratapb.LockType_LOCK_TYPE_UNLOCK
	}
	return l
}

func (n *node) Getlk(ctx context.Context, f fs.FileHandle, owner uint64, lk *gofuse.FileLock, flags uint32, out *gofuse.FileLock) syscall.Errno {
	ls := n.m.locks
	c, err := n.m.cl.GetLock(ctx, n.ino(), ls.toLock(owner, lk, flags))
	if err != nil {
		return n.m.errno("getlk", n.ino(), err)
	}
	*out = gofuse.FileLock{Typ: syscall.F_UNLCK}
	if c != nil {
		out.Start, out.End, out.Pid = c.Start, c.End, c.Pid
		if c.End > offsetMax {
			out.End = offsetMax
		}
		out.Typ = syscall.F_RDLCK
		if c.Type == stratapb.LockType_LOCK_TYPE_WRITE {
			out.Typ = syscall.F_WRLCK
		}
		if c.Session != ls.id {
			out.Pid = 0 // a process on another node: no pid that means anything here
		}
	}
	return 0
}

func (n *node) Setlk(ctx context.Context, f fs.FileHandle, owner uint64, lk *gofuse.FileLock, flags uint32) syscall.Errno {
	return n.m.errno("setlk", n.ino(), n.setLock(uninterruptible(ctx), f, owner, lk, flags))
}

// Setlkw waits for the lock by polling until it is granted or the caller
// is interrupted.
func (n *node) Setlkw(ctx context.Context, f fs.FileHandle, owner uint64, lk *gofuse.FileLock, flags uint32) syscall.Errno {
	wait := 10 * time.Millisecond
	for {
		err := n.setLock(uninterruptible(ctx), f, owner, lk, flags)
		if !errors.Is(err, syscall.EAGAIN) {
			return n.m.errno("setlkw", n.ino(), err)
		}
		select {
		case <-ctx.Done():
			return syscall.EINTR
		case <-time.After(wait):
		}
		wait = min(2*wait, lockPollMax)
	}
}

func (n *node) setLock(ctx context.Context, f fs.FileHandle, owner uint64, lk *gofuse.FileLock, flags uint32) error {
	ls := n.m.locks
	if err := ls.ensure(ctx); err != nil {
		return err
	}
	l := ls.toLock(owner, lk, flags)
	err := n.m.cl.SetLock(ctx, n.ino(), l)
	if errors.Is(err, syscall.ENOLCK) {
		// The lease lapsed (this node was cut off longer than the TTL):
		// the locks it held are gone. Start the session anew and retry.
		if _, err = n.m.cl.LockKeepAlive(ctx, ls.id, ls.ttl); err == nil {
			err = n.m.cl.SetLock(ctx, n.ino(), l)
		}
	}
	if err != nil || l.Type == stratapb.LockType_LOCK_TYPE_UNLOCK {
		return err
	}
	if l.Kind == stratapb.LockKind_LOCK_KIND_FLOCK {
		if h, ok := f.(*handle); ok {
			h.flockOwner.Store(owner)
		}
	} else {
		ls.notePosix(n.ino(), owner)
		if h, ok := f.(*handle); ok {
			h.notePosixOwner(owner)
		}
	}
	return nil
}

// notePosixOwner remembers a POSIX lock owner that locked through this
// handle: an open-file-description lock (F_OFD_SETLK) is owned by the
// handle itself and goes when the handle is released.
func (h *handle) notePosixOwner(owner uint64) {
	h.lockMu.Lock()
	defer h.lockMu.Unlock()
	if !slices.Contains(h.posixOwners, owner) {
		h.posixOwners = append(h.posixOwners, owner)
	}
}

// releasePosix drops the POSIX locks of the process closing a descriptor
// (owner from the FLUSH request), if it took any through this mount.
func (n *node) releasePosix(ctx context.Context, rawCtx context.Context) error {
	fc, ok := rawCtx.(*gofuse.Context)
	if !ok {
		return nil
	}
	v, ok := n.m.locks.flushOwners.Load(fc.Cancel)
	if !ok || !n.m.locks.takePosix(n.ino(), v.(uint64)) {
		return nil
	}
	return n.m.cl.ReleaseLocks(ctx, n.ino(), n.m.locks.id, v.(uint64), stratapb.LockKind_LOCK_KIND_POSIX)
}

// releaseLocks drops, when the last descriptor of a handle is closed, its
// flock and the POSIX locks still held by owners that locked through it
// (open-file-description locks; a process's own were dropped at FLUSH).
func (h *handle) releaseLocks(ctx context.Context) error {
	n := h.n
	var errs []error
	if owner := h.flockOwner.Load(); owner != 0 {
		errs = append(errs, n.m.cl.ReleaseLocks(ctx, n.ino(), n.m.locks.id, owner, stratapb.LockKind_LOCK_KIND_FLOCK))
	}
	h.lockMu.Lock()
	owners := h.posixOwners
	h.posixOwners = nil
	h.lockMu.Unlock()
	for _, owner := range owners {
		if n.m.locks.takePosix(n.ino(), owner) {
			errs = append(errs, n.m.cl.ReleaseLocks(ctx, n.ino(), n.m.locks.id, owner, stratapb.LockKind_LOCK_KIND_POSIX))
		}
	}
	return errors.Join(errs...)
}

// ownerRaw passes FLUSH's lock owner to the node API (see flushOwners).
type ownerRaw struct {
	gofuse.RawFileSystem
	ls *lockSession
}

func (r *ownerRaw) Flush(cancel <-chan struct{}, in *gofuse.FlushIn) gofuse.Status {
	r.ls.flushOwners.Store(cancel, in.LockOwner)
	defer r.ls.flushOwners.Delete(cancel)
	return r.RawFileSystem.Flush(cancel, in)
}
