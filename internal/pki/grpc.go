package pki

import (
	"context"
	"log/slog"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/strata-hpc/strata/internal/audit"
)

// ServerCredentials are gRPC server credentials requiring a cluster
// certificate with one of the allowed roles; every failed handshake is
// written to the audit log (a may be nil) as action "tls.handshake".
func (id *Identity) ServerCredentials(a *audit.Log, log *slog.Logger, allowed ...Role) credentials.TransportCredentials {
	return &auditedCreds{TransportCredentials: credentials.NewTLS(id.ServerTLS(allowed...)), audit: a, log: logOrDiscard(log), service: "grpc"}
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
	audit   *audit.Log
	log     *slog.Logger
	service string
}

func (c *auditedCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		recordHandshakeFailure(c.audit, c.log, c.service, raw.RemoteAddr(), err)
	}
	return conn, info, err
}

func (c *auditedCreds) Clone() credentials.TransportCredentials {
	return &auditedCreds{TransportCredentials: c.TransportCredentials.Clone(), audit: c.audit, log: c.log, service: c.service}
}

// recordHandshakeFailure audits a refused connection. The actor is the
// remote address: nothing else about the peer is trustworthy.
func recordHandshakeFailure(a *audit.Log, log *slog.Logger, service string, remote net.Addr, err error) {
	addr := ""
	if remote != nil {
		addr = remote.String()
	}
	log.Debug("TLS handshake failed", "service", service, "remote", addr, "err", err)
	a.Record(context.Background(), "tls.handshake", addr, service, audit.Denied, "error", err.Error())
}

func logOrDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
