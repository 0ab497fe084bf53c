package client

import (
	"context"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// Extended attributes of an inode. Names and values are opaque to the
// metadata service, which enforces the limits in NOTES.md (names up to 255
// bytes, values up to 64 KiB, 1 MiB per inode) and answers ENODATA for a
// missing name.

// Xattr flags, as setxattr(2) defines them.
const (
	XattrCreate  = 1 // fail with EEXIST if the name is set
	XattrReplace = 2 // fail with ENODATA if the name is not set
)

// GetXattr returns the value of extended attribute name of inode ino.
func (c *Client) GetXattr(ctx context.Context, ino uint64, name string) ([]byte, error) {
	req := &stratapb.GetXattrRequest{Header: c.NewHeader(), Ino: ino, Name: name}
	var val []byte
	err := c.call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		resp, err := mc.GetXattr(ctx, req)
		val = resp.GetValue()
		return err
	})
	if err != nil {
		return nil, opErr(ctx, "getxattr", inodeTarget(ino)+" "+shortQuote(name), err)
	}
	return val, nil
}

// SetXattr sets extended attribute name of inode ino, with setxattr(2)
// flags (XattrCreate, XattrReplace).
func (c *Client) SetXattr(ctx context.Context, ino uint64, name string, value []byte, flags uint32) error {
	req := &stratapb.SetXattrRequest{Header: c.NewHeader(), Ino: ino, Name: name, Value: value, Flags: flags}
	err := c.call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		_, err := mc.SetXattr(ctx, req)
		return err
	})
	if err != nil {
		return opErr(ctx, "setxattr", inodeTarget(ino)+" "+shortQuote(name), err)
	}
	return nil
}

// ListXattr returns the names of the extended attributes of inode ino,
// sorted.
func (c *Client) ListXattr(ctx context.Context, ino uint64) ([]string, error) {
	req := &stratapb.ListXattrRequest{Header: c.NewHeader(), Ino: ino}
	var names []string
	err := c.call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		resp, err := mc.ListXattr(ctx, req)
		names = resp.GetNames()
		return err
	})
	if err != nil {
		return nil, opErr(ctx, "listxattr", inodeTarget(ino), err)
	}
	return names, nil
}

// RemoveXattr removes extended attribute name of inode ino.
func (c *Client) RemoveXattr(ctx context.Context, ino uint64, name string) error {
	req := &stratapb.RemoveXattrRequest{Header: c.NewHeader(), Ino: ino, Name: name}
	err := c.call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		_, err := mc.RemoveXattr(ctx, req)
		return err
	})
	if err != nil {
		return opErr(ctx, "removexattr", inodeTarget(ino)+" "+shortQuote(name), err)
	}
	return nil
}
