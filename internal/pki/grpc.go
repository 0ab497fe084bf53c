package pki

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/strata-hpc/strata/internal/audit"
)

// ServerCredentials are gRPC server credentials requiring a cluster
// certificate with one of the allowed roles; every failed handshake is
// written to the audit log (a may be nil) as action "tls.handshake".
func (id *Identity) ServerCredentials(a *audit.Log, log *slog.Logger, allowed ...Role) credentials.TransportCredentials {
	return &auditedCreds{TransportCredentials: credentials.NewTLS(id.ServerTLS(allowed...)),
		fails: newFailureLog(a, log, "grpc")}
}

// DialOption makes gRPC connections present this identity and accept only
// servers of the given roles.
func (id *Identity) DialOption(serverRoles ...Role) grpc.DialOption {
	return grpc.WithTransportCredentials(credentials.NewTLS(id.ClientTLS(serverRoles...)))
}

// PeerFromContext returns the verified certificate holder of a gRPC call,
// or false on a connection without TLS.
func PeerFromContext(ctx context.Context) (Peer, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Peer{}, false
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return Peer{}, false
	}
	return PeerOfState(&ti.State)
}

// auditedCreds records failed server handshakes.
type auditedCreds struct {
	credentials.TransportCredentials
	fails *failureLog
}

func (c *auditedCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		c.fails.record(raw.RemoteAddr(), err)
	}
	return conn, info, err
}

func (c *auditedCreds) Clone() credentials.TransportCredentials {
	return &auditedCreds{TransportCredentials: c.TransportCredentials.Clone(), fails: c.fails}
}

// Audit records of failed handshakes are limited to failureBurst per
// failureWindow per listener, so that a port scan or a misconfigured
// client in a loop cannot fill the disk; the number left out is written
// with the next record.
const (
	failureBurst  = 20
	failureWindow = time.Second
)

// failureLog audits refused connections of one listener.
type failureLog struct {
	audit   *audit.Log
	log     *slog.Logger
	service string
	burst   int
	window  time.Duration

	mu         sync.Mutex
	windowFrom time.Time
	inWindow   int
	suppressed int
}

func newFailureLog(a *audit.Log, log *slog.Logger, service string) *failureLog {
	return &failureLog{audit: a, log: logOrDiscard(log), service: service, burst: failureBurst, window: failureWindow}
}

// record audits a refused connection. The actor is the remote address:
// nothing else about the peer is trustworthy.
func (f *failureLog) record(remote net.Addr, err error) {
	addr := ""
	if remote != nil {
		addr = remote.String()
	}
	f.log.Debug("TLS handshake failed", "service", f.service, "remote", addr, "err", err)
	f.mu.Lock()
	now := time.Now()
	if now.Sub(f.windowFrom) >= f.window {
		f.windowFrom, f.inWindow = now, 0
	}
	f.inWindow++
	if f.inWindow > f.burst {
		f.suppressed++
		f.mu.Unlock()
		return
	}
	left := f.suppressed
	f.suppressed = 0
	f.mu.Unlock()
	attrs := []any{"error", err.Error()}
	if left > 0 {
		attrs = append(attrs, "suppressed_before", left)
	}
	f.audit.Record(context.Background(), "tls.handshake", addr, f.service, audit.Denied, attrs...)
}

func logOrDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
