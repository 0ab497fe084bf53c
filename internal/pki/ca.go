// Package pki is Strata's cluster public-key infrastructure: one CA per
// isolated cluster (ECDSA P-256), certificates that carry the holder's
// role (meta, data, client, bootctl) as a URI SAN, TLS configurations that
// require and verify a peer certificate from the cluster CA, and reloading
// of certificate, key and CA bundle files so that both leaf certificates
// and the CA itself rotate without downtime.
//
// Files: a CA directory holds ca.crt and ca.key (never leaves the
// operator's machine). A TLS directory, given to every daemon and client
// with --tls-dir, holds ca.crt (the CA bundle: during a CA switch it holds
// the old and the new CA) and ROLE.crt / ROLE.key for each role the holder
// plays (meta.crt, data.crt, client.crt, bootctl.crt), so one directory
// can serve a host that runs several daemons.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Role is what a certificate's holder may do in the cluster.
type Role string

// The roles. A certificate carries exactly one.
const (
	RoleMeta    Role = "meta"    // a metaserver (raft voter)
	RoleData    Role = "data"    // a dataserver
	RoleClient  Role = "client"  // a client: CLI, FUSE mount, boot agent
	RoleBootctl Role = "bootctl" // the boot controller
)

// Roles lists every role, for flag validation and tests.
var Roles = []Role{RoleMeta, RoleData, RoleClient, RoleBootctl}

// ParseRole checks a role name.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("pki: unknown role %q (want meta, data, client or bootctl)", s)
}

// URI SANs that carry a certificate's role and, optionally, its tenant.
const (
	uriScheme    = "strata"
	rolePrefix   = "role/"
	tenantPrefix = "tenant/"
)

// File names in CA and TLS directories.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// CertFile and KeyFile are the names of a role's certificate and key in a
// TLS directory.
func CertFile(r Role) string { return string(r) + ".crt" }

// KeyFile is the name of a role's private key in a TLS directory.
func KeyFile(r Role) string { return string(r) + ".key" }

// Default validities.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	CertValidity = 365 * 24 * time.Hour
)

// ErrExists is returned by InitCA when the directory already holds a CA.
var ErrExists = errors.New("pki: a CA already exists there")

// InitCA makes a new cluster CA in dir (ca.crt, ca.key). It refuses to
// overwrite an existing CA: losing a CA key strands every certificate.
func InitCA(dir, cluster string) error {
	if fileExists(filepath.Join(dir, CAKeyFile)) {
		return fmt.Errorf("%w: %s", ErrExists, dir)
	}
	if cluster == "" {
		cluster = "strata"
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("pki: generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Strata cluster CA " + cluster, Organization: []string{"strata"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("pki: create CA certificate: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pki: CA directory: %w", err)
	}
	if err := writeKey(filepath.Join(dir, CAKeyFile), key); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, CACertFile), pemBlock("CERTIFICATE", der), 0o644)
}

// Request describes a certificate to issue.
type Request struct {
	Role     Role
	Name     string   // common name: the host or user
	IPs      []net.IP // IP SANs
	DNS      []string // DNS SANs
	Tenant   string   // optional: binds the certificate to a tenant
	Validity time.Duration
}

// Issue signs a certificate for req with the CA in caDir and writes
// ROLE.crt, ROLE.key and the CA bundle ca.crt into outDir (files are
// replaced atomically, so a running daemon reloading them never reads a
// half-written file). It returns the new certificate.
func Issue(caDir string, req Request, outDir string) (*x509.Certificate, error) {
	if _, err := ParseRole(string(req.Role)); err != nil {
		return nil, err
	}
	if req.Name == "" {
		return nil, errors.New("pki: a certificate needs a name")
	}
	if strings.ContainsAny(req.Tenant, "/ ") {
		return nil, fmt.Errorf("pki: bad tenant name %q", req.Tenant)
	}
	caCert, caKey, bundle, err := loadCA(caDir)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generate key: %w", err)
	}
	der, err := signLeaf(caCert, caKey, &key.PublicKey, req)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: output directory: %w", err)
	}
	// Key first: a reloader that sees the new certificate before its key
	// refuses the pair and keeps the old one until both are in place.
	if err := writeKey(filepath.Join(outDir, KeyFile(req.Role)), key); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(outDir, CertFile(req.Role)), pemBlock("CERTIFICATE", der), 0o644); err != nil {
		return nil, err
	}
	if filepath.Clean(outDir) != filepath.Clean(caDir) {
		if err := writeFileAtomic(filepath.Join(outDir, CACertFile), bundle, 0o644); err != nil {
			return nil, err
		}
	}
	return x509.ParseCertificate(der)
}

func signLeaf(ca *x509.Certificate, caKey *ecdsa.PrivateKey, pub *ecdsa.PublicKey, req Request) ([]byte, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	validity := req.Validity
	if validity <= 0 {
		validity = CertValidity
	}
	uris := []*url.URL{{Scheme: uriScheme, Opaque: rolePrefix + string(req.Role)}}
	if req.Tenant != "" {
		uris = append(uris, &url.URL{Scheme: uriScheme, Opaque: tenantPrefix + req.Tenant})
	}
	now := time.Now()
	notAfter := now.Add(validity)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: req.Name, OrganizationalUnit: []string{string(req.Role)}},
		NotBefore:    now.Add(-5 * time.Minute), // tolerate small clock skew
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		// Every member both serves and dials (metaservers dial each other
		// and the dataservers; dataservers dial the leader and peers).
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: req.IPs,
		DNSNames:    req.DNS,
		URIs:        uris,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
	if err != nil {
		return nil, fmt.Errorf("pki: sign certificate: %w", err)
	}
	return der, nil
}

// loadCA reads the CA's key and the bundle in ca.crt, and picks the bundle
// certificate that matches the key (during a CA switch the bundle holds
// the old and the new CA; the directory's key is the one that signs).
func loadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
	bundle, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("pki: read CA certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("pki: read CA key: %w", err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, nil, nil, err
	}
	certs, err := parseCerts(bundle)
	if err != nil {
		return nil, nil, nil, err
	}
	for _, c := range certs {
		if pub, ok := c.PublicKey.(*ecdsa.PublicKey); ok && pub.Equal(&key.PublicKey) && c.IsCA {
			return c, key, bundle, nil
		}
	}
	return nil, nil, nil, fmt.Errorf("pki: no CA certificate in %s matches %s", CACertFile, CAKeyFile)
}

// RoleOf returns the role a certificate carries ("" if none).
func RoleOf(c *x509.Certificate) Role {
	for _, u := range c.URIs {
		if u.Scheme == uriScheme && strings.HasPrefix(u.Opaque, rolePrefix) {
			return Role(strings.TrimPrefix(u.Opaque, rolePrefix))
		}
	}
	return ""
}

// TenantOf returns the tenant a certificate is bound to ("" if none).
func TenantOf(c *x509.Certificate) string {
	for _, u := range c.URIs {
		if u.Scheme == uriScheme && strings.HasPrefix(u.Opaque, tenantPrefix) {
			return strings.TrimPrefix(u.Opaque, tenantPrefix)
		}
	}
	return ""
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("pki: serial number: %w", err)
	}
	return s, nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("pki: encode key: %w", err)
	}
	return writeFileAtomic(path, pemBlock("EC PRIVATE KEY", der), 0o600)
}

func parseKey(b []byte) (*ecdsa.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("pki: key file holds no PEM block")
	}
	k, err := x509.ParseECPrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: parse key: %w", err)
	}
	return k, nil
}

func parseCerts(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("pki: parse certificate: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("pki: no certificate in PEM data")
	}
	return out, nil
}

// writeFileAtomic writes data to a temporary file and renames it over path.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err == nil {
		err = tmp.Chmod(mode)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	return nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
