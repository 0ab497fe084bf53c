package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/strata-hpc/strata/bootctl"
)

// runNodeAcquire: strata node acquire --group G [--count N]. A request for
// nodes of a group, e.g. from a job scheduler's prolog: running nodes are
// handed out first, powered-off ones are powered on and waited for until
// they check in. Prints the nodes (--names: only their names, one a line,
// for a host file).
func runNodeAcquire(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("node acquire", stderr)
	cf := addClientFlags(fs)
	pf := addPowerFlags(fs)
	group := fs.String("group", "", "the group to take nodes from")
	count := fs.Int("count", 1, "how many nodes")
	wait := fs.Duration("boot-timeout", 2*time.Minute, "how long to wait for a powered-on node's check-in")
	names := fs.Bool("names", false, "print only the names of the nodes handed out, one a line")
	asJSON := fs.Bool("json", false, "print JSON")
	host, _ := os.Hostname()
	by := fs.String("by", fmt.Sprintf("%s:%d", host, os.Getpid()), "who asks (kept with each node, shown to operators)")
	if _, err := parseBoot(fs, args, 0, 0, "node acquire --group G [--count N] [--names]"); err != nil {
		return err
	}
	if *group == "" || *count < 1 {
		return usageErr("--group is required and --count must be >= 1")
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
	res, err := bootctl.Acquire(ctx, st, pf.controller(), *group, bootctl.AcquireOptions{Count: *count, BootTimeout: *wait, Power: o, By: *by}, nil)
	switch {
	case *asJSON:
		if jerr := json.NewEncoder(stdout).Encode(res); jerr != nil {
			return jerr
		}
	case *names:
		for _, a := range res {
			if a.State != "failed" {
				fmt.Fprintln(stdout, a.Node)
			}
		}
	default:
		bootctl.PrintAcquired(stdout, res)
	}
	return err
}
