package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/strata-hpc/strata/client"
)

func init() {
	register(command{name: "snapshot", summary: "copy-on-write snapshots of a directory: create, list, rm, restore", run: runSnapshot})
}

const snapshotUsage = `usage: strata snapshot [flags] create PATH NAME
       strata snapshot [flags] list [PATH]
       strata snapshot [flags] rm NAME
       strata snapshot [flags] restore NAME NEWPATH
A snapshot is a read-only copy of the tree at PATH, made in one metadata
transaction and sharing its data; it is readable at /.snapshots/NAME.`

// runSnapshot dispatches the snapshot subcommands.
func runSnapshot(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("snapshot", stderr)
	cf := addClientFlags(fs)
	fs.Usage = func() { fmt.Fprintln(stderr, snapshotUsage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return usageErr("%v", err)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return usageErr("snapshot: missing subcommand\n%s", snapshotUsage)
	}
	want := map[string][2]int{"create": {2, 2}, "list": {0, 1}, "ls": {0, 1}, "rm": {1, 1}, "restore": {2, 2}}
	n, ok := want[rest[0]]
	if !ok {
		return usageErr("snapshot: unknown subcommand %q\n%s", rest[0], snapshotUsage)
	}
	if len(rest)-1 < n[0] || len(rest)-1 > n[1] {
		return usageErr("snapshot %s: wrong number of arguments\n%s", rest[0], snapshotUsage)
	}
	c, err := cf.open()
	if err != nil {
		return err
	}
	defer c.Close()
	return snapshotCmd(ctx, c, rest[0], rest[1:], stdout)
}

func snapshotCmd(ctx context.Context, c *client.Client, sub string, a []string, stdout io.Writer) error {
	switch sub {
	case "create":
		info, err := c.CreateSnapshot(ctx, a[0], a[1])
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "snapshot %s of %s: %d inodes, %s, at /%s/%s\n", info.Name, info.SourcePath,
			info.Inodes, humanBytes(info.LogicalBytes), client.SnapshotDir, info.Name)
	case "rm":
		res, err := c.DeleteSnapshot(ctx, a[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed snapshot %s: %d inodes, %d chunks freed\n", a[0], res.Inodes, res.FreedChunks)
	case "restore":
		if _, err := c.RestoreSnapshot(ctx, a[0], a[1]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "restored snapshot %s to %s\n", a[0], a[1])
	default: // list
		path := ""
		if len(a) == 1 {
			path = a[0]
		}
		list, err := c.ListSnapshots(ctx, path)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSOURCE\tCREATED\tINODES\tSIZE")
		for _, s := range list {
			created := time.Unix(0, s.CreatedNs).UTC().Format(time.RFC3339)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", s.Name, s.SourcePath, created, s.Inodes, humanBytes(s.LogicalBytes))
		}
		return tw.Flush()
	}
	return nil
}
