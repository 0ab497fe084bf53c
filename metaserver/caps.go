package metaserver

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-hpc/strata/internal/capability"
	"github.com/strata-hpc/strata/internal/rpcerr"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// Shard capabilities (issue 8). The cluster's HMAC keys live in the FSM, so
// that every voter holds them and a new leader signs with the same key as
// the old one. The leader makes the first key when it finds none, and a
// new one on `strata cap rotate`. A new key is handed to the dataservers
// at once (register and heartbeat responses) but signed with only after
// CapActivationDelay, by which time every dataserver has heard of it; the
// key it replaces is still accepted until every capability signed with it
// has expired. See NOTES.md "Shard capabilities".

// CmdAddCapKey adds a capability key (cap range 116-119).
const CmdAddCapKey CommandType = 116

const (
	capSecretBytes = 32
	// maxCapKeys bounds the keys held at once: rotating faster than old
	// keys retire is refused rather than growing the set.
	maxCapKeys = 4
)

func init() {
	registerCommand(CmdAddCapKey, "add-cap-key", newMsg[stratapb.AddCapKeyCommand], newMsg[stratapb.AddCapKeyResponse], (*state).addCapKey)
}

// addCapKey applies AddCapKeyCommand: forget keys retired before now,
// retire the others at r.RetireOldNs, add the new one.
func (s *state) addCapKey(now int64, r *stratapb.AddCapKeyCommand) (*stratapb.AddCapKeyResponse, error) {
	k := r.GetKey()
	if k == nil || len(k.Secret) < capability.MinSecret {
		return nil, errnof(syscall.EINVAL, "capability key without a usable secret")
	}
	kept := s.capKeys[:0:0]
	for _, old := range s.capKeys {
		if old.RetireNs != 0 && old.RetireNs <= now {
			continue
		}
		if k.Id <= old.Id {
			return nil, errnof(syscall.EEXIST, "capability key %d is not newer than key %d", k.Id, old.Id)
		}
		if old.RetireNs == 0 {
			old = &stratapb.CapabilityKey{Id: old.Id, Secret: old.Secret, ActivateNs: old.ActivateNs, RetireNs: r.RetireOldNs}
		}
		kept = append(kept, old)
	}
	if len(kept) >= maxCapKeys {
		return nil, errnof(syscall.EBUSY, "%d capability keys still in use; wait for the oldest to retire", len(kept))
	}
	s.capKeys = append(kept, &stratapb.CapabilityKey{Id: k.Id, Secret: k.Secret, ActivateNs: k.ActivateNs})
	return &stratapb.AddCapKeyResponse{Id: k.Id}, nil
}

// signingKey is the newest key active at now. Keys are never changed in
// place, so the result may be used after the FSM lock is released.
func signingKey(keys []*stratapb.CapabilityKey, now int64) (capability.Key, bool) {
	for _, k := range slices.Backward(keys) {
		if k.ActivateNs <= now {
			return capability.Key{ID: k.Id, Secret: k.Secret}, true
		}
	}
	return capability.Key{}, false
}

func (s *Server) capKeys() []*stratapb.CapabilityKey {
	var keys []*stratapb.CapabilityKey
	_ = s.fsm.read(func(st *state) error {
		keys = st.capKeys
		return nil
	})
	return keys
}

// attachCaps signs a capability allowing ops for each chunk id. It is the
// one place a metaserver response gets capabilities: callers add the
// result to their layout response.
func (s *Server) attachCaps(ops capability.Op, chunkIDs ...uint64) (*stratapb.Capabilities, error) {
	now := time.Now()
	key, ok := signingKey(s.capKeys(), now.UnixNano())
	if !ok {
		// Only before the first leader has made a key: retryable.
		return nil, status.Error(codes.Unavailable, "metaserver: no capability key yet")
	}
	signer, err := capability.NewSigner(key)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "metaserver: %v", err)
	}
	exp := now.Add(s.cfg.CapLifetime)
	out := &stratapb.Capabilities{ByChunk: make(map[uint64][]byte, len(chunkIDs)), TtlMs: uint64(s.cfg.CapLifetime.Milliseconds())}
	// One backing array for all tokens: one allocation per response.
	buf := make([]byte, 0, len(chunkIDs)*capability.Size)
	for _, id := range chunkIDs {
		if id == 0 {
			continue
		}
		start := len(buf)
		buf = signer.Append(buf, capability.Capability{Ops: ops, Expiry: exp, ChunkID: id})
		out.ByChunk[id] = buf[start:len(buf):len(buf)]
	}
	return out, nil
}

// IssueCapability signs one capability for chunk with this server's view
// of the keys: for server-initiated operations (repair, GC) and for tests
// and tools that act for the metadata service.
func (s *Server) IssueCapability(chunk uint64, ops capability.Op) ([]byte, error) {
	c, err := s.attachCaps(ops, chunk)
	if err != nil {
		return nil, err
	}
	return c.ByChunk[chunk], nil
}

// dataServerKeys is what a dataserver gets in its register and heartbeat
// responses.
func (s *Server) dataServerKeys() *stratapb.CapabilityKeys {
	return &stratapb.CapabilityKeys{Keys: s.capKeys()}
}

// ensureCapKey makes the cluster's first key if the FSM has none. It runs
// on a new leader before it serves, so that every response that hands out
// a layout can carry capabilities.
// A failure is retried while this server stays leader.
func (s *Server) ensureCapKey(ctx context.Context) error {
	for {
		if len(s.capKeys()) > 0 {
			return nil
		}
		_, err := s.proposeCapKey(ctx, 0)
		if err == nil || s.parts.raft.State() != raftLeader || ctx.Err() != nil {
			return err
		}
		s.log.Warn("making the first capability key; will retry", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// proposeCapKey adds a new random key that becomes the signing key after
// delay, through raft.
func (s *Server) proposeCapKey(ctx context.Context, delay time.Duration) (*stratapb.AddCapKeyResponse, error) {
	secret := make([]byte, capSecretBytes)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("metaserver: capability key: %w", err)
	}
	var next uint32 = 1
	if keys := s.capKeys(); len(keys) > 0 {
		next = keys[len(keys)-1].Id + 1
	}
	now := time.Now()
	act := now.Add(delay)
	cmd := &stratapb.AddCapKeyCommand{
		Key: &stratapb.CapabilityKey{Id: next, Secret: secret, ActivateNs: act.UnixNano()},
		// The old key signs until act; what it signed lives CapLifetime
		// more, and a verifier's clock may lag by CapSkew.
		RetireOldNs: act.Add(s.cfg.CapLifetime + s.cfg.CapSkew).UnixNano(),
	}
	data, err := encodeCommand(CmdAddCapKey, nil, now.UnixNano(), cmd)
	if err != nil {
		return nil, err
	}
	f := s.parts.raft.Apply(data, s.cfg.ApplyTimeout)
	if err := f.Error(); err != nil {
		return nil, s.raftErr(err)
	}
	res, ok := f.Response().(*applyResult)
	if !ok || res == nil {
		return nil, status.Error(codes.Internal, "metaserver: no result for add-cap-key")
	}
	if res.err != nil {
		return nil, toStatus(res.err)
	}
	s.log.Info("capability key added", "key", next, "signing_from", act.UTC().Format(time.RFC3339))
	return res.resp.(*stratapb.AddCapKeyResponse), nil
}

// capAdminService implements stratapb.CapAdminServer.
type capAdminService struct {
	stratapb.UnimplementedCapAdminServer
	s *Server
}

func (c *capAdminService) RotateKey(ctx context.Context, _ *stratapb.RotateCapKeyRequest) (*stratapb.RotateCapKeyResponse, error) {
	if !c.s.IsLeader() {
		return nil, rpcerr.NotLeader(c.s.leaderHint())
	}
	resp, err := c.s.proposeCapKey(ctx, c.s.cfg.CapActivationDelay)
	if err != nil {
		return nil, err
	}
	keys := c.s.capKeys()
	out := &stratapb.RotateCapKeyResponse{KeyId: resp.Id, Keys: keyInfos(keys)}
	for _, k := range keys {
		if k.Id == resp.Id {
			out.ActivateNs = k.ActivateNs
		}
	}
	return out, nil
}

func (c *capAdminService) KeyStatus(ctx context.Context, _ *stratapb.CapKeyStatusRequest) (*stratapb.CapKeyStatusResponse, error) {
	if !c.s.IsLeader() {
		return nil, rpcerr.NotLeader(c.s.leaderHint())
	}
	keys := c.s.capKeys()
	k, _ := signingKey(keys, time.Now().UnixNano())
	return &stratapb.CapKeyStatusResponse{Keys: keyInfos(keys), SigningKey: k.ID, TtlMs: uint64(c.s.cfg.CapLifetime.Milliseconds())}, nil
}

func keyInfos(keys []*stratapb.CapabilityKey) []*stratapb.CapKeyInfo {
	out := make([]*stratapb.CapKeyInfo, 0, len(keys))
	for _, k := range keys {
		out = append(out, &stratapb.CapKeyInfo{Id: k.Id, ActivateNs: k.ActivateNs, RetireNs: k.RetireNs})
	}
	return out
}
