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

// GRPCServerOptions are the options that put a gRPC server behind mTLS
// (any cluster role may connect) and authorise each call by MethodRoles;
// none when id is nil.
func GRPCServerOptions(id *Identity, a *audit.Log, log *slog.Logger) []grpc.ServerOption {
	if id == nil {
		return nil
	}
	az := &Authorizer{Audit: a, Log: log}
	return []grpc.ServerOption{
		grpc.Creds(id.ServerCredentials(a, log)),
		grpc.ChainUnaryInterceptor(az.Unary()),
		grpc.ChainStreamInterceptor(az.Stream()),
	}
}

// WrapListener puts l behind TLS requiring a certificate of one of the
// allowed roles (none: any), or returns l when id is nil.
func WrapListener(id *Identity, l net.Listener, a *audit.Log, log *slog.Logger, service string, allowed ...Role) net.Listener {
	if id == nil {
		return l
	}
	return NewListener(l, id.ServerTLS(allowed...), a, log, service)
}
