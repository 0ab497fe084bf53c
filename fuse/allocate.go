package fuse

import (
	"context"
	"fmt"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/proto/stratapb"
)

var _ fs.NodeAllocater = (*node)(nil)

// fallocate(2) modes this mount supports.
const (
	fallocKeepSize = 0x01 // FALLOC_FL_KEEP_SIZE
)

// Allocate implements fallocate(2) modes 0 and FALLOC_FL_KEEP_SIZE.
// Strata does not reserve space ahead of writes (chunks are written whole
// when data arrives, and a hole reads as zeros), so both modes succeed
// without reserving anything: mode 0 grows the file to off+size if it is
// shorter (the new range reads as zeros), KEEP_SIZE changes nothing. The
// other modes (punch hole, collapse or insert range, zero range) answer
// EOPNOTSUPP, which tools such as cp and fio take as "not supported here".
func (n *node) Allocate(ctx context.Context, f fs.FileHandle, off uint64, size uint64, mode uint32) syscall.Errno {
	ctx = uninterruptible(ctx)
	switch {
	case mode&^fallocKeepSize != 0:
		return syscall.EOPNOTSUPP
	case size == 0:
		return syscall.EINVAL
	case off+size < off || off+size > client.MaxFileSize:
		return syscall.EFBIG
	case mode&fallocKeepSize != 0:
		return 0
	}
	defer n.m.changing()()
	return n.m.fileErrno("fallocate", n.ino(), n.growTo(ctx, off+size))
}

// growTo makes the file at least end bytes long. Buffered writes go first,
// so that the size compared is the real one. (Another mount growing the
// file at the same moment may be cut back to end: sizes are last-writer-
// wins between mounts, as for truncate.)
func (n *node) growTo(ctx context.Context, end uint64) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.flushLocked(ctx); err != nil {
		return err
	}
	a, err := n.m.cl.GetAttr(ctx, n.ino())
	if err != nil {
		return err
	}
	if a.GetSize() >= end {
		return nil
	}
	a, err = n.m.cl.SetAttr(ctx, n.ino(), client.SetAttrIn{Valid: uint32(stratapb.SetAttrMask_SETATTR_SIZE), Size: end})
	if err != nil {
		return fmt.Errorf("fuse: fallocate to %d bytes: %w", end, err)
	}
	n.gen.Add(1)
	n.size = a.GetSize()
	return nil
}
