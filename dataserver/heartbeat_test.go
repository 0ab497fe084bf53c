package dataserver

import (
	"context"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/strata-hpc/strata/internal/rpcerr"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// fakeMeta is a stand-in for the metadata service: a real gRPC server that
// implements only RegisterDataServer and Heartbeat, recording what it gets.
// It hands out a new id on every registration; unknown ids (as after a
// leader lost its state) are refused with ENOENT, like the real service.
type fakeMeta struct {
	stratapb.UnimplementedMetaServer

	mu         sync.Mutex
	nextID     uint32
	known      map[uint32]bool
	registers  []*stratapb.RegisterDataServerRequest
	heartbeats []*stratapb.HeartbeatRequest
}

func (f *fakeMeta) RegisterDataServer(_ context.Context, req *stratapb.RegisterDataServerRequest) (*stratapb.RegisterDataServerResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	if f.known == nil {
		f.known = make(map[uint32]bool)
	}
	f.known[f.nextID] = true
	f.registers = append(f.registers, req)
	return &stratapb.RegisterDataServerResponse{Id: f.nextID}, nil
}

func (f *fakeMeta) Heartbeat(_ context.Context, req *stratapb.HeartbeatRequest) (*stratapb.HeartbeatResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.known[req.Id] {
		return nil, rpcerr.Errno(syscall.ENOENT, "no dataserver %d", req.Id)
	}
	f.heartbeats = append(f.heartbeats, req)
	return &stratapb.HeartbeatResponse{}, nil
}

// forget makes the stand-in refuse every id it gave out so far.
func (f *fakeMeta) forget() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.known)
}

func (f *fakeMeta) snapshot() ([]*stratapb.RegisterDataServerRequest, []*stratapb.HeartbeatRequest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*stratapb.RegisterDataServerRequest(nil), f.registers...), append([]*stratapb.HeartbeatRequest(nil), f.heartbeats...)
}

// serveFakeMeta serves the stand-in on addr ("127.0.0.1:0" for any port).
func serveFakeMeta(t *testing.T, addr string) (*fakeMeta, string) {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeMeta{}
	g := grpc.NewServer()
	stratapb.RegisterMetaServer(g, f)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	return f, lis.Addr().String()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func metaConfig(t *testing.T, metaAddr string) Config {
	cfg := testConfig(t, 2)
	cfg.MetaAddrs = []string{metaAddr}
	cfg.HeartbeatInterval = 20 * time.Millisecond
	cfg.Labels = map[string]string{"rack": "r1", "host": "h7"}
	return cfg
}

func TestRegisterAndHeartbeat(t *testing.T) {
	meta, addr := serveFakeMeta(t, "127.0.0.1:0")
	s, c := startServer(t, metaConfig(t, addr))
	writeShard(t, c, Key{ChunkID: 1}, randBytes(5000, 1))

	waitFor(t, "a heartbeat counting the shard", func() bool {
		_, hbs := meta.snapshot()
		return len(hbs) > 0 && hbs[len(hbs)-1].ShardCount == 1
	})
	regs, hbs := meta.snapshot()
	r := regs[0]
	if r.Uuid != s.UUID() || r.Addr != s.Addr() || r.Labels["rack"] != "r1" || r.CapacityBytes == 0 {
		t.Fatalf("registration = %v; want uuid %s addr %s", r, s.UUID(), s.Addr())
	}
	if s.ID() != 1 {
		t.Fatalf("ID() = %d, want 1", s.ID())
	}
	hb := hbs[len(hbs)-1]
	if hb.Id != 1 || hb.Uuid != s.UUID() || hb.Addr != s.Addr() || hb.ReadOnly ||
		hb.CapacityBytes == 0 || hb.FreeBytes == 0 || hb.FreeBytes > hb.CapacityBytes || hb.UsedBytes < 5000 {
		t.Fatalf("heartbeat = %v", hb)
	}
}

func TestRegisterWaitsForMeta(t *testing.T) {
	// Reserve a port, and keep the stand-in off it until the dataserver
	// has started: the metadata service may come up later.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	cfg := metaConfig(t, addr)
	cfg.AdvertiseAddr = "10.0.0.7:7400"
	start := time.Now()
	s, _ := startServer(t, cfg)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Start blocked for %v with no metadata service", d)
	}
	time.Sleep(100 * time.Millisecond)
	if s.ID() != 0 {
		t.Fatalf("ID() = %d before the metadata service is up", s.ID())
	}
	meta, _ := serveFakeMeta(t, addr)
	waitFor(t, "registration", func() bool { return s.ID() != 0 })
	regs, _ := meta.snapshot()
	if regs[0].Addr != "10.0.0.7:7400" {
		t.Fatalf("registered with addr %q, want the advertised one", regs[0].Addr)
	}
}

func TestReregisterOnENOENT(t *testing.T) {
	meta, addr := serveFakeMeta(t, "127.0.0.1:0")
	s, _ := startServer(t, metaConfig(t, addr))
	waitFor(t, "first heartbeat", func() bool { _, hbs := meta.snapshot(); return len(hbs) > 0 })
	meta.forget()
	waitFor(t, "heartbeats under a new id", func() bool {
		_, hbs := meta.snapshot()
		return s.ID() == 2 && hbs[len(hbs)-1].Id == 2
	})
	regs, _ := meta.snapshot()
	if len(regs) != 2 || regs[1].Uuid != regs[0].Uuid {
		t.Fatalf("registrations = %v; want two with the same uuid", regs)
	}
}

func TestReadOnlyWhenFull(t *testing.T) {
	meta, addr := serveFakeMeta(t, "127.0.0.1:0")
	startServerWith(t, metaConfig(t, addr), func(s *Server) {
		s.Store().statfs = func(string) (diskSpace, error) { return diskSpace{total: 1 << 30, free: 0}, nil }
	})
	waitFor(t, "a heartbeat", func() bool { _, hbs := meta.snapshot(); return len(hbs) > 0 })
	if _, hbs := meta.snapshot(); !hbs[0].ReadOnly || hbs[0].FreeBytes != 0 {
		t.Fatalf("heartbeat from a full server = %v, want read_only", hbs[0])
	}
}
