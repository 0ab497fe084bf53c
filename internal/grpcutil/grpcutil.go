// Package grpcutil holds the gRPC plumbing every Strata server shares:
// panic recovery and server options.
package grpcutil

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// MaxMsgSize bounds every gRPC message (a whole replicated chunk plus
// framing).
const MaxMsgSize = 64 << 20

// RecoverUnary turns a panic in a handler into codes.Internal, so one bad
// request cannot take a server down. The panic is logged with its stack:
// it is always a bug to fix.
func RecoverUnary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				log.Error("handler panic", "method", info.FullMethod, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				err = status.Errorf(codes.Internal, "internal error in %s", info.FullMethod)
			}
		}()
		return h(ctx, req)
	}
}

// ServerOptions are the options of every Strata gRPC server.
func ServerOptions(log *slog.Logger, maxMsg int, extra ...grpc.ServerOption) []grpc.ServerOption {
	o := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxMsg),
		grpc.MaxSendMsgSize(maxMsg),
		grpc.ChainUnaryInterceptor(RecoverUnary(log)),
	}
	return append(o, extra...)
}
