package testcluster

import (
	"net"
	"path/filepath"

	"google.golang.org/grpc"

	"github.com/strata-hpc/strata/internal/pki"
)

// makeTLS makes this cluster's own CA and one certificate per role, all in
// one TLS directory (Cluster.TLSDir).
func (c *Cluster) makeTLS() {
	c.t.Helper()
	dir := c.TLSDir()
	if c.opts.TLSDir == "" {
		if err := MakeTLSDir(c.CADir(), dir); err != nil {
			c.t.Fatalf("testcluster: %v", err)
		}
	}
	c.ids = map[pki.Role]*pki.Identity{}
	for _, r := range pki.Roles {
		id, err := pki.Load(dir, r, c.log)
		if err != nil {
			c.t.Fatalf("testcluster: %v", err)
		}
		c.ids[r] = id
	}
}

// MakeTLSDir makes a CA in caDir and a certificate for every role (for
// 127.0.0.1 and localhost) in tlsDir.
func MakeTLSDir(caDir, tlsDir string) error {
	if err := pki.InitCA(caDir, "testcluster"); err != nil {
		return err
	}
	for _, r := range pki.Roles {
		req := pki.Request{Role: r, Name: "test-" + string(r), IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, DNS: []string{"localhost"}}
		if _, err := pki.Issue(caDir, req, tlsDir); err != nil {
			return err
		}
	}
	return nil
}

// TLSDir is the directory holding ca.crt and ROLE.crt/ROLE.key for every
// role (what `--tls-dir` takes), or "" for an insecure cluster.
func (c *Cluster) TLSDir() string {
	if c.opts.Insecure {
		return ""
	}
	if c.opts.TLSDir != "" {
		return c.opts.TLSDir
	}
	return filepath.Join(c.Dir, "tls")
}

// CADir is the directory of the cluster's CA (ca.crt, ca.key), for tests
// that issue more certificates; "" for an insecure cluster or one given
// Options.TLSDir.
func (c *Cluster) CADir() string {
	if c.opts.Insecure || c.opts.TLSDir != "" {
		return ""
	}
	return filepath.Join(c.Dir, "ca")
}

// Identity is the cluster's identity for a role, or nil when insecure.
func (c *Cluster) Identity(r pki.Role) *pki.Identity { return c.ids[r] }

// ClientTLS is the identity to put in client.Config.TLS (nil when
// insecure).
func (c *Cluster) ClientTLS() *pki.Identity { return c.ids[pki.RoleClient] }

// DialCreds is the gRPC transport option of a test that dials a server of
// the given role directly, as a client.
func (c *Cluster) DialCreds(server pki.Role) grpc.DialOption {
	return pki.DialCreds(c.ClientTLS(), server)
}

// DialCredsAs is DialCreds presenting the certificate of role as.
func (c *Cluster) DialCredsAs(as, server pki.Role) grpc.DialOption {
	return pki.DialCreds(c.Identity(as), server)
}
