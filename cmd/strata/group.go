package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/strata-hpc/strata/bootctl"
	"github.com/strata-hpc/strata/imagestore"
)

func init() {
	register(command{name: "group", summary: "node groups: create, list, show, set, switch, rollback", run: runGroup})
}

func runGroup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
		"create": runGroupCreate, "list": runGroupList, "show": runGroupShow, "set": runGroupSet,
		"switch": runGroupSwitch, "rollback": runGroupRollback,
	}
	if len(args) == 0 || sub[args[0]] == nil {
		return usageErr("usage: strata group create|list|show|set|switch|rollback ...")
	}
	return sub[args[0]](ctx, args[1:], stdout, stderr)
}

type groupFlags struct{ image, overlay, args, kernel, initrd *string }

func addGroupFlags(fs *flag.FlagSet) *groupFlags {
	return &groupFlags{
		image:   fs.String("image", "", "image NAME:TAG the nodes boot"),
		overlay: fs.String("overlay", "", "overlay name (one sub-overlay per node); default: each node's own name"),
		args:    fs.String("kernel-args", "", "extra kernel arguments"),
		kernel:  fs.String("kernel", "", "kernel URL (default: the controller's)"),
		initrd:  fs.String("initrd", "", "initrd URL (default: the controller's)"),
	}
}

// apply copies the set flags (all, for create) into cfg.
func (gf *groupFlags) apply(fs *flag.FlagSet, cfg *bootctl.GroupConfig, all bool) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for name, p := range map[string][2]*string{
		"image": {gf.image, &cfg.Image}, "overlay": {gf.overlay, &cfg.Overlay}, "kernel-args": {gf.args, &cfg.KernelArgs},
		"kernel": {gf.kernel, &cfg.Kernel}, "initrd": {gf.initrd, &cfg.Initrd},
	} {
		if all || set[name] {
			*p[1] = *p[0]
		}
	}
}

func runGroupCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("group create", stderr)
	cf := addClientFlags(fs)
	gf := addGroupFlags(fs)
	pos, err := parseBoot(fs, args, 1, 1, "group create NAME --image NAME:TAG [--overlay O] [--kernel-args A]")
	if err != nil {
		return err
	}
	g := bootctl.Group{Name: pos[0]}
	gf.apply(fs, &g.Config, true)
	st, c, err := openInventory(ctx, cf)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := st.CreateGroup(ctx, g); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "group %s created (image %s)\n", g.Name, g.Config.Image)
	return nil
}

// runGroupSet changes a group's configuration without rebooting anyone
// (nodes take it on their next boot); `group switch` reboots them.
func runGroupSet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("group set", stderr)
	cf := addClientFlags(fs)
	gf := addGroupFlags(fs)
	pos, err := parseBoot(fs, args, 1, 1, "group set NAME [--image ...] [--overlay ...] [--kernel-args ...]")
	if err != nil {
		return err
	}
	st, c, err := openInventory(ctx, cf)
	if err != nil {
		return err
	}
	defer c.Close()
	g, err := st.GetGroup(ctx, pos[0])
	if err != nil {
		return err
	}
	cfg := g.Config
	gf.apply(fs, &cfg, false)
	if g, err = st.SetConfig(ctx, g.Name, cfg); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "group %s: generation %d recorded; nodes take it on their next boot (strata group switch reboots them now)\n", g.Name, g.Config.Generation)
	return nil
}

func runGroupList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("group list", stderr)
	cf := addClientFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	_, err := parseBoot(fs, args, 0, 0, "group list [--json]")
	if err != nil {
		return err
	}
	st, c, err := openInventory(ctx, cf)
	if err != nil {
		return err
	}
	defer c.Close()
	groups, err := st.ListGroups(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(groups)
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tIMAGE\tOVERLAY\tGEN\tPREVIOUS\tKERNEL ARGS")
	for _, g := range groups {
		prev := "-"
		if g.Previous != nil {
			prev = g.Previous.Image
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", g.Name, g.Config.Image, orDash(g.Config.Overlay), g.Config.Generation, prev, g.Config.KernelArgs)
	}
	return tw.Flush()
}

func runGroupShow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("group show", stderr)
	cf := addClientFlags(fs)
	pos, err := parseBoot(fs, args, 1, 1, "group show NAME")
	if err != nil {
		return err
	}
	st, c, err := openInventory(ctx, cf)
	if err != nil {
		return err
	}
	defer c.Close()
	g, err := st.GetGroup(ctx, pos[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "group:       %s\nimage:       %s\noverlay:     %s\nkernel args: %s\ngeneration:  %d\n", g.Name, g.Config.Image, g.OverlayFor("<node>"), g.Config.KernelArgs, g.Config.Generation)
	if g.Previous != nil {
		fmt.Fprintf(stdout, "previous:    %s (overlay %s), for rollback\n", g.Previous.Image, orDash(g.Previous.Overlay))
	}
	nodes, err := st.NodesOfGroup(ctx, g.Name)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nNODE\tBOOTED\tGEN\tCURRENT")
	for _, n := range nodes {
		booted, gen, cur := "never", "-", "no"
		if ci, err := st.GetCheckIn(ctx, n.Name); err == nil {
			booted, gen = ci.Image, fmt.Sprint(ci.Generation)
			if ci.Generation == g.Config.Generation && ci.Error == "" {
				cur = "yes"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.Name, booted, gen, cur)
	}
	return tw.Flush()
}

// switchFlags are the flags of switch and rollback.
type switchFlags struct {
	pf                 *powerFlags
	concurrency, retry *int
	bootTimeout        *time.Duration
	dryRun, asJSON     *bool
}

func addSwitchFlags(fs *flag.FlagSet) *switchFlags {
	return &switchFlags{
		pf:          &powerFlags{concurrency: new(int), retries: fs.Int("ipmi-retries", 2, "extra attempts per IPMI call"), timeout: fs.Duration("ipmi-node-timeout", 10*time.Second, "per IPMI call and node"), reqTimeout: fs.Duration("ipmi-timeout", time.Second, "per IPMI request"), keyFile: addKeyFlag(fs)},
		concurrency: fs.Int("concurrency", 8, "nodes rebooted at once"),
		retry:       fs.Int("retries", 1, "extra power cycles for a node that does not check in"),
		bootTimeout: fs.Duration("boot-timeout", 2*time.Minute, "power cycle to check-in, per node"),
		dryRun:      fs.Bool("dry-run", false, "show what would happen; change nothing"),
		asJSON:      fs.Bool("json", false, "print JSON"),
	}
}

func (sf *switchFlags) options() (bootctl.SwitchOptions, error) {
	*sf.pf.concurrency = 1
	po, err := sf.pf.options(true)
	if err != nil {
		return bootctl.SwitchOptions{}, err
	}
	if *sf.concurrency < 1 || *sf.retry < 0 {
		return bootctl.SwitchOptions{}, usageErr("--concurrency must be >= 1 and --retries >= 0")
	}
	r := *sf.retry
	if r == 0 {
		r = -1
	}
	return bootctl.SwitchOptions{Concurrency: *sf.concurrency, Retries: r, BootTimeout: *sf.bootTimeout, DryRun: *sf.dryRun, Power: po}, nil
}

func runGroupSwitch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("group switch", stderr)
	cf := addClientFlags(fs)
	gf := addGroupFlags(fs)
	sf := addSwitchFlags(fs)
	pos, err := parseBoot(fs, args, 1, 1, "group switch GROUP --image NAME:TAG [--overlay O] [--dry-run]")
	if err != nil {
		return err
	}
	if *gf.image == "" {
		return usageErr("--image is required")
	}
	return doSwitch(ctx, cf, sf, stdout, func(ctx context.Context, sw *bootctl.Switcher, o bootctl.SwitchOptions) (bootctl.Group, []bootctl.NodeSwitch, error) {
		var cfg bootctl.GroupConfig
		gf.apply(fs, &cfg, false)
		return sw.Switch(ctx, pos[0], cfg, o)
	})
}

func runGroupRollback(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("group rollback", stderr)
	cf := addClientFlags(fs)
	sf := addSwitchFlags(fs)
	pos, err := parseBoot(fs, args, 1, 1, "group rollback GROUP [--dry-run]")
	if err != nil {
		return err
	}
	return doSwitch(ctx, cf, sf, stdout, func(ctx context.Context, sw *bootctl.Switcher, o bootctl.SwitchOptions) (bootctl.Group, []bootctl.NodeSwitch, error) {
		return sw.Rollback(ctx, pos[0], o)
	})
}

type switchFunc func(context.Context, *bootctl.Switcher, bootctl.SwitchOptions) (bootctl.Group, []bootctl.NodeSwitch, error)

func doSwitch(ctx context.Context, cf *clientFlags, sf *switchFlags, stdout io.Writer, fn switchFunc) error {
	o, err := sf.options()
	if err != nil {
		return err
	}
	st, c, err := openInventory(ctx, cf)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := withKey(st, *sf.pf.keyFile); err != nil {
		return err
	}
	log, _ := newLogger(stdout, *cf.level)
	sw := &bootctl.Switcher{Store: st, Power: sf.pf.controller(), Images: imageCatalog{imagestore.New(c, log)}, Log: log,
		Audit: openAudit(defaultAuditLog(), bootctl.DefaultActor())}
	g, res, err := fn(ctx, sw, o)
	if err != nil {
		return err
	}
	if *sf.asJSON {
		if err := json.NewEncoder(stdout).Encode(struct {
			Group bootctl.Group
			Nodes []bootctl.NodeSwitch
		}{g, res}); err != nil {
			return err
		}
	} else {
		bootctl.PrintSwitch(stdout, g, res)
	}
	failed := 0
	for _, r := range res {
		if !r.OK {
			failed++
		}
	}
	if failed > 0 && !o.DryRun {
		return fmt.Errorf("%d of %d nodes did not switch (see the report)", failed, len(res))
	}
	return nil
}

// imageCatalog answers the switch's "does this image exist" from the image
// store: only a complete (frozen) image counts.
type imageCatalog struct{ st *imagestore.Store }

func (ic imageCatalog) HasImage(ctx context.Context, ref string) (bool, error) {
	r, err := imagestore.ParseRef(ref)
	if err != nil {
		return false, err
	}
	img, err := ic.st.Get(ctx, r)
	if errors.Is(err, imagestore.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return img.Complete, nil
}
