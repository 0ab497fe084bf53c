package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/imagestore"
)

func init() {
	register(command{name: "overlay", summary: "create, list, push, pull and remove overlays (writable layers of image mounts)", run: runOverlay})
}

const overlayUsage = `usage: strata overlay COMMAND [flags] ARGS
  create NAME                     a new, empty overlay owned by you
  list                            overlays and their sub-overlays
  push [--node N] NAME DIR        save DIR's upper layer into Strata (only what changed)
  pull [--node N] [--force] NAME DIR
                                  restore it into DIR (not mounted) on this node
  rm NAME                         remove an overlay and all its sub-overlays`

func runOverlay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageErr("%s", overlayUsage)
	}
	sub := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
		"create": runOverlayCreate, "list": runOverlayList, "ls": runOverlayList,
		"push": runOverlayPush, "pull": runOverlayPull, "rm": runOverlayRm,
	}
	fn, ok := sub[args[0]]
	if !ok {
		return usageErr("unknown overlay command %q\n%s", args[0], overlayUsage)
	}
	return fn(ctx, args[1:], stdout, stderr)
}

func checkOverlayArg(name, node string) error {
	if err := imagestore.CheckOverlayName(name); err != nil {
		return usageErr("%v", err)
	}
	if node != "" {
		if err := imagestore.CheckOverlayName(node); err != nil {
			return usageErr("--node: %v", err)
		}
	}
	return nil
}

func runOverlayCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("overlay create", stderr)
	cf := addClientFlags(fs)
	if err := parse(fs, args, 1, 1, "overlay create [flags] NAME"); err != nil {
		return err
	}
	if err := checkOverlayArg(fs.Arg(0), ""); err != nil {
		return err
	}
	s, closeStore, err := openStore(cf, stderr)
	if err != nil {
		return err
	}
	defer closeStore()
	if err := s.CreateOverlay(ctx, fs.Arg(0), client.Owner{Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid())}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created overlay %s\n", fs.Arg(0))
	return nil
}

func runOverlayList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("overlay list", stderr)
	cf := addClientFlags(fs)
	if err := parse(fs, args, 0, 0, "overlay list [flags]"); err != nil {
		return err
	}
	s, closeStore, err := openStore(cf, stderr)
	if err != nil {
		return err
	}
	defer closeStore()
	ovs, err := s.ListOverlays(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "OVERLAY\tOWNER\tSAVED")
	for _, ov := range ovs {
		saved := strings.Join(ov.Subs, " ")
		if saved == "" {
			saved = "(never pushed)"
		}
		fmt.Fprintf(tw, "%s\t%d:%d\t%s\n", ov.Name, ov.Uid, ov.Gid, saved)
	}
	return tw.Flush()
}

func runOverlayPush(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("overlay push", stderr)
	cf := addClientFlags(fs)
	node := fs.String("node", envDefault("node", ""), "this node's sub-overlay (default: the overlay's shared one)")
	if err := parse(fs, args, 2, 2, "overlay push [flags] NAME DIR"); err != nil {
		return err
	}
	if err := checkOverlayArg(fs.Arg(0), *node); err != nil {
		return err
	}
	s, closeStore, err := openStore(cf, stderr)
	if err != nil {
		return err
	}
	defer closeStore()
	res, err := s.Push(ctx, fs.Arg(0), *node, fs.Arg(1))
	if err != nil {
		return err
	}
	mode := "incremental"
	if res.Full {
		mode = "full compare"
	}
	fmt.Fprintf(stdout, "pushed %s (%s): %d entries, %d written, %d removed, %s of data sent (%s new)\n",
		fs.Arg(0), mode, res.Entries, res.Written, res.Removed, humanBytes(uint64(res.Bytes)), humanBytes(uint64(res.Stored)))
	return nil
}

func runOverlayPull(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("overlay pull", stderr)
	cf := addClientFlags(fs)
	node := fs.String("node", envDefault("node", ""), "this node's sub-overlay (default: the overlay's shared one)")
	force := fs.Bool("force", false, "replace a non-empty local upper layer")
	if err := parse(fs, args, 2, 2, "overlay pull [flags] NAME DIR"); err != nil {
		return err
	}
	if err := checkOverlayArg(fs.Arg(0), *node); err != nil {
		return err
	}
	s, closeStore, err := openStore(cf, stderr)
	if err != nil {
		return err
	}
	defer closeStore()
	res, err := s.Pull(ctx, fs.Arg(0), *node, fs.Arg(1), imagestore.PullOptions{Force: *force})
	if err != nil {
		return err
	}
	if res.Empty {
		fmt.Fprintf(stdout, "%s has nothing saved for this node yet: %s starts empty\n", fs.Arg(0), fs.Arg(1))
		return nil
	}
	fmt.Fprintf(stdout, "pulled %s into %s: %d entries, %s\n", fs.Arg(0), fs.Arg(1), res.Entries, humanBytes(uint64(res.Bytes)))
	return nil
}

func runOverlayRm(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("overlay rm", stderr)
	cf := addClientFlags(fs)
	if err := parse(fs, args, 1, -1, "overlay rm [flags] NAME..."); err != nil {
		return err
	}
	for _, n := range fs.Args() {
		if err := checkOverlayArg(n, ""); err != nil {
			return err
		}
	}
	s, closeStore, err := openStore(cf, stderr)
	if err != nil {
		return err
	}
	defer closeStore()
	for _, n := range fs.Args() {
		if err := s.RemoveOverlay(ctx, n); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed overlay %s\n", n)
	}
	return nil
}
