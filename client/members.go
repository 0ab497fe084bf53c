package client

import (
	"context"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// AddMember adds a metadata voter (started empty, without --peers).
func (c *Client) AddMember(ctx context.Context, id, raftAddr string) error {
	req := &stratapb.AddMemberRequest{Id: id, RaftAddr: raftAddr}
	err := c.call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		_, err := mc.AddMember(ctx, req)
		return err
	})
	if err != nil {
		return opErr(ctx, "add member", id, err)
	}
	return nil
}

// AddNonvoter adds a metadata server as a non-voter: it catches up from
// the leader without being part of the quorum; AddMember promotes it.
func (c *Client) AddNonvoter(ctx context.Context, id, raftAddr string) error {
	req := &stratapb.AddMemberRequest{Id: id, RaftAddr: raftAddr, Nonvoter: true}
	err := c.call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		_, err := mc.AddMember(ctx, req)
		return err
	})
	if err != nil {
		return opErr(ctx, "add non-voter", id, err)
	}
	return nil
}

// RemoveMember removes a metadata voter.
func (c *Client) RemoveMember(ctx context.Context, id string) error {
	req := &stratapb.RemoveMemberRequest{Id: id}
	err := c.call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		_, err := mc.RemoveMember(ctx, req)
		return err
	})
	if err != nil {
		return opErr(ctx, "remove member", id, err)
	}
	return nil
}
