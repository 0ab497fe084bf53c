package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/strata-hpc/strata/bootctl"
)

// powerFlags are the IPMI bounds every power-related command has.
type powerFlags struct {
	concurrency, retries *int
	timeout, reqTimeout  *time.Duration
	keyFile              *string // the BMC password key (bmckey.go)
}

func addPowerFlags(fs *flag.FlagSet) *powerFlags {
	return &powerFlags{
		concurrency: fs.Int("concurrency", 8, "nodes handled at once"),
		retries:     fs.Int("retries", 2, "extra attempts for a node whose BMC fails"),
		timeout:     fs.Duration("timeout", 10*time.Second, "per node and attempt"),
		reqTimeout:  fs.Duration("ipmi-timeout", time.Second, "per IPMI request (resent once)"),
		keyFile:     addKeyFlag(fs),
	}
}

func (pf *powerFlags) options(pxe bool) (bootctl.PowerOptions, error) {
	if *pf.concurrency < 1 || *pf.retries < 0 || *pf.timeout <= 0 {
		return bootctl.PowerOptions{}, usageErr("--concurrency must be >= 1, --retries >= 0, --timeout > 0")
	}
	r := *pf.retries
	if r == 0 {
		r = -1 // PowerOptions: negative means none
	}
	return bootctl.PowerOptions{Concurrency: *pf.concurrency, Timeout: *pf.timeout, Retries: r, PXE: pxe,
		Audit: openAudit(defaultAuditLog(), bootctl.DefaultActor())}, nil
}

func (pf *powerFlags) controller() bootctl.IPMI {
	return bootctl.IPMI{RequestTimeout: *pf.reqTimeout, Retries: 2}
}

// selectNodes resolves NODE... | --group G | --all; acting on every node
// needs --all, never an empty selection.
func selectNodes(ctx context.Context, st *bootctl.Store, names []string, group string, all bool) ([]bootctl.Node, error) {
	chosen := 0
	for _, b := range []bool{len(names) > 0, group != "", all} {
		if b {
			chosen++
		}
	}
	if chosen != 1 {
		return nil, usageErr("name the nodes: NODE..., --group GROUP, or --all (exactly one of them)")
	}
	switch {
	case all:
		return st.ListNodes(ctx)
	case group != "":
		if _, err := st.GetGroup(ctx, group); err != nil {
			return nil, err
		}
		return st.NodesOfGroup(ctx, group)
	}
	var out []bootctl.Node
	for _, name := range names {
		n, err := st.GetNode(ctx, name)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

func runNodePower(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageErr("usage: strata node power on|off|cycle|status NODE...|--group G|--all")
	}
	a, err := bootctl.ParseAction(args[0])
	if err != nil || a == bootctl.ActionPXE {
		return usageErr("power action %q: want on, off, cycle or status", args[0])
	}
	fs := newFlags("node power "+args[0], stderr)
	cf := addClientFlags(fs)
	pf := addPowerFlags(fs)
	group := fs.String("group", "", "every node of this group")
	all := fs.Bool("all", false, "every node of the cluster")
	pxe := fs.Bool("pxe", false, "set the boot device to PXE before on or cycle (for a reconfiguration)")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseBoot(fs, args[1:], 0, -1, "node power "+args[0]+" [flags] NODE...|--group G|--all")
	if err != nil {
		return err
	}
	o, err := pf.options(*pxe)
	if err != nil {
		return err
	}
	st, c, err := openInventory(ctx, cf)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := withKey(st, *pf.keyFile); err != nil {
		return err
	}
	nodes, err := selectNodes(ctx, st, pos, *group, *all)
	if err != nil {
		return err
	}
	res := bootctl.PowerAll(ctx, pf.controller(), nodes, a, o, nil)
	if *asJSON {
		if err := json.NewEncoder(stdout).Encode(res); err != nil {
			return err
		}
	} else {
		bootctl.PrintPowerResults(stdout, res)
	}
	if n := bootctl.Failed(res); n > 0 {
		return fmt.Errorf("%d of %d nodes failed", n, len(res))
	}
	return nil
}

func runNodeWake(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("node wake", stderr)
	cf := addClientFlags(fs)
	pf := addPowerFlags(fs)
	wait := fs.Duration("boot-timeout", 2*time.Minute, "how long to wait for the node's check-in")
	pos, err := parseBoot(fs, args, 1, -1, "node wake NODE...")
	if err != nil {
		return err
	}
	o, err := pf.options(true)
	if err != nil {
		return err
	}
	st, c, err := openInventory(ctx, cf)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := withKey(st, *pf.keyFile); err != nil {
		return err
	}
	nodes, err := selectNodes(ctx, st, pos, "", false)
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range nodes {
		took, err := bootctl.Wake(ctx, st, pf.controller(), n, o, *wait, "strata node wake")
		if err != nil {
			errs = append(errs, err)
			fmt.Fprintf(stdout, "%s: FAILED: %v\n", n.Name, err)
			continue
		}
		fmt.Fprintf(stdout, "%s: up and checked in after %v\n", n.Name, took.Round(time.Millisecond))
	}
	return errors.Join(errs...)
}
