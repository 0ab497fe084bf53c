package client

import (
	"context"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// ClusterStatus asks the leader for the cluster's health: voters,
// dataservers with capacity and liveness, namespace totals.
func (c *Client) ClusterStatus(ctx context.Context) (*stratapb.ClusterStatusResponse, error) {
	var resp *stratapb.ClusterStatusResponse
	hdr := c.NewHeader()
	err := c.call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		r, err := mc.ClusterStatus(ctx, &stratapb.ClusterStatusRequest{Header: hdr})
		resp = r
		return err
	})
	if err != nil {
		return nil, opErr(ctx, "status", "", err)
	}
	return resp, nil
}
