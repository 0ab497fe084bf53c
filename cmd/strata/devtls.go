package main

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"

	"github.com/strata-hpc/strata/internal/audit"
	"github.com/strata-hpc/strata/internal/pki"
)

// devTLS makes the dev cluster's CA and certificates on first start (in
// DIR/ca and DIR/tls) and loads them; a restart reuses them. One TLS
// directory holds a certificate per role, so that clients on this
// machine find theirs there (see addTLSFlags).
func devTLS(dir, vip string) (map[pki.Role]*pki.Identity, error) {
	caDir, tlsDir := devCADir(dir), devTLSDir(dir)
	if err := pki.InitCA(caDir, "dev"); err != nil && !errors.Is(err, pki.ErrExists) {
		return nil, fmt.Errorf("dev CA: %w", err)
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1)}
	if ip := net.ParseIP(vip); ip != nil {
		ips = append(ips, ip)
	}
	ids := map[pki.Role]*pki.Identity{}
	for _, r := range pki.Roles {
		if !fileExists(filepath.Join(tlsDir, pki.CertFile(r))) {
			req := pki.Request{Role: r, Name: "dev-" + string(r), IPs: ips, DNS: []string{"localhost"}}
			if _, err := pki.Issue(caDir, req, tlsDir); err != nil {
				return nil, fmt.Errorf("dev certificates: %w", err)
			}
		}
		id, err := pki.Load(tlsDir, r, nil)
		if err != nil {
			return nil, fmt.Errorf("dev certificates: %w", err)
		}
		ids[r] = id
	}
	return ids, nil
}

// devAudit opens the dev cluster's audit log.
func devAudit(dir string, d *devCluster) (*audit.Log, error) {
	return audit.Open(filepath.Join(dir, "audit.log"), d.log)
}
