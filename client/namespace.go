package client

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// readDirPage is how many entries one ReadDir RPC asks for.
const readDirPage = 1000

// removeAllParallel bounds concurrent unlinks of the files of one directory
// in RemoveAll: metadata latency, not bandwidth, is what limits it.
const removeAllParallel = 8

// lookup is the raw Lookup RPC; callers wrap its error with their context.
// It goes through the read batcher, like getAttr.
func (c *Client) lookup(ctx context.Context, parent uint64, name string) (*stratapb.Attr, error) {
	return c.reads.do(ctx, &stratapb.BatchOp{Op: &stratapb.BatchOp_Lookup{Lookup: &stratapb.LookupRequest{Parent: parent, Name: name}}})
}

func (c *Client) getAttr(ctx context.Context, ino uint64) (*stratapb.Attr, error) {
	return c.reads.do(ctx, &stratapb.BatchOp{Op: &stratapb.BatchOp_Getattr{Getattr: &stratapb.GetAttrRequest{Ino: ino}}})
}

// Lookup returns the attributes of name in directory parent, without
// following a symlink.
func (c *Client) Lookup(ctx context.Context, parent uint64, name string) (*stratapb.Attr, error) {
	if err := checkName("lookup", parent, name); err != nil {
		return nil, err
	}
	attr, err := c.lookup(ctx, parent, name)
	if err != nil {
		return nil, opErr(ctx, "lookup", inodeTarget(parent)+"/"+name, err)
	}
	return attr, nil
}

// GetAttr returns the attributes of inode ino.
func (c *Client) GetAttr(ctx context.Context, ino uint64) (*stratapb.Attr, error) {
	attr, err := c.getAttr(ctx, ino)
	if err != nil {
		return nil, opErr(ctx, "getattr", inodeTarget(ino), err)
	}
	return attr, nil
}

// Stat returns the attributes of the file at p, following symlinks.
func (c *Client) Stat(ctx context.Context, p string) (*stratapb.Attr, error) {
	return c.resolvePath(ctx, "stat", p, true)
}

// Lstat is Stat without following a final symlink.
func (c *Client) Lstat(ctx context.Context, p string) (*stratapb.Attr, error) {
	return c.resolvePath(ctx, "lstat", p, false)
}

// Mkdir creates the directory p, which inherits its parent's policy.
func (c *Client) Mkdir(ctx context.Context, p string, mode uint32) (*stratapb.Attr, error) {
	dir, name, err := c.resolveParent(ctx, "mkdir", p, syscall.EEXIST)
	if err != nil {
		return nil, err
	}
	attr, err := c.mkdir(ctx, dir.GetIno(), name, mode)
	if err != nil {
		return nil, opErr(ctx, "mkdir", p, err)
	}
	return attr, nil
}

func (c *Client) mkdir(ctx context.Context, parent uint64, name string, mode uint32) (*stratapb.Attr, error) {
	req := &stratapb.MkdirRequest{
		Header: c.NewHeader(), Parent: parent, Name: name,
		Mode: mode & 0o7777, Uid: uint32(os.Geteuid()), Gid: uint32(os.Getegid()),
	}
	var attr *stratapb.Attr
	err := c.call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		resp, err := mc.Mkdir(ctx, req)
		attr = resp.GetAttr()
		return err
	})
	return attr, err
}

// MkdirAll creates p and any missing parents, like os.MkdirAll. It
// succeeds if p already is a directory (or a symlink to one).
func (c *Client) MkdirAll(ctx context.Context, p string, mode uint32) error {
	comps, err := splitPath("mkdir", p)
	if err != nil {
		return err
	}
	return c.mkdirAll(ctx, p, comps, mode)
}

func (c *Client) mkdirAll(ctx context.Context, p string, comps []string, mode uint32) error {
	attr, err := c.resolve(ctx, "mkdir", p, comps, true)
	if err == nil {
		if attr.GetType() != stratapb.FileType_DIRECTORY {
			return errnoErr("mkdir", p, syscall.ENOTDIR, "exists and is not a directory")
		}
		return nil
	}
	if !errors.Is(err, syscall.ENOENT) {
		return err
	}
	parent := "/" + strings.Join(comps[:len(comps)-1], "/")
	if err := c.mkdirAll(ctx, parent, comps[:len(comps)-1], mode); err != nil {
		return err
	}
	_, err = c.Mkdir(ctx, p, mode)
	if errors.Is(err, syscall.EEXIST) {
		// Someone else made it meanwhile; fine if it is a directory.
		attr, serr := c.Stat(ctx, p)
		if serr == nil && attr.GetType() == stratapb.FileType_DIRECTORY {
			return nil
		}
	}
	return err
}

// ReadDir lists the directory p (following symlinks), with attributes,
// sorted by name. It pages through the listing, so a huge directory costs
// several RPCs, not one huge message.
func (c *Client) ReadDir(ctx context.Context, p string) ([]*stratapb.DirEntry, error) {
	dir, err := c.resolvePath(ctx, "readdir", p, true)
	if err != nil {
		return nil, err
	}
	if dir.GetType() != stratapb.FileType_DIRECTORY {
		return nil, errnoErr("readdir", p, syscall.ENOTDIR, "")
	}
	var all []*stratapb.DirEntry
	err = c.readDirPages(ctx, dir.GetIno(), true, func(page []*stratapb.DirEntry) error {
		all = append(all, page...)
		return nil
	})
	if err != nil {
		return nil, opErr(ctx, "readdir", p, err)
	}
	return all, nil
}

// readDirPages calls fn with each page of the listing of directory ino.
func (c *Client) readDirPages(ctx context.Context, ino uint64, plus bool, fn func([]*stratapb.DirEntry) error) error {
	after := ""
	for {
		req := &stratapb.ReadDirRequest{Header: c.NewHeader(), Ino: ino, After: after, Limit: readDirPage, Plus: plus}
		var resp *stratapb.ReadDirResponse
		err := c.call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
			var err error
			resp, err = mc.ReadDir(ctx, req)
			return err
		})
		if err != nil {
			return err
		}
		entries := resp.GetEntries()
		if len(entries) > 0 {
			if err := fn(entries); err != nil {
				return err
			}
			after = entries[len(entries)-1].GetName()
		}
		// An empty page without eof would loop forever; treat it as the end.
		if resp.GetEof() || len(entries) == 0 {
			return nil
		}
	}
}

// Remove removes a file, a symlink (not its target) or an empty directory.
func (c *Client) Remove(ctx context.Context, p string) error {
	dir, name, err := c.resolveParent(ctx, "remove", p, syscall.EBUSY)
	if err != nil {
		return err
	}
	attr, err := c.lookup(ctx, dir.GetIno(), name)
	if err != nil {
		return opErr(ctx, "remove", p, err)
	}
	if err := c.removeEntry(ctx, dir.GetIno(), name, attr.GetType()); err != nil {
		return opErr(ctx, "remove", p, err)
	}
	return nil
}

// removeEntry unlinks or rmdirs name in parent, depending on its type.
func (c *Client) removeEntry(ctx context.Context, parent uint64, name string, typ stratapb.FileType) error {
	if typ == stratapb.FileType_DIRECTORY {
		req := &stratapb.RmdirRequest{Header: c.NewHeader(), Parent: parent, Name: name}
		return c.call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
			_, err := mc.Rmdir(ctx, req)
			return err
		})
	}
	req := &stratapb.UnlinkRequest{Header: c.NewHeader(), Parent: parent, Name: name}
	return c.call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		_, err := mc.Unlink(ctx, req)
		return err
	})
}

// RemoveAll removes p and everything below it. A missing p is not an
// error, as with os.RemoveAll. It refuses to remove the root.
func (c *Client) RemoveAll(ctx context.Context, p string) error {
	dir, name, err := c.resolveParent(ctx, "removeall", p, syscall.EBUSY)
	if errors.Is(err, syscall.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	attr, err := c.lookup(ctx, dir.GetIno(), name)
	if isErrno(err, syscall.ENOENT) {
		return nil
	}
	if err != nil {
		return opErr(ctx, "removeall", p, err)
	}
	if err := c.removeTree(ctx, dir.GetIno(), name, attr.GetIno(), attr.GetType()); err != nil {
		return opErr(ctx, "removeall", p, err)
	}
	return nil
}

// removeTree removes name (inode ino) from parent, depth first. Files of
// one directory are unlinked in parallel; directories one at a time, so
// that the concurrency stays bounded at every depth.
func (c *Client) removeTree(ctx context.Context, parent uint64, name string, ino uint64, typ stratapb.FileType) error {
	if typ == stratapb.FileType_DIRECTORY {
		err := c.readDirPages(ctx, ino, false, func(page []*stratapb.DirEntry) error {
			return c.removePage(ctx, ino, page)
		})
		if err != nil {
			return err
		}
	}
	err := c.removeEntry(ctx, parent, name, typ)
	if isErrno(err, syscall.ENOENT) {
		return nil // removed concurrently: the goal is reached
	}
	return err
}

func (c *Client) removePage(ctx context.Context, dir uint64, page []*stratapb.DirEntry) error {
	g := newGroup(ctx, removeAllParallel)
	for _, e := range page {
		if e.GetType() == stratapb.FileType_DIRECTORY {
			continue
		}
		g.Go(func(ctx context.Context) error {
			return c.removeTree(ctx, dir, e.GetName(), e.GetIno(), e.GetType())
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, e := range page {
		if e.GetType() != stratapb.FileType_DIRECTORY {
			continue
		}
		if err := c.removeTree(ctx, dir, e.GetName(), e.GetIno(), e.GetType()); err != nil {
			return err
		}
	}
	return nil
}

// Rename moves oldPath to newPath, replacing newPath if the server allows
// it (POSIX rename semantics).
func (c *Client) Rename(ctx context.Context, oldPath, newPath string) error {
	src, srcName, err := c.resolveParent(ctx, "rename", oldPath, syscall.EBUSY)
	if err != nil {
		return err
	}
	dst, dstName, err := c.resolveParent(ctx, "rename", newPath, syscall.EBUSY)
	if err != nil {
		return err
	}
	req := &stratapb.RenameRequest{
		Header: c.NewHeader(), SrcParent: src.GetIno(), SrcName: srcName,
		DstParent: dst.GetIno(), DstName: dstName,
	}
	err = c.call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		_, err := mc.Rename(ctx, req)
		return err
	})
	if err != nil {
		return opErr(ctx, "rename", oldPath+" -> "+newPath, err)
	}
	return nil
}

// Symlink creates linkPath as a symlink to target. The target is stored
// as given; it need not exist.
func (c *Client) Symlink(ctx context.Context, target, linkPath string) error {
	switch {
	case target == "":
		return errnoErr("symlink", linkPath, syscall.ENOENT, "empty target")
	case len(target) > maxPathLen:
		return errnoErr("symlink", linkPath, syscall.ENAMETOOLONG, "target is %d bytes, longer than %d", len(target), maxPathLen)
	case strings.IndexByte(target, 0) >= 0:
		return errnoErr("symlink", linkPath, syscall.EINVAL, "target contains a NUL byte")
	}
	dir, name, err := c.resolveParent(ctx, "symlink", linkPath, syscall.EEXIST)
	if err != nil {
		return err
	}
	req := &stratapb.SymlinkRequest{
		Header: c.NewHeader(), Parent: dir.GetIno(), Name: name, Target: target,
		Uid: uint32(os.Geteuid()), Gid: uint32(os.Getegid()),
	}
	err = c.call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		_, err := mc.Symlink(ctx, req)
		return err
	})
	if err != nil {
		return opErr(ctx, "symlink", linkPath, err)
	}
	return nil
}

// Link creates newPath as a hard link to oldPath. Like link(2), a symlink
// at oldPath is linked itself, not followed; directories cannot be linked.
func (c *Client) Link(ctx context.Context, oldPath, newPath string) error {
	src, err := c.resolvePath(ctx, "link", oldPath, false)
	if err != nil {
		return err
	}
	if src.GetType() == stratapb.FileType_DIRECTORY {
		return errnoErr("link", oldPath, syscall.EPERM, "cannot hard-link a directory")
	}
	dir, name, err := c.resolveParent(ctx, "link", newPath, syscall.EEXIST)
	if err != nil {
		return err
	}
	req := &stratapb.LinkRequest{Header: c.NewHeader(), Ino: src.GetIno(), NewParent: dir.GetIno(), NewName: name}
	err = c.call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		_, err := mc.Link(ctx, req)
		return err
	})
	if err != nil {
		return opErr(ctx, "link", oldPath+" -> "+newPath, err)
	}
	return nil
}

// SetPolicy sets the stripe policy of p (following symlinks). On a
// directory it applies to what is created below it afterwards; on a file,
// to chunks written afterwards (the metadata service may refuse a change
// on a file that has data).
func (c *Client) SetPolicy(ctx context.Context, p string, pol *stratapb.StripePolicy) error {
	if err := checkPolicy(pol); err != nil {
		return errnoErr("setpolicy", p, syscall.EINVAL, "%v", err)
	}
	attr, err := c.resolvePath(ctx, "setpolicy", p, true)
	if err != nil {
		return err
	}
	_, err = c.setAttr(ctx, &stratapb.SetAttrRequest{
		Ino: attr.GetIno(), Valid: uint32(stratapb.SetAttrMask_SETATTR_POLICY), Policy: pol,
	})
	if err != nil {
		return opErr(ctx, "setpolicy", p, err)
	}
	return nil
}

// setAttr sends req with a fresh header.
func (c *Client) setAttr(ctx context.Context, req *stratapb.SetAttrRequest) (*stratapb.Attr, error) {
	req.Header = c.NewHeader()
	var attr *stratapb.Attr
	err := c.call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		resp, err := mc.SetAttr(ctx, req)
		attr = resp.GetAttr()
		return err
	})
	return attr, err
}

// create opens name in parent for writing, creating it or truncating it.
func (c *Client) create(ctx context.Context, parent uint64, name string, mode uint32, pol *stratapb.StripePolicy) (*stratapb.Attr, error) {
	req := &stratapb.CreateRequest{
		Header: c.NewHeader(), Parent: parent, Name: name, Mode: mode & 0o7777,
		Uid: uint32(os.Geteuid()), Gid: uint32(os.Getegid()), Truncate: true, Policy: pol,
	}
	var attr *stratapb.Attr
	err := c.call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		resp, err := mc.Create(ctx, req)
		attr = resp.GetAttr()
		return err
	})
	return attr, err
}

// Create makes a new regular file name in directory parent, failing with
// EEXIST if the name is taken (open with O_CREAT|O_EXCL).
func (c *Client) Create(ctx context.Context, parent uint64, name string, mode uint32) (*stratapb.Attr, error) {
	if err := checkName("create", parent, name); err != nil {
		return nil, err
	}
	req := &stratapb.CreateRequest{
		Header: c.NewHeader(), Parent: parent, Name: name, Mode: mode & 0o7777,
		Uid: uint32(os.Geteuid()), Gid: uint32(os.Getegid()), Exclusive: true,
	}
	var attr *stratapb.Attr
	err := c.call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		resp, err := mc.Create(ctx, req)
		attr = resp.GetAttr()
		return err
	})
	if err != nil {
		return nil, opErr(ctx, "create", inodeTarget(parent)+"/"+name, err)
	}
	return attr, nil
}
