package pki

import (
	"log/slog"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/strata-hpc/strata/internal/audit"
)

// The helpers below take a possibly nil *Identity: nil means plain text
// (--insecure), so servers and clients need no branch of their own.

// DialCreds is the transport option of a gRPC client: TLS as id to a
// server of one of serverRoles, or plain text when id is nil.
func DialCreds(id *Identity, serverRoles ...Role) grpc.DialOption {
	if id == nil {
		return grpc.WithTransportCredentials(insecure.NewCredentials())
	}
	return id.DialOption(serverRoles...)
}

// ServerCreds is the credentials option of a gRPC server behind mutual
// TLS (any cluster role may connect; see Authz for per-method checks), or
// an option that changes nothing when id is nil.
func ServerCreds(id *Identity, a *audit.Log, log *slog.Logger) grpc.ServerOption {
	if id == nil {
		return grpc.EmptyServerOption{}
	}
	return grpc.Creds(id.ServerCredentials(a, log))
}

// Authz is the interceptor option that authorises each call by
// MethodRoles, or an option that changes nothing when id is nil (plain
// text: no certificate to check).
func Authz(id *Identity, a *audit.Log, log *slog.Logger) grpc.ServerOption {
	if id == nil {
		return grpc.EmptyServerOption{}
	}
	az := &Authorizer{Audit: a, Log: log}
	return grpc.ChainUnaryInterceptor(az.Unary())
}

// StreamAuthz is Authz for streaming calls.
func StreamAuthz(id *Identity, a *audit.Log, log *slog.Logger) grpc.ServerOption {
	if id == nil {
		return grpc.EmptyServerOption{}
	}
	az := &Authorizer{Audit: a, Log: log}
	return grpc.ChainStreamInterceptor(az.Stream())
}

// WrapListener puts l behind TLS requiring a certificate of one of the
// allowed roles (none: any), or returns l when id is nil.
func WrapListener(id *Identity, l net.Listener, a *audit.Log, log *slog.Logger, service string, allowed ...Role) net.Listener {
	if id == nil {
		return l
	}
	return NewListener(l, id.ServerTLS(allowed...), a, log, service)
}
