package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/strata-hpc/strata/internal/audit"
	"github.com/strata-hpc/strata/internal/pki"
)

func init() {
	register(command{name: "ca", summary: "cluster CA: ca init makes one, ca issue signs a certificate for a role", run: runCA})
}

func runCA(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageErr("usage: strata ca init --dir DIR | strata ca issue --dir DIR --role ROLE --name NAME [--ip IP]... [--dns NAME]... [--out DIR]")
	}
	switch args[0] {
	case "init":
		return runCAInit(args[1:], stdout, stderr)
	case "issue":
		return runCAIssue(ctx, args[1:], stdout, stderr)
	}
	return usageErr("unknown ca command %q (want init or issue)", args[0])
}

func runCAInit(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ca init", stderr)
	dir := fs.String("dir", "", "directory for the CA (ca.crt, ca.key; required)")
	cluster := fs.String("cluster", "strata", "cluster name, written into the CA's subject")
	if err := parse(fs, args, 0, 0, "ca init --dir DIR [--cluster NAME]"); err != nil {
		return err
	}
	if *dir == "" {
		return usageErr("--dir is required")
	}
	if err := pki.InitCA(*dir, *cluster); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "cluster CA made in %s (keep %s secret; give %s to every node)\n", *dir, pki.CAKeyFile, pki.CACertFile)
	return nil
}

// listFlag collects a repeatable flag (or comma-separated values).
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	*l = append(*l, splitList(v)...)
	return nil
}

func runCAIssue(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ca issue", stderr)
	dir := fs.String("dir", "", "the CA's directory (required)")
	role := fs.String("role", "", "meta, data, client or bootctl (required)")
	name := fs.String("name", "", "the holder: host or user name (required)")
	out := fs.String("out", "", "TLS directory to write ca.crt, ROLE.crt and ROLE.key into (default: DIR/NAME)")
	tenant := fs.String("tenant", "", "bind the certificate to a tenant")
	days := fs.Int("days", int(pki.CertValidity/(24*time.Hour)), "validity in days")
	var ips, dns listFlag
	fs.Var(&ips, "ip", "IP address SAN (repeatable)")
	fs.Var(&dns, "dns", "DNS name SAN (repeatable)")
	if err := parse(fs, args, 0, 0, "ca issue --dir DIR --role ROLE --name NAME [--ip IP]... [--dns NAME]... [--out DIR]"); err != nil {
		return err
	}
	if *dir == "" || *role == "" || *name == "" {
		return usageErr("--dir, --role and --name are required")
	}
	r, err := pki.ParseRole(*role)
	if err != nil {
		return usageErr("%v", err)
	}
	if *days <= 0 {
		return usageErr("--days must be positive")
	}
	req := pki.Request{Role: r, Name: *name, DNS: dns, Tenant: *tenant, Validity: time.Duration(*days) * 24 * time.Hour}
	for _, s := range ips {
		ip := net.ParseIP(s)
		if ip == nil {
			return usageErr("--ip %q is not an IP address", s)
		}
		req.IPs = append(req.IPs, ip)
	}
	if *out == "" {
		*out = filepath.Join(*dir, *name)
	}
	cert, err := pki.Issue(*dir, req, *out)
	if err != nil {
		return err
	}
	if err := recordIssue(ctx, *dir, req, cert.SerialNumber.Text(16)); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "issued %s certificate for %s (serial %x, valid until %s) into %s\n",
		r, *name, cert.SerialNumber, cert.NotAfter.Format(time.DateOnly), *out)
	return nil
}

// recordIssue appends the issue to the CA directory's audit log.
func recordIssue(ctx context.Context, caDir string, req pki.Request, serial string) error {
	a, err := audit.Open(filepath.Join(caDir, "audit.log"), nil)
	if err != nil {
		return err
	}
	defer a.Close()
	attrs := []any{"role", string(req.Role), "serial", serial}
	if req.Tenant != "" {
		attrs = append(attrs, "tenant", req.Tenant)
	}
	a.Record(ctx, "cert.issue", currentUser(), req.Name, audit.Allowed, attrs...)
	return nil
}

func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "unknown"
}
