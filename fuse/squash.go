package fuse

import (
	"context"
	"syscall"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// Root squashing. The mount runs with default_permissions, so the kernel
// checks mode bits, owners and groups of every operation against the
// calling process, as for a local file system. It lets root (uid 0, with
// CAP_DAC_OVERRIDE) do anything, though; on a mount of a tenant, root of
// the node is not trusted with the tenant's files (as NFS's root_squash):
// with Options.RootSquash, a request from uid 0 is checked here as if it
// came from nobody (65534:65534), and what it creates belongs to nobody.
// access(2) is answered by the kernel alone and still says yes to root;
// the operation itself then fails with EACCES.

// Nobody is the uid and gid root is squashed to.
const Nobody = 65534

// Permission bits asked for, as in access(2).
const (
	mayExec  = 1
	mayWrite = 2
	mayRead  = 4
)

// squashedRoot reports whether the request comes from root on a squashing
// mount.
func (m *FS) squashedRoot(ctx context.Context) bool {
	if !m.opts.RootSquash {
		return false
	}
	c, ok := gofuse.FromContext(ctx)
	return ok && c.Uid == 0
}

// owner is the uid and gid of the process that made the request (nobody
// for squashed root): new files belong to it, not to the daemon.
func (m *FS) owner(ctx context.Context) client.Owner {
	if m.squashedRoot(ctx) {
		return client.Owner{Uid: Nobody, Gid: Nobody}
	}
	if c, ok := gofuse.FromContext(ctx); ok {
		return client.Owner{Uid: c.Uid, Gid: c.Gid}
	}
	return client.Owner{}
}

// squashCheck refuses, for squashed root, what nobody may not do on n
// (want is an OR of mayRead, mayWrite, mayExec; 0 checks the path only).
// Every directory above n must let nobody through (search permission):
// the kernel caches names and walks cached paths without asking, and it
// lets root through anything.
func (n *node) squashCheck(ctx context.Context, want uint32) syscall.Errno {
	if !n.m.squashedRoot(ctx) {
		return 0
	}
	for cur, w := n, want; cur != nil; cur, w = cur.parentNode(), mayExec {
		if w == 0 {
			continue
		}
		a, err := n.m.cl.GetAttr(ctx, cur.ino())
		if err != nil {
			return n.m.errno("access", cur.ino(), err)
		}
		if !permits(a, Nobody, Nobody, w) {
			return syscall.EACCES
		}
	}
	return 0
}

// parentNode is the directory n was found in, nil at the mount's root.
func (n *node) parentNode() *node {
	_, p := n.Parent()
	if p == nil {
		return nil
	}
	pn, _ := p.Operations().(*node)
	return pn
}

// permits is the classic Unix check: owner bits for the owner, group bits
// for the group, other bits for the rest.
func permits(a *stratapb.Attr, uid, gid, want uint32) bool {
	mode := a.GetMode()
	var bits uint32
	switch {
	case a.GetUid() == uid:
		bits = mode >> 6
	case a.GetGid() == gid:
		bits = mode >> 3
	default:
		bits = mode
	}
	return bits&7&want == want
}

// openWants is what open flags ask of the file.
func openWants(flags uint32) uint32 {
	var want uint32
	switch flags & syscall.O_ACCMODE {
	case syscall.O_RDONLY:
		want = mayRead
	case syscall.O_WRONLY:
		want = mayWrite
	default:
		want = mayRead | mayWrite
	}
	if flags&syscall.O_TRUNC != 0 {
		want |= mayWrite
	}
	return want
}

// squashSetattr checks a setattr of squashed root: changing the owner is
// refused (nobody owns nothing it could give away), mode and times need
// ownership, a size change needs write permission.
func (n *node) squashSetattr(ctx context.Context, in *gofuse.SetAttrIn) syscall.Errno {
	if !n.m.squashedRoot(ctx) {
		return 0
	}
	a, err := n.m.cl.GetAttr(ctx, n.ino())
	if err != nil {
		return n.m.errno("setattr", n.ino(), err)
	}
	_, uidSet := in.GetUID()
	_, gidSet := in.GetGID()
	_, modeSet := in.GetMode()
	_, sizeSet := in.GetSize()
	_, atimeSet := in.GetATime()
	_, mtimeSet := in.GetMTime()
	owns := a.GetUid() == Nobody
	switch {
	case uidSet && in.Owner.Uid != a.GetUid(), gidSet && in.Owner.Gid != a.GetGid() && !owns:
		return syscall.EPERM
	case modeSet && !owns:
		return syscall.EPERM
	case sizeSet && !permits(a, Nobody, Nobody, mayWrite):
		return syscall.EACCES
	case (atimeSet || mtimeSet) && !owns && !permits(a, Nobody, Nobody, mayWrite):
		return syscall.EACCES
	}
	return 0
}
