package bootctl

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Wake powers a node on (PXE) and waits for a check-in newer than the
// power-on, recording the request (by) so that power saving leaves it on.
func Wake(ctx context.Context, st *Store, pc PowerController, n Node, o PowerOptions, timeout time.Duration, by string) (time.Duration, error) {
	start := time.Now()
	o.PXE = true
	if err := st.RecordRequest(ctx, n.Name, by); err != nil {
		return 0, err
	}
	r := powerOne(ctx, pc, n, ActionOn, o.withDefaults(), slog.New(slog.DiscardHandler))
	if r.Err != nil {
		return 0, r.Err
	}
	_, err := WaitCheckIn(ctx, st, n.Name, timeout, 200*time.Millisecond, func(ci CheckIn) bool {
		return ci.Error == "" && !ci.BootTime.Before(start.Add(-time.Second))
	})
	return time.Since(start), err
}

// IdlePolicy powers off compute nodes idle longer than IdleAfter.
type IdlePolicy struct {
	IdleAfter time.Duration // 0 disables power saving
	Store     *Store
	Power     PowerController
	Log       *slog.Logger
	Now       func() time.Time
}

// Sweep checks every compute node once and powers off the idle ones that
// are on. It returns the nodes it powered off.
func (p IdlePolicy) Sweep(ctx context.Context) ([]string, error) {
	if p.IdleAfter <= 0 {
		return nil, nil
	}
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	nodes, err := p.Store.ListNodes(ctx)
	if err != nil {
		return nil, err
	}
	var off []string
	for _, n := range nodes {
		if n.Role != RoleCompute {
			continue
		}
		ci, err := p.Store.GetCheckIn(ctx, n.Name)
		if err != nil || ci.Error != "" {
			continue // never booted, or failed: nothing to save
		}
		last := lastActivity(ci)
		if now().Sub(last) < p.IdleAfter {
			continue
		}
		st, err := p.Power.Do(ctx, n.BMC, ActionStatus, false)
		if err != nil || st != PowerOn {
			continue
		}
		// Read last: a request (strata node acquire) may have just come in.
		if req, err := p.Store.GetRequest(ctx, n.Name); err == nil && req.At.After(last) {
			if last = req.At; now().Sub(last) < p.IdleAfter {
				continue
			}
		}
		if _, err := p.Power.Do(ctx, n.BMC, ActionOff, false); err != nil {
			p.Log.Warn("power saving: could not power off idle node", "node", n.Name, "err", err)
			continue
		}
		p.Log.Info("power saving: idle node powered off", "node", n.Name, "idle", now().Sub(last).Round(time.Second))
		off = append(off, n.Name)
	}
	if len(off) > 0 {
		return off, nil
	}
	return nil, nil
}

// lastActivity is the latest sign of use of a booted node: its boot, its
// job lease (LastActive), its mount's requests (MountActiveAt).
func lastActivity(ci CheckIn) time.Time {
	last := ci.BootTime
	for _, t := range []time.Time{ci.LastActive, ci.MountActiveAt} {
		if t.After(last) {
			last = t
		}
	}
	return last
}

func (p IdlePolicy) String() string { return fmt.Sprintf("idle after %v", p.IdleAfter) }
