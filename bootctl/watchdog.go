package bootctl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"syscall"
	"time"

	"github.com/strata-hpc/strata/client"
)

// WatchdogConfig tunes the metadata watchdog.
type WatchdogConfig struct {
	ProbeEvery   time.Duration // default 1 s
	ProbeTimeout time.Duration // one probe (short: a hung voter must not hold it); default 500 ms
	FailAfter    int           // consecutive failed probes that mean dead; default 2
	// RejoinTimeout is how long a power-cycled voter has to answer again
	// before a spare replaces it. Default 60 s.
	RejoinTimeout time.Duration
	// CatchUpTimeout bounds the spare's start and catch-up. Default 120 s.
	CatchUpTimeout time.Duration
	Power          PowerOptions
}

func (c WatchdogConfig) withDefaults() WatchdogConfig {
	if c.ProbeEvery <= 0 {
		c.ProbeEvery = time.Second
	}
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = 500 * time.Millisecond
	}
	if c.FailAfter <= 0 {
		c.FailAfter = 2
	}
	if c.RejoinTimeout <= 0 {
		c.RejoinTimeout = 60 * time.Second
	}
	if c.CatchUpTimeout <= 0 {
		c.CatchUpTimeout = 120 * time.Second
	}
	return c
}

// Watchdog watches every metadata voter; a voter that stops answering is
// power-cycled over IPMI, and one that does not come back in time is
// replaced in raft by a spare node. It runs only on the active controller.
type Watchdog struct {
	Store *Store
	Power PowerController
	Cfg   WatchdogConfig
	Log   *slog.Logger
	ID    string // this controller, for the event log
	// NewProbeClient opens a client that asks one metaserver directly
	// (stale reads, no leader redirect).
	NewProbeClient func(addr string) (*client.Client, error)

	voters map[string]*voterState
	probes map[string]*client.Client
}

// voterState is what the watchdog knows of one voter.
type voterState struct {
	ID, GRPC  string
	fails     int
	firstFail time.Time
	cycledAt  time.Time // zero unless waiting for it to rejoin
	replacing bool
}

// Run probes until ctx ends.
func (w *Watchdog) Run(ctx context.Context) {
	w.Cfg = w.Cfg.withDefaults()
	w.voters = map[string]*voterState{}
	w.probes = map[string]*client.Client{}
	defer w.closeProbes()
	t := time.NewTicker(w.Cfg.ProbeEvery)
	defer t.Stop()
	for {
		w.tick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *Watchdog) closeProbes() {
	for _, c := range w.probes {
		c.Close()
	}
}

// tick probes every voter once and acts on what it finds.
func (w *Watchdog) tick(ctx context.Context) {
	members, err := w.members(ctx)
	w.Log.Debug("watchdog: tick", "members", len(members), "err", err)
	if err != nil {
		w.Log.Warn("watchdog: cannot read the voter list", "err", err)
		return
	}
	addrs := w.inventoryAddrs(ctx)
	for _, m := range members {
		if !m.Voter {
			continue // a replacement catching up: not watched until promoted
		}
		if a := addrs[m.ID]; a != "" {
			m.GRPC = a // the inventory knows where each node serves
		}
		vs := w.voters[m.ID]
		if vs == nil {
			vs = &voterState{ID: m.ID, GRPC: m.GRPC}
			w.voters[m.ID] = vs
		}
		if vs.replacing {
			continue
		}
		w.check(ctx, vs)
	}
}

type member struct {
	ID, GRPC string
	Voter    bool
}

// inventoryAddrs maps metaserver ids to the gRPC addresses the inventory
// gives for them (the cluster may not know a voter's gRPC address).
func (w *Watchdog) inventoryAddrs(ctx context.Context) map[string]string {
	out := map[string]string{}
	nodes, err := w.Store.ListNodes(ctx)
	if err != nil {
		return out
	}
	for _, n := range nodes {
		if n.MetaID != "" && n.MetaGRPC != "" {
			out[n.MetaID] = n.MetaGRPC
		}
	}
	return out
}

// members lists the raft members, voters and non-voters.
func (w *Watchdog) members(ctx context.Context) ([]member, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := w.Store.c.ClusterStatus(ctx)
	if err != nil {
		return nil, err
	}
	var out []member
	for _, m := range st.GetMembers() {
		out = append(out, member{ID: m.GetId(), GRPC: m.GetGrpcAddr(), Voter: m.GetVoter()})
	}
	return out, nil
}

// Probe asks metaserver addr for the root's attributes from its own state,
// with a short deadline: a stopped or hung server fails it.
func (w *Watchdog) Probe(ctx context.Context, addr string) error {
	c := w.probes[addr]
	if c == nil {
		var err error
		if c, err = w.NewProbeClient(addr); err != nil {
			return err
		}
		w.probes[addr] = c
	}
	pctx, cancel := context.WithTimeout(ctx, w.Cfg.ProbeTimeout)
	defer cancel()
	_, err := c.ListXattr(pctx, 1) // not batched: one RPC, bounded by pctx
	// A domain error means the server answered (an empty new voter has no
	// root yet). Network errors carry errnos too (ECONNREFUSED), hence the
	// list.
	for _, e := range []syscall.Errno{syscall.ENOENT, syscall.ESTALE, syscall.EACCES, syscall.EPERM, syscall.EINVAL} {
		if errors.Is(err, e) {
			return nil
		}
	}
	return err
}

func (w *Watchdog) check(ctx context.Context, vs *voterState) {
	err := w.Probe(ctx, vs.GRPC)
	if err == nil {
		if !vs.cycledAt.IsZero() {
			w.event(ctx, Event{Kind: "rejoined", Member: vs.ID, Detail: fmt.Sprintf("answering again %v after the power cycle", time.Since(vs.cycledAt).Round(time.Millisecond))})
		}
		vs.fails, vs.cycledAt = 0, time.Time{}
		return
	}
	w.Log.Debug("watchdog: probe failed", "member", vs.ID, "addr", vs.GRPC, "err", err)
	if vs.fails == 0 {
		vs.firstFail = time.Now()
	}
	vs.fails++
	switch {
	case vs.fails == w.Cfg.FailAfter && vs.cycledAt.IsZero():
		w.event(ctx, Event{Kind: "voter-dead", Member: vs.ID, Detail: fmt.Sprintf("%d probes failed: %v", vs.fails, err)})
		w.powerCycle(ctx, vs)
	case !vs.cycledAt.IsZero() && time.Since(vs.cycledAt) > w.Cfg.RejoinTimeout:
		// Synchronous: probing pauses while a voter is replaced (a 3- or
		// 5-voter cluster cannot lose a second voter meanwhile anyway).
		vs.replacing = true
		w.Log.Info("watchdog: replacing voter", "member", vs.ID)
		if err := w.replace(ctx, vs); err != nil {
			w.event(ctx, Event{Kind: "replace-failed", Member: vs.ID, Detail: err.Error()})
			vs.replacing, vs.cycledAt = false, time.Now() // try again after another RejoinTimeout
		}
	}
}

// nodeOf finds the inventory node that runs metaserver id.
func (w *Watchdog) nodeOf(ctx context.Context, id string) (Node, error) {
	nodes, err := w.Store.ListNodes(ctx)
	if err != nil {
		return Node{}, err
	}
	for _, n := range nodes {
		if n.MetaID == id && n.Role == RoleMetadata {
			return n, nil
		}
	}
	return Node{}, fmt.Errorf("no metadata node in the inventory runs voter %s: %w", id, ErrNotFound)
}

func (w *Watchdog) powerCycle(ctx context.Context, vs *voterState) {
	n, err := w.nodeOf(ctx, vs.ID)
	if err != nil {
		w.event(ctx, Event{Kind: "no-action", Member: vs.ID, Detail: err.Error()})
		vs.cycledAt = time.Now() // still time out into a replacement
		return
	}
	r := powerOne(ctx, w.Power, n, ActionCycle, w.Cfg.Power.withDefaults(), w.Log)
	vs.cycledAt = time.Now()
	if r.Err != nil {
		w.event(ctx, Event{Kind: "power-cycle-failed", Node: n.Name, Member: vs.ID, Detail: r.Err.Error()})
		return
	}
	w.event(ctx, Event{Kind: "power-cycle", Node: n.Name, Member: vs.ID, Detail: fmt.Sprintf("%v after the first failed probe", vs.cycledAt.Sub(vs.firstFail).Round(time.Millisecond))})
}

func (w *Watchdog) event(ctx context.Context, e Event) Event {
	e.By = w.ID
	w.Log.Info("watchdog: "+e.Kind, "node", e.Node, "member", e.Member, "detail", e.Detail)
	ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := w.Store.AppendEvent(ectx, e)
	if err != nil {
		w.Log.Warn("watchdog: could not record event", "err", err)
	}
	return out
}

// ErrNoSpare is the error of a replacement with no spare node to use.
var ErrNoSpare = errors.New("bootctl: no spare metadata node in the inventory")
