package dataserver

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/strata-hpc/strata/internal/audit"
	"github.com/strata-hpc/strata/internal/capability"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// Shard capabilities (issue 8): every shard RPC must carry a capability
// signed by the metadata service for the request's chunk and operation.
// The keys to check them come from the leader in the register and
// heartbeat responses and are kept in memory only: a restarted dataserver
// refuses shard requests (Unavailable, which clients retry) until it has
// registered again.

// errDenied is the one answer to every refused capability: the requester
// learns nothing about why (which key ids exist, whether the chunk is
// here); the audit log gets the precise reason.
var errDenied = status.Error(codes.PermissionDenied, "dataserver: shard request not authorised")

// errNoKeys asks the caller to retry (Unavailable with errno EAGAIN): this
// server has not yet heard the capability keys from the metadata service.
var errNoKeys = withErrno(codes.Unavailable, syscall.EAGAIN, errors.New("dataserver: no capability keys yet; retry"))

// authorizer checks capabilities and audits refusals.
type authorizer struct {
	v       *capability.Verifier
	audit   *audit.Log
	now     func() time.Time
	refused atomic.Uint64
}

// check verifies token for op on chunk; rpc names the request for the
// audit record.
func (a *authorizer) check(ctx context.Context, rpc string, token []byte, chunk uint64, op capability.Op) error {
	_, err := a.v.Verify(token, chunk, op, a.now())
	if err == nil {
		return nil
	}
	if errors.Is(err, capability.ErrNoKeys) {
		return errNoKeys
	}
	a.refused.Add(1)
	a.audit.Record(ctx, "shard."+rpc, peerAddr(ctx), fmt.Sprintf("chunk/%d", chunk), audit.Denied,
		"reason", err.Error(), "op", op.String())
	return errDenied
}

func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return "unknown"
}

// SetCapabilityKeys replaces the keys shard capabilities are checked with.
// The metadata service's responses call it; a dataserver run without one
// (tests, tools) is given its keys this way.
func (s *Server) SetCapabilityKeys(keys []*stratapb.CapabilityKey) {
	vk := make([]capability.VerifyKey, 0, len(keys))
	for _, k := range keys {
		v := capability.VerifyKey{Key: capability.Key{ID: k.GetId(), Secret: k.GetSecret()}}
		if k.GetRetireNs() != 0 {
			v.Retire = time.Unix(0, k.GetRetireNs())
		}
		vk = append(vk, v)
	}
	s.auth.v.SetKeys(vk)
}

// CapabilityRefusals counts shard requests refused for their capability
// since the server started (requests_total{code="PermissionDenied"} in
// the metrics).
func (s *Server) CapabilityRefusals() uint64 { return s.auth.refused.Load() }

// CapabilityKeyIDs lists the ids of the capability keys this server holds.
func (s *Server) CapabilityKeyIDs() []uint32 { return s.auth.v.KeyIDs() }

// noteKeys takes the keys from a metadata response; an answer without keys
// (an older leader) leaves the current ones in place.
func (s *Server) noteKeys(k *stratapb.CapabilityKeys) {
	if len(k.GetKeys()) > 0 {
		s.SetCapabilityKeys(k.GetKeys())
	}
}
