package client

import (
	"context"
	"strings"
	"syscall"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// This file is the inode-level namespace API the FUSE layer needs: every
// call names a parent directory by inode number and an entry by name, and
// new inodes get the owner the caller says (the FUSE caller's uid/gid, not
// this process's). Each call builds its request, header included, once,
// so that the retries inside c.call reuse the request id and the metadata
// service applies the operation once.

// MaxFileSize is the largest file size the metadata service accepts
// (metaserver.MaxFileSize, 1 PiB), repeated here because the client must
// not import the server. Writers check it before buffering data, so that
// a write past it fails at once with EFBIG.
const MaxFileSize = 1 << 50

// Owner is the owner of a new inode.
type Owner struct {
	Uid, Gid uint32
}

// Rename flags, as renameat2(2) and the metadata service define them.
const (
	RenameNoReplace = 1
	RenameExchange  = 2
)

// MkdirAt creates directory name in parent with the given permission bits
// and owner. The policy is inherited from parent.
func (c *Client) MkdirAt(ctx context.Context, parent uint64, name string, mode uint32, o Owner) (*stratapb.Attr, error) {
	if err := checkName("mkdir", parent, name); err != nil {
		return nil, err
	}
	req := &stratapb.MkdirRequest{
		Header: c.NewHeader(), Parent: parent, Name: name,
		Mode: mode & 0o7777, Uid: o.Uid, Gid: o.Gid,
	}
	var attr *stratapb.Attr
	err := c.call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		resp, err := mc.Mkdir(ctx, req)
		attr = resp.GetAttr()
		return err
	})
	if err != nil {
		return nil, opErr(ctx, "mkdir", entryTarget(parent, name), err)
	}
	return attr, nil
}

// CreateOptions are the open(2) flags that matter to CreateAt.
type CreateOptions struct {
	Exclusive bool // O_EXCL: fail with EEXIST if name exists
	Truncate  bool // O_TRUNC: an existing regular file is cut to 0 bytes
}

// CreateAt opens name in parent as a regular file, creating it with mode
// and owner when missing. It reports whether the file was created.
func (c *Client) CreateAt(ctx context.Context, parent uint64, name string, mode uint32, o Owner, opts CreateOptions) (*stratapb.Attr, bool, error) {
	if err := checkName("create", parent, name); err != nil {
		return nil, false, err
	}
	req := &stratapb.CreateRequest{
		Header: c.NewHeader(), Parent: parent, Name: name, Mode: mode & 0o7777,
		Uid: o.Uid, Gid: o.Gid, Exclusive: opts.Exclusive, Truncate: opts.Truncate,
	}
	var resp *stratapb.CreateResponse
	err := c.call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		var err error
		resp, err = mc.Create(ctx, req)
		return err
	})
	if err != nil {
		return nil, false, opErr(ctx, "create", entryTarget(parent, name), err)
	}
	return resp.GetAttr(), resp.GetCreated(), nil
}

// SymlinkAt creates name in parent as a symlink to target.
func (c *Client) SymlinkAt(ctx context.Context, parent uint64, name, target string, o Owner) (*stratapb.Attr, error) {
	if err := checkName("symlink", parent, name); err != nil {
		return nil, err
	}
	switch {
	case target == "":
		return nil, errnoErr("symlink", entryTarget(parent, name), syscall.ENOENT, "empty target")
	case len(target) >= maxPathLen:
		return nil, errnoErr("symlink", entryTarget(parent, name), syscall.ENAMETOOLONG, "target is %d bytes", len(target))
	case strings.IndexByte(target, 0) >= 0:
		return nil, errnoErr("symlink", entryTarget(parent, name), syscall.EINVAL, "target contains a NUL byte")
	}
	req := &stratapb.SymlinkRequest{
		Header: c.NewHeader(), Parent: parent, Name: name, Target: target, Uid: o.Uid, Gid: o.Gid,
	}
	var attr *stratapb.Attr
	err := c.call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		resp, err := mc.Symlink(ctx, req)
		attr = resp.GetAttr()
		return err
	})
	if err != nil {
		return nil, opErr(ctx, "symlink", entryTarget(parent, name), err)
	}
	return attr, nil
}

// LinkAt makes newName in newParent another name of inode ino.
func (c *Client) LinkAt(ctx context.Context, ino, newParent uint64, newName string) (*stratapb.Attr, error) {
	if err := checkName("link", newParent, newName); err != nil {
		return nil, err
	}
	req := &stratapb.LinkRequest{Header: c.NewHeader(), Ino: ino, NewParent: newParent, NewName: newName}
	var attr *stratapb.Attr
	err := c.call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		resp, err := mc.Link(ctx, req)
		attr = resp.GetAttr()
		return err
	})
	if err != nil {
		return nil, opErr(ctx, "link", entryTarget(newParent, newName), err)
	}
	return attr, nil
}

// UnlinkAt removes the non-directory name from parent.
func (c *Client) UnlinkAt(ctx context.Context, parent uint64, name string) error {
	if err := checkName("unlink", parent, name); err != nil {
		return err
	}
	req := &stratapb.UnlinkRequest{Header: c.NewHeader(), Parent: parent, Name: name}
	err := c.call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		_, err := mc.Unlink(ctx, req)
		return err
	})
	if err != nil {
		return opErr(ctx, "unlink", entryTarget(parent, name), err)
	}
	return nil
}

// RmdirAt removes the empty directory name from parent.
func (c *Client) RmdirAt(ctx context.Context, parent uint64, name string) error {
	if err := checkName("rmdir", parent, name); err != nil {
		return err
	}
	req := &stratapb.RmdirRequest{Header: c.NewHeader(), Parent: parent, Name: name}
	err := c.call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		_, err := mc.Rmdir(ctx, req)
		return err
	})
	if err != nil {
		return opErr(ctx, "rmdir", entryTarget(parent, name), err)
	}
	return nil
}

// RenameAt moves srcName in srcParent to dstName in dstParent, with
// renameat2(2) flags (RenameNoReplace, RenameExchange).
func (c *Client) RenameAt(ctx context.Context, srcParent uint64, srcName string, dstParent uint64, dstName string, flags uint32) error {
	if err := checkName("rename", srcParent, srcName); err != nil {
		return err
	}
	if err := checkName("rename", dstParent, dstName); err != nil {
		return err
	}
	req := &stratapb.RenameRequest{
		Header: c.NewHeader(), SrcParent: srcParent, SrcName: srcName,
		DstParent: dstParent, DstName: dstName, Flags: flags,
	}
	err := c.call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		_, err := mc.Rename(ctx, req)
		return err
	})
	if err != nil {
		return opErr(ctx, "rename", entryTarget(srcParent, srcName)+" -> "+entryTarget(dstParent, dstName), err)
	}
	return nil
}

// ReadDirAt lists directory ino, sorted by name; with plus, each entry
// carries its attributes.
func (c *Client) ReadDirAt(ctx context.Context, ino uint64, plus bool) ([]*stratapb.DirEntry, error) {
	var all []*stratapb.DirEntry
	err := c.readDirPages(ctx, ino, plus, func(page []*stratapb.DirEntry) error {
		all = append(all, page...)
		return nil
	})
	if err != nil {
		return nil, opErr(ctx, "readdir", inodeTarget(ino), err)
	}
	return all, nil
}

// ReadDirPages calls fn with each page of the listing of directory ino,
// in name order, and stops at fn's first error, which it returns: a
// caller that wants only part of a huge directory stops early.
func (c *Client) ReadDirPages(ctx context.Context, ino uint64, plus bool, fn func([]*stratapb.DirEntry) error) error {
	if err := c.readDirPages(ctx, ino, plus, fn); err != nil {
		return opErr(ctx, "readdir", inodeTarget(ino), err)
	}
	return nil
}

// SetAttrIn says which attributes SetAttr changes: Valid is an OR of
// stratapb.SetAttrMask bits. A size change goes through Truncate, which
// also rewrites a chunk cut in the middle.
type SetAttrIn struct {
	Valid            uint32
	Mode, Uid, Gid   uint32
	Size             uint64
	AtimeNs, MtimeNs int64
}

// SetAttr changes the attributes of inode ino named in in.Valid and
// returns the new attributes.
func (c *Client) SetAttr(ctx context.Context, ino uint64, in SetAttrIn) (*stratapb.Attr, error) {
	sizeBit := uint32(stratapb.SetAttrMask_SETATTR_SIZE)
	if in.Valid&sizeBit != 0 {
		if err := c.Truncate(ctx, ino, in.Size); err != nil {
			return nil, err
		}
		in.Valid &^= sizeBit
		if in.Valid == 0 {
			return c.GetAttr(ctx, ino)
		}
	}
	req := &stratapb.SetAttrRequest{
		Header: c.NewHeader(), Ino: ino, Valid: in.Valid, Mode: in.Mode & 0o7777,
		Uid: in.Uid, Gid: in.Gid, AtimeNs: in.AtimeNs, MtimeNs: in.MtimeNs,
	}
	var attr *stratapb.Attr
	err := c.call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		resp, err := mc.SetAttr(ctx, req)
		attr = resp.GetAttr()
		return err
	})
	if err != nil {
		return nil, opErr(ctx, "setattr", inodeTarget(ino), err)
	}
	return attr, nil
}

func entryTarget(parent uint64, name string) string {
	return inodeTarget(parent) + "/" + shortQuote(name)
}
