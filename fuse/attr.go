package fuse

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"time"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/strata-hpc/strata/client"
)

// statfsBlock is the block size statfs reports; the figures are bytes
// divided by it.
const statfsBlock = 4096

// Statfs reports the raw capacity and free space of the live dataservers
// (see client.StatFS), cached for statfsTTL.
func (n *node) Statfs(ctx context.Context, out *gofuse.StatfsOut) syscall.Errno {
	ctx = uninterruptible(ctx)
	st, err := n.m.fsStats(ctx)
	if err != nil {
		return n.m.errno("statfs", n.ino(), err)
	}
	out.Bsize, out.Frsize = statfsBlock, statfsBlock
	out.Blocks = st.CapacityBytes / statfsBlock
	out.Bfree = st.FreeBytes / statfsBlock
	out.Bavail = out.Bfree
	// Inodes are not a limited resource in Strata; report plenty free so
	// that tools which check (df -i, some installers) are content.
	const freeInodes = 1 << 32
	out.Files = st.Inodes + freeInodes
	out.Ffree = freeInodes
	out.NameLen = 255
	return 0
}

func (m *FS) fsStats(ctx context.Context) (client.FSStats, error) {
	m.statfsMu.Lock()
	defer m.statfsMu.Unlock()
	if !m.statfsAt.IsZero() && time.Since(m.statfsAt) < statfsTTL {
		return m.statfs, nil
	}
	st, err := m.cl.StatFS(ctx)
	if err != nil {
		return client.FSStats{}, err
	}
	m.statfs, m.statfsAt = st, time.Now()
	return st, nil
}

// Getxattr answers a size query (empty dest) with the value's length and
// ERANGE when dest is too small, as getxattr(2) does.
func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	ctx = uninterruptible(ctx)
	if e := n.squashCheck(ctx, mayRead); e != 0 {
		return 0, e
	}
	var val []byte
	if attr == capsXattr {
		var e syscall.Errno
		if val, e = n.getCaps(ctx); e != 0 {
			return 0, e
		}
	} else {
		var err error
		if val, err = n.m.cl.GetXattr(ctx, n.ino(), attr); err != nil {
			return 0, n.m.errno("getxattr", n.ino(), err)
		}
	}
	if len(dest) < len(val) {
		return uint32(len(val)), syscall.ERANGE
	}
	return uint32(copy(dest, val)), 0
}

func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	ctx = uninterruptible(ctx)
	defer n.m.changing()()
	if e := n.squashCheck(ctx, mayWrite); e != 0 {
		return e
	}
	if flags&^(client.XattrCreate|client.XattrReplace) != 0 {
		return n.m.errno("setxattr", n.ino(), fmt.Errorf("fuse: setxattr flags %#x: %w", flags, syscall.EINVAL))
	}
	// data belongs to go-fuse's request buffer; the gRPC call is done
	// with it before Setxattr returns.
	defer n.forgetCaps()
	return n.m.errno("setxattr", n.ino(), n.m.cl.SetXattr(ctx, n.ino(), attr, data, flags))
}

// Listxattr returns the names NUL-terminated, one after the other.
func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	ctx = uninterruptible(ctx)
	if e := n.squashCheck(ctx, mayRead); e != 0 {
		return 0, e
	}
	names, err := n.m.cl.ListXattr(ctx, n.ino())
	if err != nil {
		return 0, n.m.errno("listxattr", n.ino(), err)
	}
	var b strings.Builder
	for _, name := range names {
		b.WriteString(name)
		b.WriteByte(0)
	}
	if len(dest) < b.Len() {
		return uint32(b.Len()), syscall.ERANGE
	}
	return uint32(copy(dest, b.String())), 0
}

func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	ctx = uninterruptible(ctx)
	defer n.m.changing()()
	defer n.forgetCaps()
	if e := n.squashCheck(ctx, mayWrite); e != 0 {
		return e
	}
	return n.m.errno("removexattr", n.ino(), n.m.cl.RemoveXattr(ctx, n.ino(), attr))
}
