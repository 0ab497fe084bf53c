package client

import (
	"context"

	"google.golang.org/grpc"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// callCapAdmin runs fn against the leader's CapAdmin service.
func (c *Client) callCapAdmin(ctx context.Context, fn func(ctx context.Context, cc stratapb.CapAdminClient) error) error {
	return c.meta.CallConn(ctx, func(ctx context.Context, cc grpc.ClientConnInterface) error {
		return fn(ctx, stratapb.NewCapAdminClient(cc))
	})
}

// RotateCapKey makes a new shard capability key. The dataservers get it at
// their next heartbeat; the leader signs with it from the time in the
// answer on, and the key it replaces is accepted until everything it
// signed has expired.
func (c *Client) RotateCapKey(ctx context.Context) (*stratapb.RotateCapKeyResponse, error) {
	var resp *stratapb.RotateCapKeyResponse
	err := c.callCapAdmin(ctx, func(ctx context.Context, cc stratapb.CapAdminClient) error {
		r, err := cc.RotateKey(ctx, &stratapb.RotateCapKeyRequest{})
		resp = r
		return err
	})
	if err != nil {
		return nil, healErr(ctx, "cap rotate", "", err)
	}
	return resp, nil
}

// CapKeyStatus lists the capability keys (ids and times, never secrets)
// and says which one signs now.
func (c *Client) CapKeyStatus(ctx context.Context) (*stratapb.CapKeyStatusResponse, error) {
	var resp *stratapb.CapKeyStatusResponse
	err := c.callCapAdmin(ctx, func(ctx context.Context, cc stratapb.CapAdminClient) error {
		r, err := cc.KeyStatus(ctx, &stratapb.CapKeyStatusRequest{})
		resp = r
		return err
	})
	if err != nil {
		return nil, healErr(ctx, "cap status", "", err)
	}
	return resp, nil
}
