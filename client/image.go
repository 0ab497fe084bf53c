package client

import (
	"context"

	"google.golang.org/grpc"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// TreeUsage returns the space accounting of the tree at inode ino in one
// call: files, logical and stored bytes, and how much of it is shared
// with anything outside the tree (the image store's `image show`).
func (c *Client) TreeUsage(ctx context.Context, ino uint64) (*stratapb.TreeUsageResponse, error) {
	req := &stratapb.TreeUsageRequest{Header: c.NewHeader(), Ino: ino}
	var resp *stratapb.TreeUsageResponse
	err := c.meta.CallConn(ctx, func(ctx context.Context, cc grpc.ClientConnInterface) error {
		var err error
		resp, err = stratapb.NewImageClient(cc).TreeUsage(ctx, req)
		return err
	})
	if err != nil {
		return nil, opErr(ctx, "tree usage", inodeTarget(ino), err)
	}
	return resp, nil
}
