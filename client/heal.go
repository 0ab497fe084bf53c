package client

import (
	"context"
	"fmt"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/strata-hpc/strata/internal/rpcerr"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// callHeal runs fn against the leader's Heal service.
func (c *Client) callHeal(ctx context.Context, fn func(ctx context.Context, hc stratapb.HealClient) error) error {
	return c.meta.CallConn(ctx, func(ctx context.Context, cc grpc.ClientConnInterface) error {
		return fn(ctx, stratapb.NewHealClient(cc))
	})
}

// RepairStatus reports stripe health, the repair queue, rate and ETA,
// drains in progress and the throttle.
func (c *Client) RepairStatus(ctx context.Context) (*stratapb.RepairStatusResponse, error) {
	var resp *stratapb.RepairStatusResponse
	err := c.callHeal(ctx, func(ctx context.Context, hc stratapb.HealClient) error {
		r, err := hc.RepairStatus(ctx, &stratapb.RepairStatusRequest{Header: c.NewHeader()})
		resp = r
		return err
	})
	if err != nil {
		return nil, healErr(ctx, "repair status", "", err)
	}
	return resp, nil
}

// RepairSettings are the changes SetRepairConfig makes; nil fields stay.
type RepairSettings struct {
	Concurrency   *uint32
	RateBytes     *int64 // bytes per second; must be > 0
	Paused        *bool
	BalanceMargin *float64 // fraction of the mean, in (0, 1)
}

// SetRepairConfig changes the replicated repair throttle.
func (c *Client) SetRepairConfig(ctx context.Context, s RepairSettings) (*stratapb.RepairConfig, error) {
	if s.RateBytes != nil && *s.RateBytes <= 0 {
		return nil, errnoErr("repair set", "", syscall.EINVAL, "repair rate must be positive, got %d bytes/s", *s.RateBytes)
	}
	req := &stratapb.SetRepairConfigRequest{Header: c.NewHeader(), Concurrency: s.Concurrency, RateBytesPerSec: s.RateBytes, Paused: s.Paused, BalanceMargin: s.BalanceMargin}
	var cfg *stratapb.RepairConfig
	err := c.callHeal(ctx, func(ctx context.Context, hc stratapb.HealClient) error {
		r, err := hc.SetRepairConfig(ctx, req)
		cfg = r.GetConfig()
		return err
	})
	if err != nil {
		return nil, healErr(ctx, "repair set", "", err)
	}
	return cfg, nil
}

// Drain starts (or with cancel, stops) moving every shard off dataserver id.
func (c *Client) Drain(ctx context.Context, id uint32, cancel bool) error {
	req := &stratapb.DrainRequest{Header: c.NewHeader(), ServerId: id, Cancel: cancel}
	err := c.callHeal(ctx, func(ctx context.Context, hc stratapb.HealClient) error {
		_, err := hc.Drain(ctx, req)
		return err
	})
	if err != nil {
		return healErr(ctx, "drain", fmt.Sprintf("dataserver %d", id), err)
	}
	return nil
}

// RemoveDataServer forgets a dataserver that holds no shard any more.
func (c *Client) RemoveDataServer(ctx context.Context, id uint32) error {
	req := &stratapb.RemoveDataServerRequest{Header: c.NewHeader(), ServerId: id}
	err := c.callHeal(ctx, func(ctx context.Context, hc stratapb.HealClient) error {
		_, err := hc.RemoveDataServer(ctx, req)
		return err
	})
	if err != nil {
		return healErr(ctx, "remove dataserver", fmt.Sprintf("dataserver %d", id), err)
	}
	return nil
}

// healErr is opErr keeping the server's message, which for these operator
// commands says what was wrong ("no dataserver 9", "rate must be positive").
func healErr(ctx context.Context, op, target string, err error) error {
	errno := rpcerr.ErrnoOf(err)
	if errno == 0 {
		return opErr(ctx, op, target, err)
	}
	what := op
	if target != "" {
		what += " " + target
	}
	return fmt.Errorf("client: %s: %s: %w", what, status.Convert(err).Message(), errno)
}
