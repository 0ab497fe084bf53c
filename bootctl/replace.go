package bootctl

import (
	"context"
	"fmt"
	"time"
)

// replace swaps a voter that did not come back for a spare node: the dead
// node is powered off (so it cannot return with a stale view), the spare
// is powered on as an empty metaserver and added as a non-voter; once it
// has caught up (by snapshot) it is promoted to voter and the dead voter
// is removed.
func (w *Watchdog) replace(ctx context.Context, vs *voterState) error {
	start := time.Now()
	if dead, err := w.nodeOf(ctx, vs.ID); err == nil {
		r := powerOne(ctx, w.Power, dead, ActionOff, w.Cfg.Power.withDefaults(), w.Log)
		w.event(ctx, Event{Kind: "power-off-dead", Node: dead.Name, Member: vs.ID, Detail: errText(r.Err)})
	}
	spare, err := w.pickSpare(ctx)
	if err != nil {
		return err
	}
	r := powerOne(ctx, w.Power, spare, ActionOn, w.Cfg.Power.withDefaults(), w.Log)
	if r.Err != nil {
		return fmt.Errorf("power on spare %s: %w", spare.Name, r.Err)
	}
	w.event(ctx, Event{Kind: "spare-on", Node: spare.Name, Member: spare.MetaID, Detail: fmt.Sprintf("replacing %s, which did not rejoin within %v", vs.ID, w.Cfg.RejoinTimeout)})
	if err := w.waitAnswering(ctx, spare.MetaGRPC); err != nil {
		return fmt.Errorf("spare %s: %w", spare.Name, err)
	}
	// The spare joins as a non-voter and counts only once it has caught
	// up. hashicorp/raft makes an added server a voter at once: with the
	// dead voter still in the configuration the quorum then needed the
	// new, still empty server, and every commit (client writes, this
	// controller's lease renewals) stalled until it had installed the
	// snapshot, seconds with a large namespace. That stall was the "lease
	// retaken mid-replacement" of the 100k-file benchmark. Adding first
	// (not removing the dead voter first) keeps every step resumable by
	// another controller: until the end the dead voter is still a member.
	if err := w.Store.c.AddNonvoter(ctx, spare.MetaID, spare.MetaRaft); err != nil {
		return fmt.Errorf("add non-voter %s: %w", spare.MetaID, err)
	}
	w.event(ctx, Event{Kind: "nonvoter-added", Node: spare.Name, Member: spare.MetaID, Detail: spare.MetaRaft})
	if err := w.waitCaughtUp(ctx, spare); err != nil {
		return err
	}
	if err := w.Store.c.AddMember(ctx, spare.MetaID, spare.MetaRaft); err != nil {
		return fmt.Errorf("promote %s to voter: %w", spare.MetaID, err)
	}
	w.event(ctx, Event{Kind: "voter-added", Node: spare.Name, Member: spare.MetaID, Detail: spare.MetaRaft})
	if err := w.removeVoter(ctx, vs.ID); err != nil {
		return err
	}
	delete(w.voters, vs.ID)
	if _, err := w.Store.UpdateNode(ctx, spare.Name, func(n *Node) error { n.Role = RoleMetadata; return nil }); err != nil {
		w.Log.Warn("watchdog: could not mark the spare as a metadata node", "node", spare.Name, "err", err)
	}
	w.event(ctx, Event{Kind: "replaced", Node: spare.Name, Member: spare.MetaID, Detail: fmt.Sprintf("%s replaced %s in %v", spare.MetaID, vs.ID, time.Since(start).Round(time.Millisecond))})
	return nil
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// pickSpare returns a spare node that can run a metaserver. A spare that
// is already a member (non-voter or voter) was added by a replacement that was cut short (this
// controller lost its lease, or crashed): it is picked first, so that the
// next attempt finishes that replacement instead of starting another.
func (w *Watchdog) pickSpare(ctx context.Context) (Node, error) {
	nodes, err := w.Store.ListNodes(ctx)
	if err != nil {
		return Node{}, err
	}
	members, err := w.members(ctx)
	if err != nil {
		return Node{}, err
	}
	isMember := map[string]bool{}
	for _, m := range members {
		isMember[m.ID] = true
	}
	var fresh []Node
	for _, n := range nodes {
		if n.Role != RoleSpare || n.MetaID == "" || n.MetaRaft == "" || n.MetaGRPC == "" {
			continue
		}
		if isMember[n.MetaID] {
			return n, nil
		}
		fresh = append(fresh, n)
	}
	if len(fresh) == 0 {
		return Node{}, ErrNoSpare
	}
	return fresh[0], nil
}

// removeVoter removes id unless an earlier attempt already did.
func (w *Watchdog) removeVoter(ctx context.Context, id string) error {
	members, err := w.members(ctx)
	if err != nil {
		return err
	}
	for _, m := range members {
		if m.ID == id {
			if err := w.Store.c.RemoveMember(ctx, id); err != nil {
				return fmt.Errorf("remove voter %s: %w", id, err)
			}
			w.event(ctx, Event{Kind: "voter-removed", Member: id})
			return nil
		}
	}
	return nil
}

func (w *Watchdog) waitAnswering(ctx context.Context, addr string) error {
	deadline := time.Now().Add(w.Cfg.CatchUpTimeout)
	for {
		err := w.Probe(ctx, addr)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("not answering at %s after %v: %w", addr, w.Cfg.CatchUpTimeout, err)
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
}

// waitCaughtUp records a marker event through the leader, then reads the
// event log from the spare's own state until the marker is there: the
// spare has then applied everything up to it (from a snapshot and the log).
func (w *Watchdog) waitCaughtUp(ctx context.Context, spare Node) error {
	start := time.Now()
	marker := w.event(ctx, Event{Kind: "catch-up", Node: spare.Name, Member: spare.MetaID, Detail: "waiting for the new voter to apply up to here"})
	c := w.probes[spare.MetaGRPC]
	if c == nil {
		return fmt.Errorf("no probe client for %s", spare.MetaGRPC)
	}
	st := NewStore(c, w.Log)
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		evs, err := st.Events(rctx)
		cancel()
		if err == nil && len(evs) > 0 && evs[len(evs)-1].Seq >= marker.Seq {
			w.event(ctx, Event{Kind: "caught-up", Node: spare.Name, Member: spare.MetaID, Detail: fmt.Sprintf("in %v", time.Since(start).Round(time.Millisecond))})
			return nil
		}
		if time.Since(start) > w.Cfg.CatchUpTimeout || ctx.Err() != nil {
			return fmt.Errorf("spare %s did not catch up within %v (last error: %v)", spare.Name, w.Cfg.CatchUpTimeout, err)
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
}
