package testcluster

import (
	"context"
	"time"

	"google.golang.org/grpc"

	"github.com/strata-hpc/strata/internal/capability"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// capAll is every shard operation.
const capAll = capability.OpRead | capability.OpWrite | capability.OpDelete | capability.OpRebuild

// Capability returns a shard capability for chunk allowing ops, signed by
// the current leader, for tests that talk to dataservers directly (as the
// metadata service does for repair and garbage collection).
func (c *Cluster) Capability(chunk uint64, ops capability.Op) []byte {
	c.t.Helper()
	var last error
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if i := c.Leader(); i >= 0 {
			b, err := c.Meta[i].Srv.IssueCapability(chunk, ops)
			if err == nil {
				return b
			}
			last = err
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("testcluster: no capability for chunk %d: %v", chunk, last)
	return nil
}

// CapInterceptor is a gRPC client interceptor that gives every shard
// request without a capability one from Capability, allowing every
// operation: for a test's own connections to dataservers.
func (c *Cluster) CapInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		switch r := req.(type) {
		case *stratapb.WriteShardRequest:
			if r.Capability == nil {
				r.Capability = c.Capability(r.GetKey().GetChunkId(), capAll)
			}
		case *stratapb.ReadShardRequest:
			if r.Capability == nil {
				r.Capability = c.Capability(r.GetKey().GetChunkId(), capAll)
			}
		case *stratapb.DeleteShardRequest:
			if r.Capability == nil {
				r.Capability = c.Capability(r.GetKey().GetChunkId(), capAll)
			}
		case *stratapb.StatShardRequest:
			if r.Capability == nil {
				r.Capability = c.Capability(r.GetKey().GetChunkId(), capAll)
			}
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}
