package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/strata-hpc/strata/client"
)

func init() {
	register(command{name: "quota", summary: "byte and file quotas of tenants and directories: set, show", run: runQuota})
}

const quotaUsage = `usage: strata quota [flags] set PATH --bytes N --files N
       strata quota [flags] set --tenant-quota NAME --bytes N --files N
       strata quota [flags] show
Bytes are logical file sizes (suffixes K, M, G, T: powers of 1024); files
are inodes of every kind. 0 means no limit. A write past a quota fails with
EDQUOT ("disk quota exceeded"). A tenant's quota is set by the
administrator; a tenant may set quotas on its own directories.`

func runQuota(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("quota", stderr)
	cf := addClientFlags(fs)
	tenant := fs.String("tenant-quota", "", "set: the quota of this tenant (administrator)")
	bytesArg := fs.String("bytes", "0", "set: byte limit (0: none)")
	files := fs.Uint64("files", 0, "set: file (inode) limit (0: none)")
	fs.Usage = func() { fmt.Fprintln(stderr, quotaUsage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return usageErr("%v", err)
	}
	rest := fs.Args()
	if len(rest) > 1 && rest[0] == "set" {
		// Flags may follow the subcommand and the path:
		// strata quota set /d --bytes 1G.
		var pos []string
		for more := rest[1:]; len(more) > 0; {
			if err := fs.Parse(more); err != nil {
				return usageErr("%v", err)
			}
			if more = fs.Args(); len(more) > 0 {
				pos, more = append(pos, more[0]), more[1:]
			}
		}
		rest = append([]string{"set"}, pos...)
	}
	switch {
	case len(rest) == 1 && rest[0] == "show":
	case len(rest) == 1 && rest[0] == "set" && *tenant != "":
	case len(rest) == 2 && rest[0] == "set" && *tenant == "":
	default:
		return usageErr("quota: bad subcommand or arguments %q\n%s", rest, quotaUsage)
	}
	maxBytes, err := parseBytes(*bytesArg)
	if err != nil {
		return usageErr("--bytes: %v", err)
	}
	c, err := cf.open()
	if err != nil {
		return err
	}
	defer c.Close()
	if rest[0] == "show" {
		return showQuotas(ctx, c, stdout)
	}
	target := client.QuotaTarget{Tenant: *tenant}
	if *tenant == "" {
		target.Path = rest[1]
	}
	q, err := c.SetQuota(ctx, target, maxBytes, *files)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "quota of %s: %s bytes, %s files (in use: %s, %d files)\n", quotaWhat(q.GetTenantQuota(), q.GetTenant(), q.GetPath()),
		limitText(q.GetMaxBytes(), true), limitText(q.GetMaxFiles(), false), humanBytes(q.GetUsedBytes()), q.GetUsedFiles())
	return nil
}

func quotaWhat(tenantQuota bool, tenant, path string) string {
	if tenantQuota {
		return "tenant " + tenant
	}
	return path
}

func showQuotas(ctx context.Context, c *client.Client, stdout io.Writer) error {
	list, err := c.ListQuotas(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "QUOTA\tTENANT\tBYTES USED\tMAX BYTES\tFILES USED\tMAX FILES")
	for _, q := range list {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\n", quotaWhat(q.GetTenantQuota(), q.GetTenant(), q.GetPath()), q.GetTenant(),
			q.GetUsedBytes(), limitText(q.GetMaxBytes(), true), q.GetUsedFiles(), limitText(q.GetMaxFiles(), false))
	}
	return tw.Flush()
}

// parseBytes reads a byte count with an optional K, M, G or T suffix.
func parseBytes(s string) (uint64, error) {
	mult := uint64(1)
	u := strings.ToUpper(strings.TrimSuffix(strings.ToUpper(s), "B"))
	if i := strings.IndexAny(u, "KMGT"); i == len(u)-1 && i > 0 {
		mult = 1 << (10 * (strings.IndexByte("KMGT", u[i]) + 1))
		u = u[:i]
	}
	v, err := strconv.ParseUint(u, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a byte count", s)
	}
	if v > (1<<63)/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return v * mult, nil
}

// isQuotaErr reports whether err is a quota refusal (EDQUOT).
func isQuotaErr(err error) bool { return errors.Is(err, syscall.EDQUOT) }
