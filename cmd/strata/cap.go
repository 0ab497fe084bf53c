package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/strata-hpc/strata/proto/stratapb"
)

func init() {
	register(command{name: "cap", summary: "shard capability keys: cap status, cap rotate", run: runCap})
}

func runCap(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	verb, rest := subcommand(args, "status", "rotate")
	switch verb {
	case "status", "rotate":
		return runCapVerb(ctx, verb, rest, stdout, stderr)
	}
	return usageErr("usage: strata cap status | strata cap rotate")
}

func runCapVerb(ctx context.Context, verb string, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("cap "+verb, stderr)
	cf := addClientFlags(fs)
	if err := parse(fs, args, 0, 0, "cap "+verb); err != nil {
		return err
	}
	c, err := cf.open()
	if err != nil {
		return err
	}
	defer c.Close()
	if verb == "rotate" {
		r, err := c.RotateCapKey(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "new key %d signs from %s\n", r.KeyId, fmtNs(r.ActivateNs))
		printCapKeys(stdout, r.Keys, 0)
		return nil
	}
	st, err := c.CapKeyStatus(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "signing key %d, capabilities valid %s\n", st.SigningKey, time.Duration(st.TtlMs)*time.Millisecond)
	printCapKeys(stdout, st.Keys, st.SigningKey)
	return nil
}

func printCapKeys(w io.Writer, keys []*stratapb.CapKeyInfo, signing uint32) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tSIGNS FROM\tACCEPTED UNTIL\t")
	for _, k := range keys {
		until := "-"
		if k.RetireNs != 0 {
			until = fmtNs(k.RetireNs)
		}
		mark := ""
		if k.Id == signing {
			mark = " (signing)"
		}
		fmt.Fprintf(tw, "%d%s\t%s\t%s\t\n", k.Id, mark, fmtNs(k.ActivateNs), until)
	}
	tw.Flush()
}

func fmtNs(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339) }
