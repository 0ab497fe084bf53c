package bootctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// ImageCatalog says whether an image exists, so that a switch to a missing
// image is refused before anything changes.
type ImageCatalog interface {
	HasImage(ctx context.Context, ref string) (bool, error)
}

// SwitchOptions bound a group switch.
type SwitchOptions struct {
	Concurrency int           // nodes rebooted at once (default 8)
	BootTimeout time.Duration // power-cycle to check-in, per node (default 120 s)
	Retries     int           // extra power cycles of a node that did not check in (default 1)
	Power       PowerOptions  // per IPMI call
	DryRun      bool
	Poll        time.Duration // how often check-ins are read (default 200 ms)
}

// NodeSwitch is the outcome of a switch for one node.
type NodeSwitch struct {
	Node     string        `json:"node"`
	OK       bool          `json:"ok"`
	Image    string        `json:"image"` // what the node checked in with
	Attempts int           `json:"attempts"`
	Took     time.Duration `json:"took_ns"`
	Error    string        `json:"error,omitempty"`
}

// Switcher runs group switches and rollbacks.
type Switcher struct {
	Store  *Store
	Power  PowerController
	Images ImageCatalog
	Log    *slog.Logger
	Audit  Audit // records each switch and rollback (power actions: SwitchOptions.Power.Audit)
}

// ErrNoSuchImage is the error of a switch to an image that does not exist.
var ErrNoSuchImage = errors.New("bootctl: image does not exist")

// Switch records cfg as the group's configuration (keeping the current one
// for rollback), then power-cycles every node of the group into PXE boot,
// Concurrency at a time, and waits for each to check in with the new
// generation, retrying a node that does not. A missing image or a bad
// configuration is refused before anything changes.
func (sw *Switcher) Switch(ctx context.Context, group string, cfg GroupConfig, o SwitchOptions) (g Group, res []NodeSwitch, err error) {
	defer func() {
		if !o.DryRun {
			sw.Audit.group(ctx, "group.switch", group, auditConfig(g, cfg, err), res, err)
		}
	}()
	g, err = sw.Store.GetGroup(ctx, group)
	if err != nil {
		return Group{}, nil, err
	}
	if cfg.KernelArgs == "" {
		cfg.KernelArgs = g.Config.KernelArgs
	}
	if cfg.Kernel == "" && cfg.Initrd == "" {
		cfg.Kernel, cfg.Initrd = g.Config.Kernel, g.Config.Initrd
	}
	if err := cfg.Validate(); err != nil {
		return g, nil, err
	}
	if err := sw.checkImage(ctx, cfg.Image); err != nil {
		return g, nil, err
	}
	return sw.apply(ctx, g, o, func() (Group, error) { return sw.Store.SetConfig(ctx, group, cfg) })
}

// Rollback returns the group to its previous configuration in one step.
func (sw *Switcher) Rollback(ctx context.Context, group string, o SwitchOptions) (g Group, res []NodeSwitch, err error) {
	defer func() {
		if !o.DryRun {
			sw.Audit.group(ctx, "group.rollback", group, g.Config, res, err)
		}
	}()
	g, err = sw.Store.GetGroup(ctx, group)
	if err != nil {
		return Group{}, nil, err
	}
	if g.Previous == nil {
		return g, nil, fmt.Errorf("bootctl: group %s has no previous configuration to roll back to", group)
	}
	if err := sw.checkImage(ctx, g.Previous.Image); err != nil {
		return g, nil, err
	}
	return sw.apply(ctx, g, o, func() (Group, error) { return sw.Store.Rollback(ctx, group) })
}

// auditConfig is the configuration a switch record names: the one
// recorded if the switch got that far, else the one asked for.
func auditConfig(g Group, asked GroupConfig, err error) GroupConfig {
	if err == nil {
		return g.Config
	}
	return asked
}

func (sw *Switcher) checkImage(ctx context.Context, ref string) error {
	if sw.Images == nil {
		return nil
	}
	ok, err := sw.Images.HasImage(ctx, ref)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: %s (nothing changed)", ErrNoSuchImage, ref)
	}
	return nil
}

// apply records the new configuration (record) and reboots the nodes.
func (sw *Switcher) apply(ctx context.Context, g Group, o SwitchOptions, record func() (Group, error)) (Group, []NodeSwitch, error) {
	o = o.withDefaults()
	log := sw.log()
	nodes, err := sw.Store.NodesOfGroup(ctx, g.Name)
	if err != nil {
		return g, nil, err
	}
	if o.DryRun {
		var plan []NodeSwitch
		for _, n := range nodes {
			plan = append(plan, NodeSwitch{Node: n.Name, Error: "dry run: would power-cycle into PXE"})
		}
		return g, plan, nil
	}
	ng, err := record()
	if err != nil {
		return g, nil, err
	}
	log.Info("group configuration recorded; rebooting nodes", "group", g.Name, "image", ng.Config.Image, "generation", ng.Config.Generation, "nodes", len(nodes))
	res := make([]NodeSwitch, len(nodes))
	sem := make(chan struct{}, o.Concurrency)
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			res[i] = sw.rebootNode(ctx, n, ng.Config, o)
		}()
	}
	wg.Wait()
	return ng, res, nil
}

func (o SwitchOptions) withDefaults() SwitchOptions {
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.BootTimeout <= 0 {
		o.BootTimeout = 120 * time.Second
	}
	if o.Retries < 0 {
		o.Retries = 0
	} else if o.Retries == 0 {
		o.Retries = 1
	}
	if o.Poll <= 0 {
		o.Poll = 200 * time.Millisecond
	}
	o.Power.PXE = true
	return o
}

func (sw *Switcher) log() *slog.Logger {
	if sw.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return sw.Log
}

// rebootNode power-cycles one node into PXE and waits for its check-in
// with cfg's generation; it retries the cycle o.Retries times.
func (sw *Switcher) rebootNode(ctx context.Context, n Node, cfg GroupConfig, o SwitchOptions) NodeSwitch {
	r := NodeSwitch{Node: n.Name}
	start := time.Now()
	for r.Attempts = 1; ; r.Attempts++ {
		err := sw.cycleAndWait(ctx, n, cfg, o, &r)
		r.Took = time.Since(start)
		if err == nil {
			r.OK, r.Error = true, ""
			return r
		}
		r.Error = err.Error()
		if r.Attempts > o.Retries || ctx.Err() != nil || noRetry(err) {
			sw.log().Error("node did not switch", "node", n.Name, "attempts", r.Attempts, "err", err)
			return r
		}
		sw.log().Warn("node did not switch; power-cycling it again", "node", n.Name, "err", err)
	}
}

func (sw *Switcher) cycleAndWait(ctx context.Context, n Node, cfg GroupConfig, o SwitchOptions, r *NodeSwitch) error {
	pr := powerOne(ctx, sw.Power, n, ActionCycle, o.Power.withDefaults(), sw.log())
	if pr.Err != nil {
		return pr.Err
	}
	ci, err := WaitCheckIn(ctx, sw.Store, n.Name, o.BootTimeout, o.Poll, func(ci CheckIn) bool { return ci.Generation >= cfg.Generation })
	r.Image = ci.Image
	if err != nil {
		return err
	}
	if ci.Error != "" {
		return fmt.Errorf("node %s failed to boot %s: %s", n.Name, cfg.Image, ci.Error)
	}
	if ci.Image != cfg.Image {
		return fmt.Errorf("node %s checked in with image %s, want %s", n.Name, ci.Image, cfg.Image)
	}
	return nil
}

// WaitCheckIn polls node's check-in until ok accepts it or timeout passes.
// A check-in that reports a boot error is returned at once.
func WaitCheckIn(ctx context.Context, st *Store, node string, timeout, poll time.Duration, ok func(CheckIn) bool) (CheckIn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last CheckIn
	for {
		ci, err := st.GetCheckIn(ctx, node)
		if err == nil {
			last = ci
			if ok(ci) {
				return ci, nil
			}
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("node %s did not check in with the new configuration within %v", node, timeout)
		case <-time.After(poll):
		}
	}
}

// PrintSwitch writes the per-node switch report.
func PrintSwitch(w io.Writer, g Group, res []NodeSwitch) {
	fmt.Fprintf(w, "group %s: image %s, overlay %s, generation %d\n", g.Name, g.Config.Image, g.OverlayFor("<node>"), g.Config.Generation)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tRESULT\tCHECKED IN WITH\tATTEMPTS\tTIME")
	for _, r := range res {
		result := "ok"
		switch {
		case strings.HasPrefix(r.Error, "dry run"):
			result = "planned"
		case !r.OK:
			result = "FAILED"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", r.Node, result, r.Image, r.Attempts, r.Took.Round(time.Millisecond))
	}
	tw.Flush()
	for _, r := range res {
		if r.Error != "" {
			fmt.Fprintf(w, "%s: %s\n", r.Node, r.Error)
		}
	}
}
