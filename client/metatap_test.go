package client

import (
	"context"
	"net"
	"sync"
	"syscall"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/strata-hpc/strata/internal/metaconn"
	"github.com/strata-hpc/strata/internal/pki"
	"github.com/strata-hpc/strata/internal/rpcerr"
	"github.com/strata-hpc/strata/internal/testcluster"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// metaTap is a fault-injecting wire tap between one client and the real
// metadata leader. It passes every call through as raw bytes, follows the
// leader as it moves, and records what went by. On demand it loses the
// reply of a call after the leader has answered it, and it can run a hook
// before forwarding a call.
//
// It is the one stand-in of these tests, and it stands in for nothing but
// the network: every call is served by the real Raft metaservers. It
// exists because no real fault loses exactly the reply of a request that
// was already applied, when a test wants it: killing or partitioning the
// leader loses whatever happens to be in flight (that is tested too, in
// MutationsThroughLeaderPartition), not a chosen Mkdir or CommitChunks.
type metaTap struct {
	t    testing.TB
	addr string
	cl   *testcluster.Cluster // for its TLS identities

	mu     sync.Mutex
	leader string // where calls go; follows "not leader" hints
	conns  map[string]*grpc.ClientConn
	lose   map[string]int // full method name -> replies still to lose
	calls  []tapCall
	before func(method string, req []byte)
}

// tapCall is one call that went through the tap.
type tapCall struct {
	method string
	header *stratapb.RequestHeader // nil if the request has none
	req    []byte
	resp   []byte // nil on error
	code   codes.Code
	errno  syscall.Errno
	lost   bool // the reply was not passed on
}

// newMetaTap starts a tap in front of the cluster's metaservers.
// With TLS, the tap shows clients the cluster's meta certificate and
// presents the client certificate to the metaservers.
func newMetaTap(t testing.TB, cl *testcluster.Cluster) *metaTap {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &metaTap{t: t, addr: lis.Addr().String(), cl: cl, leader: cl.MetaAddrs()[0],
		conns: make(map[string]*grpc.ClientConn), lose: make(map[string]int)}
	var creds []grpc.ServerOption
	if id := cl.Identity(pki.RoleMeta); id != nil {
		creds = append(creds, grpc.Creds(id.ServerCredentials(nil, nil)))
	}
	srv := grpc.NewServer(append(creds,
		grpc.ForceServerCodecV2(rawCodec{}),
		grpc.UnknownServiceHandler(m.handle),
		grpc.MaxRecvMsgSize(metaconn.MaxMsgSize), grpc.MaxSendMsgSize(metaconn.MaxMsgSize),
	)...)
	go srv.Serve(lis)
	t.Cleanup(func() {
		srv.Stop()
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, cc := range m.conns {
			cc.Close()
		}
	})
	return m
}

// client returns a new client whose only metadata address is the tap.
func (m *metaTap) client() *Client { return newTestClient(m.t, []string{m.addr}, m.cl.ClientTLS()) }

// loseReplies makes the next n replies of method (a full gRPC method
// name) get lost after the leader answered.
func (m *metaTap) loseReplies(method string, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lose[method] += n
}

// pendingLosses is how many replies loseReplies asked for are not lost yet.
func (m *metaTap) pendingLosses() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, v := range m.lose {
		n += v
	}
	return n
}

// setBefore installs fn to run before each call is forwarded.
func (m *metaTap) setBefore(fn func(method string, req []byte)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.before = fn
}

// callsOf returns the calls of method so far, in the order they arrived.
func (m *metaTap) callsOf(method string) []tapCall {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []tapCall
	for _, c := range m.calls {
		if c.method == method {
			out = append(out, c)
		}
	}
	return out
}

func (m *metaTap) handle(_ any, ss grpc.ServerStream) error {
	method, ok := grpc.MethodFromServerStream(ss)
	if !ok {
		return status.Error(codes.Internal, "metatap: no method")
	}
	var req []byte
	if err := ss.RecvMsg(&req); err != nil {
		return err
	}
	m.mu.Lock()
	before := m.before
	m.mu.Unlock()
	if before != nil {
		before(method, req)
	}
	resp, err := m.forward(ss.Context(), method, req)
	call := tapCall{method: method, header: requestHeader(req), req: req, resp: resp,
		code: status.Code(err), errno: rpcerr.ErrnoOf(err)}
	m.mu.Lock()
	// Only a reply the leader gave can be lost: a call that failed on its
	// way (an attempt timing out on a loaded machine) is passed on as is.
	if err == nil && m.lose[method] > 0 {
		m.lose[method]--
		call.lost = true
	}
	m.calls = append(m.calls, call)
	m.mu.Unlock()
	switch {
	case call.lost:
		return status.Error(codes.Unavailable, "metatap: reply lost")
	case err != nil:
		return err
	}
	return ss.SendMsg(&resp)
}

// forward sends the call to the leader, following "not leader" hints.
func (m *metaTap) forward(ctx context.Context, method string, req []byte) ([]byte, error) {
	for hops := 0; ; hops++ {
		m.mu.Lock()
		addr := m.leader
		cc, ok := m.conns[addr]
		if !ok {
			var err error
			if cc, err = grpc.NewClient(addr, metaconn.DialOptions(m.cl.DialCreds(pki.RoleMeta))...); err != nil {
				m.mu.Unlock()
				return nil, err
			}
			m.conns[addr] = cc
		}
		m.mu.Unlock()
		var resp []byte
		err := cc.Invoke(ctx, method, &req, &resp, grpc.ForceCodecV2(rawCodec{}))
		if hint, nl := rpcerr.LeaderHint(err); nl && hint != "" && hint != addr && hops < 5 {
			m.mu.Lock()
			m.leader = hint
			m.mu.Unlock()
			continue
		}
		if err != nil {
			return nil, err
		}
		return resp, nil
	}
}

// requestHeader decodes field 1 of a request, where every request that
// has a RequestHeader keeps it.
func requestHeader(b []byte) *stratapb.RequestHeader {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			h := &stratapb.RequestHeader{}
			if n < 0 || proto.Unmarshal(v, h) != nil {
				return nil
			}
			return h
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return nil
		}
		b = b[n:]
	}
	return nil
}

// decode unmarshals raw message bytes recorded by the tap.
func decode[T proto.Message](t testing.TB, b []byte, msg T) T {
	t.Helper()
	if err := proto.Unmarshal(b, msg); err != nil {
		t.Fatalf("decode %T: %v", msg, err)
	}
	return msg
}

// rawCodec passes message bytes through untouched.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }
