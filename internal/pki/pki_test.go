package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/strata-hpc/strata/internal/audit"
	_ "github.com/strata-hpc/strata/proto/stratapb" // registers the services
)

func newCA(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	if err := InitCA(dir, "test"); err != nil {
		t.Fatal(err)
	}
	return dir
}

func issue(t *testing.T, caDir string, r Role, out string) *x509.Certificate {
	t.Helper()
	c, err := Issue(caDir, Request{Role: r, Name: "n-" + string(r), IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}, out)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestIssueCarriesRoleAndTenant(t *testing.T) {
	ca := newCA(t)
	if err := InitCA(ca, "again"); !errors.Is(err, ErrExists) {
		t.Fatalf("second InitCA: %v, want ErrExists", err)
	}
	out := t.TempDir()
	c, err := Issue(ca, Request{Role: RoleClient, Name: "alice", Tenant: "physics"}, out)
	if err != nil {
		t.Fatal(err)
	}
	if RoleOf(c) != RoleClient || TenantOf(c) != "physics" || c.Subject.CommonName != "alice" {
		t.Fatalf("role %q tenant %q name %q", RoleOf(c), TenantOf(c), c.Subject.CommonName)
	}
	if k, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Fatalf("key %T, want ECDSA P-256", c.PublicKey)
	}
	fi, err := os.Stat(filepath.Join(out, KeyFile(RoleClient)))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v, want mode 0600", fi, err)
	}
	id, err := Load(out, RoleClient, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := id.Certificate().SerialNumber; got.Cmp(c.SerialNumber) != 0 {
		t.Fatalf("loaded serial %v, want %v", got, c.SerialNumber)
	}
	// Bad input: a clear error, nothing written.
	for _, req := range []Request{{Role: "admin", Name: "x"}, {Role: RoleData}, {Role: RoleData, Name: "x", Tenant: "a/b"}} {
		if _, err := Issue(ca, req, t.TempDir()); err == nil {
			t.Errorf("Issue(%+v) succeeded", req)
		}
	}
	if _, err := Load(out, RoleMeta, nil); err == nil {
		t.Error("Load of a role with no certificate succeeded")
	}
}

// TestLoadRefusesWrongRoleAndForeignCA: a certificate file of another role
// or another CA does not load.
func TestLoadRefusesWrongRoleAndForeignCA(t *testing.T) {
	a, b := newCA(t), newCA(t)
	out := t.TempDir()
	issue(t, a, RoleData, out)
	// data.crt from CA b, next to CA a's bundle.
	other := t.TempDir()
	issue(t, b, RoleData, other)
	for _, f := range []string{CertFile(RoleData), KeyFile(RoleData)} {
		buf, _ := os.ReadFile(filepath.Join(other, f))
		os.WriteFile(filepath.Join(out, f), buf, 0o600)
	}
	if _, err := Load(out, RoleData, nil); err == nil || !strings.Contains(err.Error(), "not signed") {
		t.Fatalf("Load with a foreign certificate: %v", err)
	}
	// meta.crt that says data.
	buf, _ := os.ReadFile(filepath.Join(other, CertFile(RoleData)))
	os.WriteFile(filepath.Join(out, CertFile(RoleMeta)), buf, 0o644)
	buf, _ = os.ReadFile(filepath.Join(other, KeyFile(RoleData)))
	os.WriteFile(filepath.Join(out, KeyFile(RoleMeta)), buf, 0o600)
	if _, err := Load(out, RoleMeta, nil); err == nil {
		t.Fatal("Load of a data certificate as meta succeeded")
	}
}

// handshake runs a TLS handshake over a pipe and returns both errors.
func handshake(srv, cli *tls.Config) (error, error) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	done := make(chan error, 1)
	go func() {
		s := tls.Server(a, srv)
		err := s.Handshake()
		if err == nil {
			// TLS 1.3: the client learns of a refused certificate on
			// its first read.
			_, err = s.Write([]byte{1})
		}
		done <- err
		a.Close()
	}()
	c := tls.Client(b, cli)
	err := c.Handshake()
	if err == nil {
		_, err = c.Read(make([]byte, 1))
	}
	b.Close()
	return <-done, err
}

// TestVerifyRolesAndReload: servers accept only the roles asked for;
// clients accept only servers of the roles they expect; a CA bundle with
// an added CA is picked up without a restart.
func TestVerifyRolesAndReload(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	for _, r := range Roles {
		issue(t, ca, r, dir)
	}
	load := func(r Role) *Identity {
		id, err := Load(dir, r, nil)
		if err != nil {
			t.Fatal(err)
		}
		id.SetReloadInterval(0)
		return id
	}
	meta, data, cl := load(RoleMeta), load(RoleData), load(RoleClient)
	if se, ce := handshake(meta.ServerTLS(RoleMeta), data.ClientTLS(RoleMeta)); se == nil || ce == nil {
		t.Fatalf("data cert on a meta-only listener: server %v client %v", se, ce)
	}
	if se, ce := handshake(meta.ServerTLS(RoleMeta), meta.ClientTLS(RoleMeta)); se != nil || ce != nil {
		t.Fatalf("meta to meta: server %v client %v", se, ce)
	}
	// A client certificate passing for a server is refused by clients.
	if _, ce := handshake(cl.ServerTLS(), cl.ClientTLS(RoleMeta, RoleData)); ce == nil {
		t.Fatal("client accepted a server with a client certificate")
	}

	// A second CA (a CA switch): its certificates are refused until the
	// bundles hold both CAs, then accepted, without reloading anything by
	// hand.
	ca2 := newCA(t)
	dir2 := t.TempDir()
	issue(t, ca2, RoleClient, dir2)
	cl2, err := Load(dir2, RoleClient, nil)
	if err != nil {
		t.Fatal(err)
	}
	if se, _ := handshake(meta.ServerTLS(), cl2.ClientTLS()); se == nil {
		t.Fatal("certificate of a foreign CA accepted")
	}
	old, _ := os.ReadFile(filepath.Join(dir, CACertFile))
	add, _ := os.ReadFile(filepath.Join(ca2, CACertFile))
	for _, d := range []string{dir, dir2} {
		if err := writeFileAtomic(filepath.Join(d, CACertFile), append(append([]byte(nil), old...), add...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cl2.SetReloadInterval(0)
	time.Sleep(10 * time.Millisecond) // a distinct modification time on coarse clocks
	if se, _ := handshake(meta.ServerTLS(), cl2.ClientTLS()); se != nil {
		t.Fatalf("certificate of the added CA refused after the bundle changed: %v", se)
	}
}

// TestEveryMethodHasRoles: every method of every service in
// proto/stratapb has an entry in MethodRoles (a new RPC cannot be
// forgotten), and every entry names a real method.
func TestEveryMethodHasRoles(t *testing.T) {
	seen := map[string]bool{}
	protoregistry.GlobalFiles.RangeFilesByPackage("strata.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := 0; i < fd.Services().Len(); i++ {
			sd := fd.Services().Get(i)
			for j := 0; j < sd.Methods().Len(); j++ {
				full := "/" + string(sd.FullName()) + "/" + string(sd.Methods().Get(j).Name())
				seen[full] = true
				roles, ok := MethodRoles[full]
				if !ok || len(roles) == 0 {
					t.Errorf("%s has no roles in MethodRoles (internal/pki/authz.go)", full)
				}
			}
		}
		return true
	})
	if len(seen) < 40 {
		t.Fatalf("only %d methods found in strata.v1: are the services registered?", len(seen))
	}
	for m := range MethodRoles {
		if !seen[m] {
			t.Errorf("MethodRoles names %s, which no service has", m)
		}
	}
	// The rules the issue names, spelled out.
	for _, c := range []struct {
		method string
		role   Role
		ok     bool
	}{
		{"/strata.v1.Meta/RegisterDataServer", RoleClient, false},
		{"/strata.v1.Meta/Heartbeat", RoleClient, false},
		{"/strata.v1.Meta/RegisterDataServer", RoleData, true},
		{"/strata.v1.Meta/Create", RoleData, false},
		{"/strata.v1.Meta/CommitChunks", RoleData, false},
		{"/strata.v1.Meta/Create", RoleClient, true},
		{"/strata.v1.Repair/RebuildShard", RoleClient, false},
		{"/strata.v1.Repair/RebuildShard", RoleMeta, true},
		{"/strata.v1.Data/DeleteShard", RoleClient, false},
	} {
		got := false
		for _, r := range MethodRoles[c.method] {
			got = got || r == c.role
		}
		if got != c.ok {
			t.Errorf("%s by %s allowed=%v, want %v", c.method, c.role, got, c.ok)
		}
	}
}

// TestHandshakeAuditBounded: a flood of failed handshakes writes at most
// the burst of records per window; the next record says how many were
// left out.
func TestHandshakeAuditBounded(t *testing.T) {
	var buf bytes.Buffer
	f := newFailureLog(audit.New(&buf, nil), nil, "grpc")
	f.burst, f.window = 5, time.Hour
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 9), Port: 1}
	for i := 0; i < 8; i++ {
		f.record(addr, errors.New("tls: no certificate"))
	}
	if n := strings.Count(buf.String(), "tls.handshake"); n != 5 {
		t.Fatalf("%d records for 8 failures with a burst of 5", n)
	}
	f.mu.Lock()
	f.windowFrom = time.Time{} // the window is over
	f.mu.Unlock()
	f.record(addr, errors.New("tls: no certificate"))
	if !strings.Contains(buf.String(), `"suppressed_before":3`) {
		t.Fatalf("the record after the flood does not count what was left out:\n%s", buf.String())
	}
}
