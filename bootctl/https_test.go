package bootctl

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-hpc/strata/internal/audit"
	"github.com/strata-hpc/strata/internal/pki"
	"github.com/strata-hpc/strata/internal/testcluster"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestHTTPSPolicy: the boot controller over HTTPS, as `strata bootctl`
// serves it. Firmware without a certificate gets its iPXE script and
// nothing else; check-ins and the admin paths need a certificate of the
// cluster; plain HTTP and certificates of another CA get only a TLS
// failure; refusals are audited.
func TestHTTPSPolicy(t *testing.T) {
	st, tc := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := st.AddNode(ctx, Node{Name: "n1", MACs: []string{"02:00:00:00:00:01"}, BMC: BMC{Addr: "127.0.0.1:1623", User: "u", Password: "p"}}); err != nil {
		t.Fatal(err)
	}
	buf := &lockedBuf{}
	al := audit.New(buf, nil)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	id := tc.Identity(pki.RoleBootctl)
	srv := NewServer(st, ServerConfig{Meta: "127.0.0.1:1", URL: "https://" + lis.Addr().String(), TLS: true, Audit: al})
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(pki.NewListener(lis, id.ServerTLSOptional(), al, nil, "bootctl-http")) //nolint:errcheck // closed below
	t.Cleanup(func() { hs.Close() })
	base := "https://" + lis.Addr().String()

	firmware := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}}} //nolint:gosec // firmware trusts whatever it was given
	agent := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc.ClientTLS().ClientTLS(pki.RoleBootctl)}}
	get := func(c *http.Client, method, path, body string) (int, string, error) {
		req, _ := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	// No certificate: the script, and nothing else.
	if code, body, err := get(firmware, "GET", "/boot/ipxe?mac=02:00:00:00:00:01", ""); err != nil || code != 200 || !strings.HasPrefix(body, "#!ipxe") {
		t.Fatalf("iPXE script without a certificate: %d %q %v", code, body, err)
	}
	ci, _ := json.Marshal(CheckIn{Node: "n1", Image: "evil:1"})
	for _, p := range []struct{ method, path string }{{"POST", "/boot/checkin"}, {"GET", "/boot/unknown"}, {"GET", "/status"}} {
		if code, _, err := get(firmware, p.method, p.path, string(ci)); err != nil || code != http.StatusForbidden {
			t.Errorf("%s %s without a certificate: %d %v, want 403", p.method, p.path, code, err)
		}
	}
	if _, err := st.GetCheckIn(ctx, "n1"); err == nil {
		t.Fatal("a check-in without a certificate was recorded")
	}
	// The boot agent's certificate: check-in accepted.
	if code, body, err := get(agent, "POST", "/boot/checkin", string(ci)); err != nil || code != http.StatusNoContent {
		t.Fatalf("check-in with a client certificate: %d %q %v", code, body, err)
	}
	// A data certificate has no business checking nodes in.
	dataAgent := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc.Identity(pki.RoleData).ClientTLS(pki.RoleBootctl)}}
	if code, _, err := get(dataAgent, "POST", "/boot/checkin", string(ci)); err != nil || code != http.StatusForbidden {
		t.Errorf("check-in with a data certificate: %d %v, want 403", code, err)
	}
	// Plain HTTP: no HTTP answer at all.
	plain := &http.Client{Timeout: 10 * time.Second}
	if resp, err := plain.Get("http://" + lis.Addr().String() + "/boot/ipxe?mac=02:00:00:00:00:01"); err == nil {
		resp.Body.Close()
		t.Errorf("plain HTTP got an HTTP answer: %s", resp.Status)
	}
	// Another cluster's certificate: refused at the handshake.
	other := testcluster.New(t, testcluster.Options{Meta: 1})
	cert, err := tls.LoadX509KeyPair(filepath.Join(other.TLSDir(), "client.crt"), filepath.Join(other.TLSDir(), "client.key"))
	if err != nil {
		t.Fatal(err)
	}
	foreign := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}}} //nolint:gosec // the attacker's side
	if code, _, err := get(foreign, "GET", "/boot/ipxe?mac=02:00:00:00:00:01", ""); err == nil {
		t.Errorf("a certificate of another CA got an answer: %d", code)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		s := buf.String()
		if strings.Contains(s, `"action":"http.authorize"`) && strings.Contains(s, "unknown authority") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit log lacks the refusals:\n%s", s)
		}
	}
}
