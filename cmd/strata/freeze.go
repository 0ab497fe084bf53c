package main

import (
	"context"
	"fmt"
	"io"

	"github.com/strata-hpc/strata/client"
)

func init() {
	register(command{name: "freeze", summary: "make a directory tree immutable, for good (as images are)", run: runFreeze})
	register(command{name: "rmtree", summary: "remove a directory tree in one metadata transaction", run: runRmTree})
}

func runFreeze(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("freeze", stderr)
	cf := addClientFlags(fs)
	if err := fs.Parse(args); err != nil {
		return usageErr("%v", err)
	}
	if fs.NArg() != 1 {
		return usageErr("usage: strata freeze [flags] PATH")
	}
	return withClient(cf, func(c *client.Client) error {
		n, err := c.FreezePath(ctx, fs.Arg(0))
		if err == nil {
			fmt.Fprintf(stdout, "froze %s: %d inodes\n", fs.Arg(0), n)
		}
		return err
	})
}

func runRmTree(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("rmtree", stderr)
	cf := addClientFlags(fs)
	frozen := fs.Bool("frozen", false, "also remove a tree that holds frozen inodes")
	if err := fs.Parse(args); err != nil {
		return usageErr("%v", err)
	}
	if fs.NArg() != 1 {
		return usageErr("usage: strata rmtree [flags] PATH")
	}
	return withClient(cf, func(c *client.Client) error {
		res, err := c.RemoveTreePath(ctx, fs.Arg(0), *frozen)
		if err == nil {
			fmt.Fprintf(stdout, "removed %s: %d inodes, %d chunks freed\n", fs.Arg(0), res.Inodes, res.FreedChunks)
		}
		return err
	})
}

func withClient(cf *clientFlags, fn func(*client.Client) error) error {
	c, err := cf.open()
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c)
}
