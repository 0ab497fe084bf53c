package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// DefaultReloadInterval is how often an Identity looks at its files for
// changes (at most: it looks only when a handshake needs them).
const DefaultReloadInterval = time.Second

// Identity is one holder's certificate and key for one role, and the
// cluster CA bundle it trusts. It re-reads its files when they change on
// disk, so that a rotated certificate (or a CA bundle holding a new CA)
// is used by the next handshake without a restart; established
// connections keep the certificate they were made with.
type Identity struct {
	role     Role
	dir      string
	log      *slog.Logger
	interval time.Duration

	mu      sync.Mutex
	cert    *tls.Certificate
	pool    *x509.CertPool
	stamps  [3]fileStamp
	checked time.Time
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// Load reads ca.crt, ROLE.crt and ROLE.key from dir.
func Load(dir string, role Role, log *slog.Logger) (*Identity, error) {
	if _, err := ParseRole(string(role)); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	id := &Identity{role: role, dir: dir, log: log.With("component", "pki", "role", role), interval: DefaultReloadInterval}
	stamps, err := id.stat()
	if err != nil {
		return nil, err
	}
	if err := id.load(stamps); err != nil {
		return nil, err
	}
	id.checked = time.Now()
	return id, nil
}

// SetReloadInterval changes how often files are checked (tests use short
// intervals).
func (id *Identity) SetReloadInterval(d time.Duration) {
	id.mu.Lock()
	id.interval = d
	id.mu.Unlock()
}

// Role is the role this identity presents.
func (id *Identity) Role() Role { return id.role }

// Dir is the TLS directory the identity reads.
func (id *Identity) Dir() string { return id.dir }

// For returns the identity of another role from the same directory (a
// metaserver dialing its peers presents its meta certificate; a client
// library inside the boot controller presents bootctl).
func (id *Identity) For(role Role) (*Identity, error) {
	if role == id.role {
		return id, nil
	}
	other, err := Load(id.dir, role, id.log)
	if err != nil {
		return nil, err
	}
	other.SetReloadInterval(id.interval)
	return other, nil
}

func (id *Identity) files() [3]string {
	return [3]string{
		filepath.Join(id.dir, CACertFile),
		filepath.Join(id.dir, CertFile(id.role)),
		filepath.Join(id.dir, KeyFile(id.role)),
	}
}

func (id *Identity) stat() ([3]fileStamp, error) {
	var st [3]fileStamp
	for i, f := range id.files() {
		fi, err := os.Stat(f)
		if err != nil {
			return st, fmt.Errorf("pki: %w", err)
		}
		st[i] = fileStamp{mod: fi.ModTime(), size: fi.Size()}
	}
	return st, nil
}

// load reads and checks all three files; on error nothing changes.
func (id *Identity) load(stamps [3]fileStamp) error {
	f := id.files()
	caPEM, err := os.ReadFile(f[0])
	if err != nil {
		return fmt.Errorf("pki: read CA bundle: %w", err)
	}
	cas, err := parseCerts(caPEM)
	if err != nil {
		return fmt.Errorf("pki: CA bundle %s: %w", f[0], err)
	}
	pool := x509.NewCertPool()
	for _, c := range cas {
		pool.AddCert(c)
	}
	cert, err := tls.LoadX509KeyPair(f[1], f[2])
	if err != nil {
		return fmt.Errorf("pki: load %s certificate: %w", id.role, err)
	}
	if got := RoleOf(cert.Leaf); got != id.role {
		return fmt.Errorf("pki: %s holds a certificate for role %q, not %q", f[1], got, id.role)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("pki: %s is not signed by a CA in %s: %w", f[1], f[0], err)
	}
	id.mu.Lock()
	id.cert, id.pool, id.stamps = &cert, pool, stamps
	id.mu.Unlock()
	return nil
}

// current returns the certificate and CA pool, re-reading the files first
// when they changed since the last look (at most once per interval). A
// change that does not load (a certificate written before its key) is
// logged and the previous pair kept; the next look tries again.
func (id *Identity) current() (*tls.Certificate, *x509.CertPool) {
	id.mu.Lock()
	due := time.Since(id.checked) >= id.interval
	if due {
		id.checked = time.Now()
	}
	cert, pool, old := id.cert, id.pool, id.stamps
	id.mu.Unlock()
	if !due {
		return cert, pool
	}
	stamps, err := id.stat()
	if err != nil || stamps == old {
		return cert, pool
	}
	if err := id.load(stamps); err != nil {
		id.log.Warn("certificate files changed but do not load; keeping the previous ones", "err", err)
		return cert, pool
	}
	id.log.Info("certificate files reloaded", "dir", id.dir)
	id.mu.Lock()
	defer id.mu.Unlock()
	return id.cert, id.pool
}

// Certificate returns the certificate in use (for tests and status).
func (id *Identity) Certificate() *x509.Certificate {
	c, _ := id.current()
	return c.Leaf
}

// Peer is what a verified certificate says about its holder.
type Peer struct {
	Role   Role
	Name   string // the certificate's common name
	Tenant string // "" unless the certificate is bound to a tenant
}

// ErrNoCertificate is the verification error when a peer sent none.
var ErrNoCertificate = errors.New("pki: peer sent no certificate")

// verify checks a peer's chain against the current CA bundle, for the
// given use, and that its role is one of allowed (none: any role).
func (id *Identity) verify(chain []*x509.Certificate, usage x509.ExtKeyUsage, allowed []Role) (Peer, error) {
	if len(chain) == 0 {
		return Peer{}, ErrNoCertificate
	}
	_, pool := id.current()
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	leaf := chain[0]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return Peer{}, fmt.Errorf("pki: certificate of %q: %w", leaf.Subject.CommonName, err)
	}
	p := Peer{Role: RoleOf(leaf), Name: leaf.Subject.CommonName, Tenant: TenantOf(leaf)}
	if p.Role == "" {
		return p, fmt.Errorf("pki: certificate of %q carries no strata role", p.Name)
	}
	if len(allowed) > 0 && !slices.Contains(allowed, p.Role) {
		return p, fmt.Errorf("pki: %q has role %s, want %v", p.Name, p.Role, allowed)
	}
	return p, nil
}
