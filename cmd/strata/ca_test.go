package main

import (
	"bytes"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-hpc/strata/internal/pki"
)

// TestCACommands: strata ca init makes a CA once; ca issue writes a TLS
// directory a daemon can load, records the issue in the CA's audit log,
// and refuses bad input with a usage error.
func TestCACommands(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	out := filepath.Join(t.TempDir(), "node1")
	mustCLIRun(t, "ca", "init", "--dir", dir, "--cluster", "lab")
	if code, _, errOut := cliRun("ca", "init", "--dir", dir); code != 1 || !strings.Contains(errOut, "already exists") {
		t.Fatalf("second ca init: exit %d %q", code, errOut)
	}
	got := mustCLIRun(t, "ca", "issue", "--dir", dir, "--role", "data", "--name", "node1", "--ip", "10.0.0.5", "--ip", "127.0.0.1", "--dns", "node1.lab", "--out", out)
	if !strings.Contains(got, "issued data certificate for node1") {
		t.Fatalf("ca issue said %q", got)
	}
	id, err := pki.Load(out, pki.RoleData, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := id.Certificate()
	if pki.RoleOf(c) != pki.RoleData || len(c.IPAddresses) != 2 || c.DNSNames[0] != "node1.lab" {
		t.Fatalf("certificate: role %s ips %v dns %v", pki.RoleOf(c), c.IPAddresses, c.DNSNames)
	}
	log, err := os.ReadFile(filepath.Join(dir, "audit.log"))
	if err != nil || !strings.Contains(string(log), `"action":"cert.issue"`) || !strings.Contains(string(log), `"object":"node1"`) {
		t.Fatalf("audit log after issue: %q %v", log, err)
	}
	for _, args := range [][]string{
		{"ca"},
		{"ca", "frob"},
		{"ca", "init"},
		{"ca", "issue", "--dir", dir, "--role", "admin", "--name", "x"},
		{"ca", "issue", "--dir", dir, "--role", "data"},
		{"ca", "issue", "--dir", dir, "--role", "data", "--name", "x", "--ip", "not-an-ip"},
		{"ca", "issue", "--dir", dir, "--role", "data", "--name", "x", "--days", "0"},
	} {
		if code, _, errOut := cliRun(args...); code != 2 {
			t.Errorf("%v: exit %d (%s), want 2", args, code, errOut)
		}
	}
}

// TestTLSFlagsRequired: with neither --tls-dir nor --insecure (and no
// STRATA_TLS_DIR, no dev certificates), servers and clients refuse to
// start with an error naming both flags; --insecure warns.
func TestTLSFlagsRequired(t *testing.T) {
	t.Setenv("STRATA_TLS_DIR", "")
	t.Setenv("XDG_DATA_HOME", t.TempDir()) // no dev cluster certificates
	for _, args := range [][]string{
		{"ls", "--meta", "127.0.0.1:1", "/"},
		{"meta", "--id", "m1", "--dir", t.TempDir(), "--raft-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"},
		{"data", "--dir", t.TempDir(), "--listen", "127.0.0.1:0", "--meta", "127.0.0.1:1"},
	} {
		code, _, errOut := cliRun(args...)
		if code != 2 || !strings.Contains(errOut, "--tls-dir") || !strings.Contains(errOut, "--insecure") {
			t.Errorf("%v: exit %d %q; want 2 and an error naming --tls-dir and --insecure", args, code, errOut)
		}
	}
	// A TLS directory without this role's certificate: a clear error.
	dir := t.TempDir()
	code, _, errOut := cliRun("ls", "--tls-dir", dir, "--meta", "127.0.0.1:1", "/")
	if code != 2 || !strings.Contains(errOut, "ca.crt") {
		t.Errorf("ls with an empty --tls-dir: exit %d %q", code, errOut)
	}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	tf := addTLSFlags(fs, true)
	if err := fs.Parse([]string{"--insecure"}); err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	id, err := tf.identity(pki.RoleClient, slog.New(slog.NewTextHandler(&logged, nil)))
	if id != nil || err != nil || !strings.Contains(logged.String(), "WITHOUT TLS") {
		t.Errorf("--insecure: identity %v, err %v, log %q; want plain text and a warning", id, err, logged.String())
	}
}

// TestClientsFindDevCertificates: after `strata dev` made its
// certificates, client commands on the machine use them with no flag (so
// that `make dev` then `strata ls /` just works), and daemons do not.
func TestClientsFindDevCertificates(t *testing.T) {
	t.Setenv("STRATA_TLS_DIR", "")
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	if _, err := devTLS(defaultDevDir(), devServiceIP); err != nil {
		t.Fatal(err)
	}
	client := addTLSFlags(flag.NewFlagSet("c", flag.ContinueOnError), true)
	if *client.dir != devTLSDir(defaultDevDir()) {
		t.Fatalf("client default --tls-dir %q, want the dev cluster's %q", *client.dir, devTLSDir(defaultDevDir()))
	}
	if id, err := client.identity(pki.RoleClient, nil); err != nil || id == nil {
		t.Fatalf("client identity from the dev directory: %v", err)
	}
	daemon := addTLSFlags(flag.NewFlagSet("d", flag.ContinueOnError), false)
	if *daemon.dir != "" {
		t.Fatalf("daemon default --tls-dir %q, want none", *daemon.dir)
	}
	// A second start reuses the CA and certificates.
	before, _ := os.ReadFile(filepath.Join(devTLSDir(defaultDevDir()), "meta.crt"))
	if _, err := devTLS(defaultDevDir(), devServiceIP); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(devTLSDir(defaultDevDir()), "meta.crt"))
	if !bytes.Equal(before, after) || len(before) == 0 {
		t.Fatal("a restart of strata dev re-issued its certificates")
	}
}
