package dataserver

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-hpc/strata/internal/audit"
	"github.com/strata-hpc/strata/internal/capability"
	"github.com/strata-hpc/strata/internal/metaconn"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// The tests of this package run dataservers without a metadata service;
// they are given testCapKeys directly (startServerWith), and dial signs a
// capability for every request as the metadata service would.
var (
	testCapKey  = capability.Key{ID: 3, Secret: bytes.Repeat([]byte("k"), 32)}
	testCapKeys = []*stratapb.CapabilityKey{{Id: testCapKey.ID, Secret: testCapKey.Secret}}
	forgedKey   = capability.Key{ID: testCapKey.ID, Secret: bytes.Repeat([]byte("f"), 32)}
)

// capsFor is a client interceptor that gives every shard request without
// a capability one signed with key, for the request's chunk, allowing
// everything, valid for a minute.
func capsFor(key capability.Key) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		c := capability.Capability{Ops: capability.OpRead | capability.OpWrite | capability.OpDelete | capability.OpRebuild, Expiry: time.Now().Add(time.Minute)}
		switch r := req.(type) {
		case *stratapb.WriteShardRequest:
			if r.Capability == nil {
				c.ChunkID = r.GetKey().GetChunkId()
				r.Capability = capability.AppendSigned(nil, key, c)
			}
		case *stratapb.ReadShardRequest:
			if r.Capability == nil {
				c.ChunkID = r.GetKey().GetChunkId()
				r.Capability = capability.AppendSigned(nil, key, c)
			}
		case *stratapb.DeleteShardRequest:
			if r.Capability == nil {
				c.ChunkID = r.GetKey().GetChunkId()
				r.Capability = capability.AppendSigned(nil, key, c)
			}
		case *stratapb.StatShardRequest:
			if r.Capability == nil {
				c.ChunkID = r.GetKey().GetChunkId()
				r.Capability = capability.AppendSigned(nil, key, c)
			}
		case *stratapb.RebuildShardRequest:
			if r.Capability == nil {
				c.ChunkID = r.GetChunk().GetId()
				r.Capability = capability.AppendSigned(nil, key, c)
			}
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

func signCap(t testing.TB, key capability.Key, chunk uint64, ops capability.Op, exp time.Time) []byte {
	t.Helper()
	b, err := capability.Sign(key, capability.Capability{Ops: ops, Expiry: exp, ChunkID: chunk})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// syncBuffer collects audit lines from the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// TestShardCapabilityRefused runs a real dataserver and sends it every kind
// of bad capability on every shard RPC: each is refused with the same
// PermissionDenied message, the shard is untouched, and the audit log says
// precisely why.
func TestShardCapabilityRefused(t *testing.T) {
	var buf syncBuffer
	cfg := testConfig(t, 1)
	cfg.Audit = audit.New(&buf, nil)
	s, good := startServer(t, cfg)
	raw := dialWith(t, s.Addr())
	ctx := context.Background()
	k := Key{ChunkID: 77, Index: 2}
	data := randBytes(10000, 7)
	writeShard(t, good, k, data)

	now := time.Now()
	all := capability.OpRead | capability.OpWrite | capability.OpDelete
	bad := []struct {
		name, reason string
		tok          func(op capability.Op) []byte
	}{
		{"missing", "missing", func(capability.Op) []byte { return nil }},
		{"garbage", "malformed", func(capability.Op) []byte { return []byte("let me in") }},
		{"forged", "bad signature", func(op capability.Op) []byte { return signCap(t, forgedKey, k.ChunkID, op, now.Add(time.Minute)) }},
		{"unknown key", "unknown or retired key", func(op capability.Op) []byte {
			return signCap(t, capability.Key{ID: 99, Secret: testCapKey.Secret}, k.ChunkID, op, now.Add(time.Minute))
		}},
		{"expired", "expired", func(op capability.Op) []byte {
			return signCap(t, testCapKey, k.ChunkID, op, now.Add(-capability.DefaultSkew-time.Second))
		}},
		{"wrong chunk", "for another chunk", func(op capability.Op) []byte { return signCap(t, testCapKey, k.ChunkID+1, all, now.Add(time.Minute)) }},
		{"wrong op", "operation not allowed", func(op capability.Op) []byte { return signCap(t, testCapKey, k.ChunkID, all&^op, now.Add(time.Minute)) }},
	}
	calls := []struct {
		rpc string
		op  capability.Op
		do  func(tok []byte) error
	}{
		{"read", capability.OpRead, func(tok []byte) error {
			_, err := raw.ReadShard(ctx, &stratapb.ReadShardRequest{Key: pbKey(k), Capability: tok})
			return err
		}},
		{"stat", capability.OpRead, func(tok []byte) error {
			_, err := raw.StatShard(ctx, &stratapb.StatShardRequest{Key: pbKey(k), Capability: tok})
			return err
		}},
		{"write", capability.OpWrite, func(tok []byte) error {
			junk := []byte("overwritten by an attacker")
			_, err := raw.WriteShard(ctx, &stratapb.WriteShardRequest{Key: pbKey(k), Data: junk, Crc32C: crcOf(junk), Capability: tok})
			return err
		}},
		{"delete", capability.OpDelete, func(tok []byte) error {
			_, err := raw.DeleteShard(ctx, &stratapb.DeleteShardRequest{Key: pbKey(k), Capability: tok})
			return err
		}},
	}
	var msg string
	for _, b := range bad {
		for _, c := range calls {
			err := c.do(b.tok(c.op))
			st, _ := status.FromError(err)
			if st.Code() != codes.PermissionDenied {
				t.Fatalf("%s %s capability: got %v, want PermissionDenied", c.rpc, b.name, err)
			}
			if msg == "" {
				msg = st.Message()
			}
			if st.Message() != msg {
				t.Errorf("%s %s: message %q differs from %q: a refusal must not say why", c.rpc, b.name, st.Message(), msg)
			}
		}
	}
	// The shard is what was written, and a valid capability still works.
	resp, err := good.ReadShard(ctx, &stratapb.ReadShardRequest{Key: pbKey(k)})
	if err != nil || !bytes.Equal(resp.GetData(), data) {
		t.Fatalf("shard after the refused requests: %v (%d bytes)", err, len(resp.GetData()))
	}
	checkAuditReasons(t, buf.records(t), len(bad)*len(calls), bad)
}

func checkAuditReasons(t *testing.T, recs []map[string]any, want int, bad []struct {
	name, reason string
	tok          func(op capability.Op) []byte
}) {
	t.Helper()
	if len(recs) != want {
		t.Fatalf("%d audit records, want %d", len(recs), want)
	}
	i := 0
	for _, b := range bad {
		for range 4 {
			r := recs[i]
			i++
			if r["outcome"] != audit.Denied || r["object"] != "chunk/77" || !strings.HasPrefix(r["action"].(string), "shard.") {
				t.Errorf("audit record %v", r)
			}
			if reason, _ := r["reason"].(string); !strings.Contains(reason, b.reason) {
				t.Errorf("%s: audit reason %q does not say %q", b.name, reason, b.reason)
			}
		}
	}
}

// TestShardRefusedWithoutKeys: a dataserver that has not been given keys
// (just restarted, not yet registered) asks the caller to retry.
func TestShardRefusedWithoutKeys(t *testing.T) {
	cfg := testConfig(t, 1)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := dial(t, s.Addr())
	_, err = c.StatShard(context.Background(), &stratapb.StatShardRequest{Key: pbKey(Key{ChunkID: 1})})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("shard request to a server without keys: %v, want Unavailable", err)
	}
	s.SetCapabilityKeys(testCapKeys)
	if _, err := c.StatShard(context.Background(), &stratapb.StatShardRequest{Key: pbKey(Key{ChunkID: 1})}); err != nil {
		t.Fatalf("after the keys arrived: %v", err)
	}
}

// TestRebuildNeedsCapability: Repair.RebuildShard is refused without a
// rebuild capability, and the capability the leader gives is what lets the
// rebuilding server read the surviving shards from its peers.
func TestRebuildNeedsCapability(t *testing.T) {
	src, srcC := startServer(t, testConfig(t, 1))
	dst, _ := startServer(t, testConfig(t, 1))
	data := randBytes(4096, 3)
	writeShard(t, srcC, Key{ChunkID: 5, Index: 0}, data)
	ch := &stratapb.Chunk{Id: 5, Scheme: stratapb.Scheme_REPLICATED, DataShards: 1, ParityShards: 1,
		Servers: []uint32{1, 2}, Size: uint32(len(data)), ShardSize: uint32(len(data)), Crc32C: crcOf(data)}
	cc, err := grpc.NewClient(dst.Addr(), metaconn.DialOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	rc := stratapb.NewRepairClient(cc)
	ctx := context.Background()
	req := &stratapb.RebuildShardRequest{Chunk: ch, Index: 1, Sources: map[uint32]string{1: src.Addr()}}
	exp := time.Now().Add(time.Minute)
	for name, tok := range map[string][]byte{
		"missing":            nil,
		"read only":          signCap(t, testCapKey, 5, capability.OpRead, exp),
		"forged":             signCap(t, forgedKey, 5, capability.OpRebuild|capability.OpRead, exp),
		"rebuild, peer read": signCap(t, testCapKey, 5, capability.OpRebuild, exp), // the peer refuses the read
	} {
		req.Capability = tok
		_, err := rc.RebuildShard(ctx, req)
		if err == nil {
			t.Fatalf("rebuild with %s capability succeeded", name)
		}
	}
	if _, err := dst.Store().Stat(ctx, Key{ChunkID: 5, Index: 1}); err == nil {
		t.Fatal("a refused rebuild stored a shard")
	}
	req.Capability = signCap(t, testCapKey, 5, capability.OpRebuild|capability.OpRead, exp)
	if _, err := rc.RebuildShard(ctx, req); err != nil {
		t.Fatalf("rebuild with the leader's capability: %v", err)
	}
	got, _, err := dst.Store().Read(ctx, Key{ChunkID: 5, Index: 1}, 0, 0)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("rebuilt shard: %v", err)
	}
}
