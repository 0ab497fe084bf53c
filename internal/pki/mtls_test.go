package pki_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/strata-hpc/strata/dataserver"
	"github.com/strata-hpc/strata/internal/audit"
	"github.com/strata-hpc/strata/internal/metaconn"
	"github.com/strata-hpc/strata/internal/pki"
	"github.com/strata-hpc/strata/internal/testcluster"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// These tests run a real cluster over real loopback sockets with mutual
// TLS (testcluster's default) and attack it from outside.

// syncBuffer is an audit sink the test can read while servers write.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitAudit waits until the audit log holds a line with every one of subs.
func waitAudit(t *testing.T, buf *syncBuffer, subs ...string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, line := range strings.Split(buf.String(), "\n") {
			all := true
			for _, s := range subs {
				all = all && strings.Contains(line, s)
			}
			if all {
				return
			}
		}
	}
	t.Fatalf("no audit record with %q in:\n%s", subs, buf.String())
}

func newSecureCluster(t *testing.T, data int) (*testcluster.Cluster, *syncBuffer) {
	t.Helper()
	buf := &syncBuffer{}
	c := testcluster.New(t, testcluster.Options{Meta: 1, Data: data, Audit: audit.New(buf, nil)})
	if c.TLSDir() == "" {
		t.Fatal("testcluster runs without TLS by default")
	}
	return c, buf
}

// probe connects to addr the way an outsider without a certificate would
// and returns every byte the server sent. plain speaks HTTP/2 in clear
// text; otherwise a TLS client with no certificate sends one request.
func probe(t *testing.T, addr string, plain bool) ([]byte, error) {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	var conn net.Conn = raw
	if !plain {
		tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}) //nolint:gosec // the attacker's side
		if err := tc.Handshake(); err != nil {
			return nil, err
		}
		conn = tc
	}
	if _, err := conn.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		return nil, err
	}
	var got bytes.Buffer
	_, err = got.ReadFrom(conn)
	return got.Bytes(), err
}

// TestNoCertificateOnlyTLSFailure: without a certificate, the meta gRPC,
// data gRPC, raft and metrics ports answer nothing but a TLS failure: a
// TLS client gets a handshake alert and no application byte; a plain-text
// client gets at most a TLS alert record. gRPC calls without a
// certificate fail Unavailable. Every refusal is audited.
func TestNoCertificateOnlyTLSFailure(t *testing.T) {
	c, buf := newSecureCluster(t, 1)
	ports := map[string]string{
		"meta grpc": c.Meta[0].Cfg.GRPCAddr,
		"raft":      c.Meta[0].Cfg.RaftAddr,
		"data grpc": c.Data[0].Srv.Addr(),
	}
	for name, addr := range ports {
		got, err := probe(t, addr, false)
		if err == nil || len(got) > 0 || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("%s: TLS without a certificate: read %q, err %v; want a certificate alert and nothing else", name, got, err)
		}
		got, _ = probe(t, addr, true)
		if len(got) > 0 && got[0] != 0x15 { // 0x15: a TLS alert record
			t.Errorf("%s: plain text got %q, want nothing or a TLS alert", name, got)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, addr := range []string{c.Meta[0].Cfg.GRPCAddr, c.Data[0].Srv.Addr()} {
		cc, err := grpc.NewClient(addr, metaconn.DialOptions(pki.DialCreds(nil))...)
		if err != nil {
			t.Fatal(err)
		}
		_, err = stratapb.NewMetaClient(cc).ClusterStatus(ctx, &stratapb.ClusterStatusRequest{})
		cc.Close()
		if status.Code(err) != codes.Unavailable {
			t.Errorf("%s: plain-text call: %v, want Unavailable", addr, err)
		}
	}
	waitAudit(t, buf, `"action":"tls.handshake"`, `"object":"grpc"`, `"outcome":"denied"`)
	waitAudit(t, buf, `"action":"tls.handshake"`, `"object":"raft"`, `"outcome":"denied"`)
}

// attacker is the TLS configuration of someone holding a certificate of
// role r from the cluster whose TLS directory is dir, who accepts any
// server (so that it is the server's verdict the test sees).
func attacker(t *testing.T, dir string, r pki.Role) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, pki.CertFile(r)), filepath.Join(dir, pki.KeyFile(r)))
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13} //nolint:gosec // the attacker's side
}

// TestForeignCARefused: certificates of another cluster's CA, even with
// the right role, are refused by every server (and audited), and a client
// of this cluster refuses the other cluster's servers.
func TestForeignCARefused(t *testing.T) {
	c, buf := newSecureCluster(t, 1)
	other := testcluster.New(t, testcluster.Options{Meta: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	call := func(creds grpc.DialOption, addr string) error {
		cc, err := grpc.NewClient(addr, metaconn.DialOptions(creds)...)
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		_, err = stratapb.NewMetaClient(cc).ClusterStatus(ctx, &stratapb.ClusterStatusRequest{})
		return err
	}
	if err := call(c.DialCreds(pki.RoleMeta), c.Meta[0].Cfg.GRPCAddr); err != nil {
		t.Fatalf("own client: %v", err)
	}
	for _, r := range pki.Roles {
		creds := grpc.WithTransportCredentials(credentials.NewTLS(attacker(t, other.TLSDir(), r)))
		if err := call(creds, c.Meta[0].Cfg.GRPCAddr); status.Code(err) != codes.Unavailable {
			t.Errorf("foreign %s certificate to meta: %v, want Unavailable", r, err)
		}
	}
	creds := grpc.WithTransportCredentials(credentials.NewTLS(attacker(t, other.TLSDir(), pki.RoleData)))
	if err := call(creds, c.Data[0].Srv.Addr()); status.Code(err) != codes.Unavailable {
		t.Errorf("foreign data certificate to data: %v, want Unavailable", err)
	}
	if err := call(c.DialCreds(pki.RoleMeta), other.Meta[0].Cfg.GRPCAddr); status.Code(err) != codes.Unavailable {
		t.Errorf("own client to the other cluster: %v, want Unavailable", err)
	}
	// Raft: a foreign meta certificate cannot join the conversation.
	rc, err := tls.Dial("tcp", c.Meta[0].Cfg.RaftAddr, attacker(t, other.TLSDir(), pki.RoleMeta))
	if err == nil {
		rc.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = rc.Read(make([]byte, 1))
		rc.Close()
		if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("raft accepted a foreign meta certificate (read: %v)", err)
		}
	}
	waitAudit(t, buf, `"action":"tls.handshake"`, `"object":"raft"`, "unknown authority")
	waitAudit(t, buf, `"action":"tls.handshake"`, `"object":"grpc"`, "unknown authority")
}

// TestRolesEnforced: a client certificate cannot register or heartbeat as
// a dataserver, nor order a rebuild; a data certificate cannot create
// files or directories; a client cannot join raft. Refusals are
// PermissionDenied and audited.
func TestRolesEnforced(t *testing.T) {
	c, buf := newSecureCluster(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn := func(as, server pki.Role, addr string) *grpc.ClientConn {
		cc, err := grpc.NewClient(addr, metaconn.DialOptions(c.DialCredsAs(as, server))...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	leader := c.Meta[c.WaitLeader()].Cfg.GRPCAddr
	asClient := stratapb.NewMetaClient(conn(pki.RoleClient, pki.RoleMeta, leader))
	asData := stratapb.NewMetaClient(conn(pki.RoleData, pki.RoleMeta, leader))
	before := c.Meta[0].Srv.Stats()
	denied := func(what string, err error) {
		t.Helper()
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s: %v, want PermissionDenied", what, err)
		}
	}
	_, err := asClient.RegisterDataServer(ctx, &stratapb.RegisterDataServerRequest{Uuid: "00000000-0000-0000-0000-00000000beef", Addr: "127.0.0.1:1"})
	denied("client RegisterDataServer", err)
	_, err = asClient.Heartbeat(ctx, &stratapb.HeartbeatRequest{Id: 1})
	denied("client Heartbeat", err)
	_, err = asData.Create(ctx, &stratapb.CreateRequest{Parent: 1, Name: "evil", Mode: 0o644})
	denied("data Create", err)
	_, err = asData.Mkdir(ctx, &stratapb.MkdirRequest{Parent: 1, Name: "evil", Mode: 0o755})
	denied("data Mkdir", err)
	_, err = asData.CommitChunks(ctx, &stratapb.CommitChunksRequest{Ino: 1})
	denied("data CommitChunks", err)
	repair := stratapb.NewRepairClient(conn(pki.RoleClient, pki.RoleData, c.Data[0].Srv.Addr()))
	_, err = repair.RebuildShard(ctx, &stratapb.RebuildShardRequest{})
	denied("client RebuildShard", err)
	_, err = stratapb.NewDataClient(conn(pki.RoleClient, pki.RoleData, c.Data[0].Srv.Addr())).DeleteShard(ctx, &stratapb.DeleteShardRequest{Key: &stratapb.ShardKey{ChunkId: 1}})
	denied("client DeleteShard", err)
	// What each role may do still works.
	if _, err := asClient.Mkdir(ctx, &stratapb.MkdirRequest{Header: &stratapb.RequestHeader{ClientId: "t", RequestId: 1}, Parent: 1, Name: "ok", Mode: 0o755}); err != nil {
		t.Fatalf("client Mkdir: %v", err)
	}
	if _, err := asData.ClusterStatus(ctx, &stratapb.ClusterStatusRequest{}); err != nil {
		t.Fatalf("data ClusterStatus: %v", err)
	}
	after := c.Meta[0].Srv.Stats()
	if after.Inodes != before.Inodes+1 {
		t.Errorf("inodes %d -> %d: a refused call changed the namespace", before.Inodes, after.Inodes)
	}
	// Raft wants role meta.
	dial := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", c.Meta[0].Cfg.RaftAddr)
	}
	if rc, err := c.ClientTLS().Dial(ctx, dial, pki.RoleMeta); err == nil {
		rc.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = rc.Read(make([]byte, 1))
		rc.Close()
		if err == nil {
			t.Error("raft accepted a client certificate")
		}
	}
	waitAudit(t, buf, `"action":"rpc.authorize"`, `"actor":"client:test-client"`, `RegisterDataServer`, `"outcome":"denied"`)
	waitAudit(t, buf, `"action":"rpc.authorize"`, `"actor":"data:test-data"`, `Create`)
	waitAudit(t, buf, `"action":"tls.handshake"`, `"object":"raft"`, "role client")
}

// TestMetricsNeedCertificate: the Prometheus endpoint of a dataserver
// (metaservers serve theirs the same way) answers a holder of a cluster
// certificate over HTTPS, and nobody else.
func TestMetricsNeedCertificate(t *testing.T) {
	c, buf := newSecureCluster(t, 0)
	cfg := dataserver.DefaultConfig()
	cfg.Dirs, cfg.Fsync, cfg.ReserveBytes = []string{t.TempDir()}, false, 0
	cfg.MetricsAddr, cfg.Logger = "127.0.0.1:0", slog.New(slog.DiscardHandler)
	cfg.TLS, cfg.Audit = c.Identity(pki.RoleData), audit.New(buf, nil)
	srv, err := dataserver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	url := "https://" + srv.MetricsAddr() + "/metrics"
	scraper := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: c.ClientTLS().ClientTLS()}}
	resp, err := scraper.Get(url)
	if err != nil {
		t.Fatalf("scrape with a client certificate: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "strata_") {
		t.Fatalf("scrape: %s %.200q", resp.Status, body)
	}
	anon := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // the attacker's side
	if resp, err := anon.Get(url); err == nil {
		resp.Body.Close()
		t.Fatalf("scrape without a certificate answered: %s", resp.Status)
	}
	if resp, err := http.Get("http://" + srv.MetricsAddr() + "/metrics"); err == nil {
		resp.Body.Close()
		t.Fatalf("plain-text scrape answered: %s", resp.Status)
	}
	waitAudit(t, buf, `"action":"tls.handshake"`, `"object":"data-metrics"`)
}
