package fuse

import (
	"context"
	"errors"
	"syscall"

	"github.com/strata-hpc/strata/internal/rpcerr"
)

// errno turns an error of the client library into what the kernel gets.
// It is the one place where errors are converted. Client errors wrap the
// POSIX errno the metadata service or the client chose; an error without
// one (a bug, or a failure the client could not classify) becomes EIO and
// is logged, since the program that sees EIO learns nothing more.
func (m *FS) errno(op string, ino uint64, err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	switch {
	case errors.As(err, &e):
	case rpcerr.ErrnoOf(err) != 0:
		e = rpcerr.ErrnoOf(err)
	case errors.Is(err, context.Canceled):
		// The kernel interrupted the request (a signal to the caller).
		return syscall.EINTR
	default:
		e = syscall.EIO
	}
	if e == syscall.EIO {
		m.log.Warn("I/O error", "op", op, "ino", ino, "err", err)
	} else {
		m.log.Debug("error", "op", op, "ino", ino, "errno", e, "err", err)
	}
	return e
}

// fileErrno is errno for operations on an open file: the inode of an open
// file is gone only when another mount removed it (this mount keeps its
// own open files alive by renaming them away on unlink), and NFS answers
// ESTALE then, which tells the program the file went away under it.
func (m *FS) fileErrno(op string, ino uint64, err error) syscall.Errno {
	e := m.errno(op, ino, err)
	if e == syscall.ENOENT {
		return syscall.ESTALE
	}
	return e
}

// uninterruptible detaches an operation from the kernel's interrupt (a
// signal to the calling thread; the Go runtime sends them to preempt
// goroutines, so Go programs under load interrupt FUSE requests all the
// time). Every operation of the mount uses it, as libfuse does by default
// (no "intr") and as an NFS hard mount does: once a metadata change may
// have been sent, EINTR would tell the program it did not happen when it
// may have (its retry then fails with EEXIST or ENOENT), and even a read
// answered with EINTR breaks programs that call open(2) or stat(2) without
// retrying (go-fuse's posixtest OpenSymlinkRace did, under -race in CI).
// The client's own retry budget still bounds every call, and a fatal
// signal (SIGKILL) is handled by the kernel without asking the daemon.
func uninterruptible(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }
