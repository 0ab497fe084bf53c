package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// runDataAdmin handles `strata data drain ID` and `strata data remove ID`;
// ok is false when args name neither (then `strata data` runs a server).
func runDataAdmin(ctx context.Context, args []string, stdout, stderr io.Writer) (ok bool, err error) {
	verb, rest := subcommand(args, "drain", "remove")
	switch verb {
	case "drain":
		return true, runDrain(ctx, rest, stdout, stderr)
	case "remove":
		return true, runRemoveData(ctx, rest, stdout, stderr)
	}
	return false, nil
}

// subcommand finds the first argument that is one of verbs (flags may come
// before it) and returns it with the other arguments.
func subcommand(args []string, verbs ...string) (string, []string) {
	for i, a := range args {
		for _, v := range verbs {
			if a == v {
				return v, append(append([]string(nil), args[:i]...), args[i+1:]...)
			}
		}
	}
	return "", args
}

func parseServerID(s string) (uint32, error) {
	id, err := strconv.ParseUint(s, 10, 32)
	if err != nil || id == 0 {
		return 0, usageErr("%q is not a dataserver id (a positive number, see strata status)", s)
	}
	return uint32(id), nil
}

func runDrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("data drain", stderr)
	cf := addClientFlags(fs)
	wait := fs.Bool("wait", true, "show progress until the server holds nothing")
	cancel := fs.Bool("cancel", false, "stop draining the server")
	every := fs.Duration("interval", time.Second, "progress interval")
	if err := parse(fs, args, 1, 1, "data drain [--wait=false] [--cancel] ID"); err != nil {
		return err
	}
	id, err := parseServerID(fs.Arg(0))
	if err != nil {
		return err
	}
	if *every <= 0 {
		return usageErr("--interval must be positive")
	}
	c, err := cf.open()
	if err != nil {
		return err
	}
	defer c.Close()
	// Progress counts only from a scan that started after the drain did:
	// an older one knows nothing of it and would report nothing left.
	start := time.Now()
	if err := c.Drain(ctx, id, *cancel); err != nil {
		return err
	}
	if *cancel {
		fmt.Fprintf(stdout, "dataserver %d: drain cancelled\n", id)
		return nil
	}
	fmt.Fprintf(stdout, "dataserver %d: draining\n", id)
	if !*wait {
		return nil
	}
	var first uint64
	for {
		st, err := c.RepairStatus(ctx)
		if err != nil {
			return fmt.Errorf("drain progress: %w", err)
		}
		d := drainOf(st, id)
		if d == nil {
			return fmt.Errorf("dataserver %d is no longer draining (cancelled or removed)", id)
		}
		first = max(first, d.RemainingShards)
		fmt.Fprintf(stdout, "%s %d shards left to move, %d shard files on its disks\n",
			progressBar(first-d.RemainingShards, first, 30), d.RemainingShards, d.StoredShards)
		fresh := time.Since(start) > time.Duration(st.ScanAgeMs)*time.Millisecond
		if d.RemainingShards == 0 && d.StoredShards == 0 && fresh {
			fmt.Fprintf(stdout, "dataserver %d holds nothing; remove it with: strata data remove %d\n", id, id)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(*every):
		}
	}
}

func drainOf(st *stratapb.RepairStatusResponse, id uint32) *stratapb.DrainProgress {
	for _, d := range st.Drains {
		if d.ServerId == id {
			return d
		}
	}
	return nil
}

func runRemoveData(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("data remove", stderr)
	cf := addClientFlags(fs)
	if err := parse(fs, args, 1, 1, "data remove ID"); err != nil {
		return err
	}
	id, err := parseServerID(fs.Arg(0))
	if err != nil {
		return err
	}
	c, err := cf.open()
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.RemoveDataServer(ctx, id); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "dataserver %d removed\n", id)
	return nil
}
