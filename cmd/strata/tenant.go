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
	register(command{name: "tenant", summary: "tenants of a shared cluster: create, list, rm (administrator)", run: runTenant})
}

const tenantUsage = `usage: strata tenant [flags] create NAME
       strata tenant [flags] list
       strata tenant [flags] rm NAME
A tenant has its own namespace (/.tenants/NAME of the global tree is "/"
for it), images, overlays and snapshots, and quotas. create prints the
tenant's token once; give it to the tenant's clients as --tenant-token or
$STRATA_TENANT_TOKEN. rm removes the tenant and everything it stored.`

func runTenant(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("tenant", stderr)
	cf := addClientFlags(fs)
	uid := fs.Uint("uid", 0, "create: owner of the tenant's root directory")
	gid := fs.Uint("gid", 0, "create: group of the tenant's root directory")
	mode := fs.Uint("mode", 0o755, "create: permission bits of the tenant's root directory")
	fs.Usage = func() { fmt.Fprintln(stderr, tenantUsage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return usageErr("%v", err)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return usageErr("tenant: missing subcommand\n%s", tenantUsage)
	}
	want := map[string]int{"create": 1, "list": 0, "ls": 0, "rm": 1}
	n, ok := want[rest[0]]
	if !ok || len(rest)-1 != n {
		return usageErr("tenant: bad subcommand or arguments %q\n%s", rest, tenantUsage)
	}
	if *mode > 0o7777 {
		return usageErr("--mode %o: want permission bits (at most 07777)", *mode)
	}
	c, err := cf.open()
	if err != nil {
		return err
	}
	defer c.Close()
	switch rest[0] {
	case "create":
		tok, info, err := c.CreateTenant(ctx, rest[1], client.TenantOptions{UID: uint32(*uid), GID: uint32(*gid), Mode: uint32(*mode)})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "tenant %s created (root %s)\n", info.GetName(), info.GetRootPath())
		fmt.Fprintf(stdout, "token (shown once; keep it secret): %s\n", tok)
	case "rm":
		res, err := c.RemoveTenant(ctx, rest[1])
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed tenant %s: %d inodes, %d chunks freed\n", rest[1], res.GetInodes(), res.GetFreedChunks())
	default:
		list, err := c.ListTenants(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tROOT\tCREATED\tFILES\tBYTES\tMAX FILES\tMAX BYTES")
		for _, t := range list {
			q := t.GetQuota()
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", t.GetName(), t.GetRootPath(),
				time.Unix(0, t.GetCreatedNs()).UTC().Format(time.RFC3339), q.GetUsedFiles(), humanBytes(q.GetUsedBytes()),
				limitText(q.GetMaxFiles(), false), limitText(q.GetMaxBytes(), true))
		}
		return tw.Flush()
	}
	return nil
}

func limitText(v uint64, bytes bool) string {
	switch {
	case v == 0:
		return "-"
	case bytes:
		return humanBytes(v)
	}
	return fmt.Sprint(v)
}
