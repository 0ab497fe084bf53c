package client

import (
	"context"
	"fmt"
	"strings"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/strata-hpc/strata/internal/rpcerr"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// This file wraps the Snap service of the metadata servers: special files,
// frozen trees, tree clones and removals in one metadata transaction,
// named snapshots and space accounting. Dedup is in dedup.go.

// SnapshotDir is where a tenant's snapshots are readable: /.snapshots/NAME.
const SnapshotDir = ".snapshots"

// callSnap runs one Snap RPC through the leader-following connection.
func (c *Client) callSnap(ctx context.Context, fn func(ctx context.Context, sc stratapb.SnapClient) error) error {
	return c.meta.CallConn(ctx, func(ctx context.Context, cc grpc.ClientConnInterface) error {
		return fn(ctx, stratapb.NewSnapClient(cc))
	})
}

// MknodAt creates a special file name in parent: typ is CHARDEV or
// BLOCKDEV (rdev is the device number, Linux's encoding as unix.Mkdev
// makes it), FIFO or SOCKET (rdev 0). An overlayfs whiteout is a CHARDEV
// with rdev 0.
func (c *Client) MknodAt(ctx context.Context, parent uint64, name string, typ stratapb.FileType, mode, rdev uint32, o Owner) (*stratapb.Attr, error) {
	if err := checkName("mknod", parent, name); err != nil {
		return nil, err
	}
	req := &stratapb.MknodRequest{
		Header: c.NewHeader(), Parent: parent, Name: name, Type: typ,
		Mode: mode & 0o7777, Uid: o.Uid, Gid: o.Gid, Rdev: rdev,
	}
	var attr *stratapb.Attr
	err := c.callSnap(ctx, func(ctx context.Context, sc stratapb.SnapClient) error {
		resp, err := sc.Mknod(ctx, req)
		attr = resp.GetAttr()
		return err
	})
	if err != nil {
		return nil, opErr(ctx, "mknod", entryTarget(parent, name), err)
	}
	return attr, nil
}

// Mknod is MknodAt by path; the new file belongs to o.
func (c *Client) Mknod(ctx context.Context, p string, typ stratapb.FileType, mode, rdev uint32, o Owner) (*stratapb.Attr, error) {
	dir, name, err := c.resolveParent(ctx, "mknod", p, syscall.EEXIST)
	if err != nil {
		return nil, err
	}
	return c.MknodAt(ctx, dir.GetIno(), name, typ, mode, rdev, o)
}

// Freeze makes the tree at inode ino (a directory and everything below
// it, or one file) a frozen tree, for good: every later mutation inside it
// fails with EPERM (errors.Is(err, syscall.EPERM)); reads work. Only
// RemoveTree with allowFrozen removes it. It returns how many inodes it
// froze.
func (c *Client) Freeze(ctx context.Context, ino uint64) (uint64, error) {
	req := &stratapb.FreezeRequest{Header: c.NewHeader(), Ino: ino}
	var n uint64
	err := c.callSnap(ctx, func(ctx context.Context, sc stratapb.SnapClient) error {
		resp, err := sc.Freeze(ctx, req)
		n = resp.GetInodes()
		return err
	})
	if err != nil {
		return 0, opErrDetail(ctx, "freeze", inodeTarget(ino), err)
	}
	return n, nil
}

// FreezePath is Freeze by path.
func (c *Client) FreezePath(ctx context.Context, p string) (uint64, error) {
	attr, err := c.resolvePath(ctx, "freeze", p, false)
	if err != nil {
		return 0, err
	}
	return c.Freeze(ctx, attr.GetIno())
}

// CloneTree copies the tree at inode src to dstName in directory dstParent
// in one metadata transaction, whatever its size: new inodes with the same
// attributes and xattrs, sharing the chunks (no data is copied). Hard
// links inside the tree stay links. With freeze the copy is a frozen tree
// (an image tag); without, it is writable. It returns the copy's root.
func (c *Client) CloneTree(ctx context.Context, src, dstParent uint64, dstName string, freeze bool) (*stratapb.Attr, error) {
	if err := checkName("clone", dstParent, dstName); err != nil {
		return nil, err
	}
	req := &stratapb.CloneTreeRequest{Header: c.NewHeader(), Src: src, DstParent: dstParent, DstName: dstName, Freeze: freeze}
	var attr *stratapb.Attr
	err := c.callSnap(ctx, func(ctx context.Context, sc stratapb.SnapClient) error {
		resp, err := sc.CloneTree(ctx, req)
		attr = resp.GetAttr()
		return err
	})
	if err != nil {
		return nil, opErrDetail(ctx, "clone", inodeTarget(src)+" -> "+entryTarget(dstParent, dstName), err)
	}
	return attr, nil
}

// ClonePath is CloneTree by paths; dst must not exist.
func (c *Client) ClonePath(ctx context.Context, src, dst string, freeze bool) (*stratapb.Attr, error) {
	sa, err := c.resolvePath(ctx, "clone", src, false)
	if err != nil {
		return nil, err
	}
	dir, name, err := c.resolveParent(ctx, "clone", dst, syscall.EEXIST)
	if err != nil {
		return nil, err
	}
	return c.CloneTree(ctx, sa.GetIno(), dir.GetIno(), name, freeze)
}

// TreeRemoval says what RemoveTree removed.
type TreeRemoval struct {
	Inodes      uint64 // inodes removed
	FreedChunks uint64 // chunks whose last reference went (their shards are deleted after the GC grace)
}

// RemoveTree removes name in directory parent and everything below it in
// one metadata transaction. A tree that holds frozen inodes is removed only
// with allowFrozen (removing an image); one holding snapshots never (use
// DeleteSnapshot).
func (c *Client) RemoveTree(ctx context.Context, parent uint64, name string, allowFrozen bool) (TreeRemoval, error) {
	if err := checkName("remove tree", parent, name); err != nil {
		return TreeRemoval{}, err
	}
	req := &stratapb.RemoveTreeRequest{Header: c.NewHeader(), Parent: parent, Name: name, AllowFrozen: allowFrozen}
	var out TreeRemoval
	err := c.callSnap(ctx, func(ctx context.Context, sc stratapb.SnapClient) error {
		resp, err := sc.RemoveTree(ctx, req)
		out = TreeRemoval{Inodes: resp.GetInodes(), FreedChunks: resp.GetFreedChunks()}
		return err
	})
	if err != nil {
		return TreeRemoval{}, opErrDetail(ctx, "remove tree", entryTarget(parent, name), err)
	}
	return out, nil
}

// RemoveTreePath is RemoveTree by path.
func (c *Client) RemoveTreePath(ctx context.Context, p string, allowFrozen bool) (TreeRemoval, error) {
	dir, name, err := c.resolveParent(ctx, "remove tree", p, syscall.EBUSY)
	if err != nil {
		return TreeRemoval{}, err
	}
	return c.RemoveTree(ctx, dir.GetIno(), name, allowFrozen)
}

// CreateSnapshot makes a read-only, copy-on-write snapshot of directory p
// named name (unique in the tenant; no '/'), in one metadata transaction
// whatever the tree's size. Its tree is readable at /.snapshots/NAME.
func (c *Client) CreateSnapshot(ctx context.Context, p, name string) (*stratapb.SnapshotInfo, error) {
	if err := checkSnapName("snapshot", name); err != nil {
		return nil, err
	}
	dir, err := c.resolvePath(ctx, "snapshot", p, true)
	if err != nil {
		return nil, err
	}
	req := &stratapb.CreateSnapshotRequest{Header: c.NewHeader(), Src: dir.GetIno(), Name: name}
	var info *stratapb.SnapshotInfo
	err = c.callSnap(ctx, func(ctx context.Context, sc stratapb.SnapClient) error {
		resp, err := sc.CreateSnapshot(ctx, req)
		info = resp.GetSnapshot()
		return err
	})
	if err != nil {
		return nil, opErrDetail(ctx, "snapshot", p, err)
	}
	return info, nil
}

// ListSnapshots lists the tenant's snapshots, oldest first; with p != ""
// only the snapshots of directory p.
func (c *Client) ListSnapshots(ctx context.Context, p string) ([]*stratapb.SnapshotInfo, error) {
	req := &stratapb.ListSnapshotsRequest{Header: c.NewHeader()}
	if p != "" {
		dir, err := c.resolvePath(ctx, "list snapshots", p, true)
		if err != nil {
			return nil, err
		}
		req.SourceIno = dir.GetIno()
	}
	var out []*stratapb.SnapshotInfo
	err := c.callSnap(ctx, func(ctx context.Context, sc stratapb.SnapClient) error {
		resp, err := sc.ListSnapshots(ctx, req)
		out = resp.GetSnapshots()
		return err
	})
	if err != nil {
		return nil, opErrDetail(ctx, "list snapshots", p, err)
	}
	return out, nil
}

// DeleteSnapshot removes snapshot name. Chunks that nothing else holds
// become garbage; shared ones stay.
func (c *Client) DeleteSnapshot(ctx context.Context, name string) (TreeRemoval, error) {
	if err := checkSnapName("delete snapshot", name); err != nil {
		return TreeRemoval{}, err
	}
	req := &stratapb.DeleteSnapshotRequest{Header: c.NewHeader(), Name: name}
	var out TreeRemoval
	err := c.callSnap(ctx, func(ctx context.Context, sc stratapb.SnapClient) error {
		resp, err := sc.DeleteSnapshot(ctx, req)
		out = TreeRemoval{Inodes: resp.GetInodes(), FreedChunks: resp.GetFreedChunks()}
		return err
	})
	if err != nil {
		return TreeRemoval{}, opErrDetail(ctx, "delete snapshot", name, err)
	}
	return out, nil
}

// RestoreSnapshot makes a writable copy of snapshot name at newPath (which
// must not exist), sharing its chunks, in one metadata transaction.
func (c *Client) RestoreSnapshot(ctx context.Context, name, newPath string) (*stratapb.Attr, error) {
	if err := checkSnapName("restore snapshot", name); err != nil {
		return nil, err
	}
	dir, dst, err := c.resolveParent(ctx, "restore snapshot", newPath, syscall.EEXIST)
	if err != nil {
		return nil, err
	}
	req := &stratapb.RestoreSnapshotRequest{Header: c.NewHeader(), Name: name, DstParent: dir.GetIno(), DstName: dst}
	var attr *stratapb.Attr
	err = c.callSnap(ctx, func(ctx context.Context, sc stratapb.SnapClient) error {
		resp, err := sc.RestoreSnapshot(ctx, req)
		attr = resp.GetAttr()
		return err
	})
	if err != nil {
		return nil, opErrDetail(ctx, "restore snapshot", name+" -> "+newPath, err)
	}
	return attr, nil
}

// Usage is the space accounting of the tenant: logical bytes (file sizes)
// against stored bytes (distinct chunks, all shards, after erasure coding
// and dedup), for the whole tree and, with perDir, for each top-level
// entry. It walks the tree on the leader: a du, not a counter.
func (c *Client) Usage(ctx context.Context, perDir bool) (*stratapb.UsageResponse, error) {
	req := &stratapb.UsageRequest{Header: c.NewHeader(), PerDir: perDir}
	var out *stratapb.UsageResponse
	err := c.callSnap(ctx, func(ctx context.Context, sc stratapb.SnapClient) error {
		var err error
		out, err = sc.Usage(ctx, req)
		return err
	})
	if err != nil {
		return nil, opErrDetail(ctx, "usage", "", err)
	}
	return out, nil
}

// checkSnapName validates a snapshot name: one path component.
func checkSnapName(op, name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return errnoErr(op, shortQuote(name), syscall.EINVAL, "invalid snapshot name")
	case len(name) > maxNameLen:
		return errnoErr(op, shortQuote(name), syscall.ENAMETOOLONG, "snapshot name is %d bytes, longer than %d", len(name), maxNameLen)
	case strings.ContainsAny(name, "/\x00"):
		return errnoErr(op, shortQuote(name), syscall.EINVAL, "snapshot name contains '/' or NUL")
	}
	return nil
}

// opErrDetail is opErr keeping the metadata service's message, which for
// the tree and snapshot commands says what to do (e.g. "the tree holds
// snapshots; delete them with the snapshot commands").
func opErrDetail(ctx context.Context, op, target string, err error) error {
	errno := rpcerr.ErrnoOf(err)
	msg := status.Convert(err).Message()
	if errno == 0 || msg == "" {
		return opErr(ctx, op, target, err)
	}
	if target != "" {
		op += " " + target
	}
	return fmt.Errorf("client: %s: %s: %w", op, msg, errno)
}
