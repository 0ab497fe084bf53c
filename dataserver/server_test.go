package dataserver

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-hpc/strata/internal/grpcutil"
	"github.com/strata-hpc/strata/internal/metaconn"
	"github.com/strata-hpc/strata/internal/rpcerr"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// testConfig is a config on fresh dirs with fsync off and no reserve.
func testConfig(t testing.TB, ndirs int) Config {
	cfg := DefaultConfig()
	cfg.Fsync = false
	cfg.ReserveBytes = 0
	cfg.Logger = testLogger(t)
	for range ndirs {
		cfg.Dirs = append(cfg.Dirs, t.TempDir())
	}
	return cfg
}

// startServer starts a server and returns a client connected to it.
func startServer(t testing.TB, cfg Config) (*Server, stratapb.DataClient) {
	t.Helper()
	return startServerWith(t, cfg, nil)
}

// startServerWith is startServer with a hook that runs between New and
// Start, where test seams can be set before any goroutine reads them.
func startServerWith(t testing.TB, cfg Config, hook func(*Server)) (*Server, stratapb.DataClient) {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	s.SetCapabilityKeys(testCapKeys)
	if hook != nil {
		hook(s)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return s, dial(t, s.Addr())
}

// dial connects to a dataserver as a client holding valid capabilities
// (capsFor in caps_test.go signs one for every request); dialRaw connects
// with none.
func dial(t testing.TB, addr string) stratapb.DataClient {
	t.Helper()
	return dialWith(t, addr, grpc.WithChainUnaryInterceptor(capsFor(testCapKey)))
}

func dialWith(t testing.TB, addr string, opts ...grpc.DialOption) stratapb.DataClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, metaconn.DialOptions(opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return stratapb.NewDataClient(cc)
}

func pbKey(k Key) *stratapb.ShardKey { return &stratapb.ShardKey{ChunkId: k.ChunkID, Index: k.Index} }

func writeShard(t testing.TB, c stratapb.DataClient, k Key, data []byte) {
	t.Helper()
	_, err := c.WriteShard(context.Background(), &stratapb.WriteShardRequest{Key: pbKey(k), Data: data, Crc32C: crcOf(data)})
	if err != nil {
		t.Fatalf("WriteShard(%v): %v", k, err)
	}
}

func wantCode(t testing.TB, what string, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s: got %v, want code %v", what, err, code)
	}
}

func TestServerRoundTrip(t *testing.T) {
	_, c := startServer(t, testConfig(t, 2))
	ctx := context.Background()
	for i, n := range []int{0, 1, bs - 1, bs, bs + 1, 1 << 20, 5 << 20} {
		k := Key{ChunkID: uint64(i + 1), Index: 1}
		data := randBytes(n, uint64(i))
		writeShard(t, c, k, data)
		resp, err := c.ReadShard(ctx, &stratapb.ReadShardRequest{Key: pbKey(k)})
		if err != nil || resp.ShardSize != uint64(n) || !bytes.Equal(resp.Data, data) {
			t.Fatalf("ReadShard(%d bytes) = %d bytes, size %d, %v", n, len(resp.GetData()), resp.GetShardSize(), err)
		}
		if n > 2 {
			off := uint64(n / 2)
			resp, err = c.ReadShard(ctx, &stratapb.ReadShardRequest{Key: pbKey(k), Offset: off - 1, Length: 2})
			if err != nil || !bytes.Equal(resp.Data, data[off-1:off+1]) {
				t.Fatalf("ranged ReadShard of %d bytes: %v", n, err)
			}
		}
		st, err := c.StatShard(ctx, &stratapb.StatShardRequest{Key: pbKey(k)})
		if err != nil || !st.Exists || st.Size != uint64(n) || st.MtimeNs == 0 {
			t.Fatalf("StatShard = %v, %v", st, err)
		}
	}
	k := Key{ChunkID: 1, Index: 1}
	for _, want := range []bool{true, false} {
		resp, err := c.DeleteShard(ctx, &stratapb.DeleteShardRequest{Key: pbKey(k)})
		if err != nil || resp.Existed != want {
			t.Fatalf("DeleteShard = %v, %v; want existed=%v", resp, err, want)
		}
	}
	st, err := c.StatShard(ctx, &stratapb.StatShardRequest{Key: pbKey(k)})
	if err != nil || st.Exists {
		t.Fatalf("StatShard after delete = %v, %v", st, err)
	}
	_, err = c.ReadShard(ctx, &stratapb.ReadShardRequest{Key: pbKey(k)})
	wantCode(t, "ReadShard after delete", err, codes.NotFound)
	if rpcerr.ErrnoOf(err) != syscall.ENOENT {
		t.Fatalf("ReadShard after delete carries errno %v, want ENOENT", rpcerr.ErrnoOf(err))
	}
}

func TestServerDataLoss(t *testing.T) {
	s, c := startServer(t, testConfig(t, 1))
	ctx := context.Background()
	k := Key{ChunkID: 0xbad, Index: 3}
	data := randBytes(3*bs, 1)
	writeShard(t, c, k, data)
	h := header{blockSize: bs, key: k, dataLen: uint64(len(data))}
	path := shardFile(t, s.Store(), k)
	flipByte(t, path, h.dataOffset()+bs+100)

	resp, err := c.ReadShard(ctx, &stratapb.ReadShardRequest{Key: pbKey(k), Offset: bs, Length: 10})
	wantCode(t, "ReadShard of a corrupt block", err, codes.DataLoss)
	if resp != nil || !strings.Contains(err.Error(), "0000000000000bad shard 3 block 1") || rpcerr.ErrnoOf(err) != syscall.EIO {
		t.Fatalf("DataLoss error %v does not name chunk, shard and block, or lacks EIO", err)
	}
	_, err = c.ReadShard(ctx, &stratapb.ReadShardRequest{Key: pbKey(k)})
	wantCode(t, "ReadShard of the whole corrupt shard", err, codes.DataLoss)
	for _, off := range []uint64{0, 2 * bs} {
		resp, err := c.ReadShard(ctx, &stratapb.ReadShardRequest{Key: pbKey(k), Offset: off, Length: bs})
		if err != nil || !bytes.Equal(resp.Data, data[off:off+bs]) {
			t.Fatalf("ReadShard of healthy block at %d: %v", off, err)
		}
	}

	flipByte(t, path, 20) // header
	_, err = c.ReadShard(ctx, &stratapb.ReadShardRequest{Key: pbKey(k), Offset: 0, Length: 1})
	wantCode(t, "ReadShard with a corrupt header", err, codes.DataLoss)
	_, err = c.StatShard(ctx, &stratapb.StatShardRequest{Key: pbKey(k)})
	wantCode(t, "StatShard with a corrupt header", err, codes.DataLoss)
}

func TestServerBadInput(t *testing.T) {
	_, c := startServer(t, testConfig(t, 1))
	ctx := context.Background()
	data := []byte("some shard data")
	writeShard(t, c, Key{ChunkID: 1}, data)

	_, err := c.WriteShard(ctx, &stratapb.WriteShardRequest{Data: data, Crc32C: crcOf(data)})
	wantCode(t, "WriteShard without key", err, codes.InvalidArgument)
	_, err = c.ReadShard(ctx, &stratapb.ReadShardRequest{})
	wantCode(t, "ReadShard without key", err, codes.InvalidArgument)
	_, err = c.DeleteShard(ctx, &stratapb.DeleteShardRequest{})
	wantCode(t, "DeleteShard without key", err, codes.InvalidArgument)
	_, err = c.StatShard(ctx, &stratapb.StatShardRequest{})
	wantCode(t, "StatShard without key", err, codes.InvalidArgument)
	_, err = c.WriteShard(ctx, &stratapb.WriteShardRequest{Key: pbKey(Key{ChunkID: 2}), Data: data, Crc32C: 12345})
	wantCode(t, "WriteShard with a bad crc", err, codes.InvalidArgument)
	for _, r := range []struct{ off, length uint64 }{{uint64(len(data)) + 1, 0}, {0, uint64(len(data)) + 1}, {1, ^uint64(0)}, {^uint64(0), ^uint64(0)}} {
		_, err = c.ReadShard(ctx, &stratapb.ReadShardRequest{Key: pbKey(Key{ChunkID: 1}), Offset: r.off, Length: r.length})
		wantCode(t, "ReadShard past the end", err, codes.InvalidArgument)
	}
	_, err = c.ReadShard(ctx, &stratapb.ReadShardRequest{Key: pbKey(Key{ChunkID: 2})})
	wantCode(t, "ReadShard of a rejected write", err, codes.NotFound)
}

// rawCodec sends bytes as they are, to put garbage on the wire.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)   { return v.([]byte), nil }
func (rawCodec) Unmarshal(b []byte, v any) error { *(v.(*[]byte)) = b; return nil }
func (rawCodec) Name() string                    { return "proto" }

func TestServerGarbageOnTheWire(t *testing.T) {
	s, c := startServer(t, testConfig(t, 1))
	cc, err := grpc.NewClient(s.Addr(), metaconn.DialOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	for i, garbage := range [][]byte{{0xff, 0xff, 0xff}, randBytes(1000, 1), {0x0a, 0x80}} {
		var out []byte
		err := cc.Invoke(context.Background(), "/strata.v1.Data/ReadShard", garbage, &out, grpc.ForceCodec(rawCodec{}))
		if code := status.Code(err); code == codes.OK || code == codes.Unavailable {
			t.Fatalf("garbage #%d: %v", i, err)
		}
	}
	writeShard(t, c, Key{ChunkID: 1}, []byte("still alive"))
}

func TestServerNoSpace(t *testing.T) {
	s, c := startServerWith(t, testConfig(t, 2), func(s *Server) {
		s.Store().statfs = func(string) (diskSpace, error) { return diskSpace{total: 1 << 30, free: 100}, nil }
	})
	data := randBytes(1<<20, 1)
	_, err := c.WriteShard(context.Background(), &stratapb.WriteShardRequest{Key: pbKey(Key{ChunkID: 1}), Data: data, Crc32C: crcOf(data)})
	wantCode(t, "WriteShard on full disks", err, codes.ResourceExhausted)
	if rpcerr.ErrnoOf(err) != syscall.ENOSPC || rpcerr.Retryable(err) {
		t.Fatalf("full-disk error %v must carry ENOSPC and not look like flow control", err)
	}
	for _, d := range s.Store().Dirs() {
		if f := filesUnder(t, filepath.Join(d, shardsDir), ""); len(f) != 0 {
			t.Fatalf("files left behind: %v", f)
		}
	}
}

func TestServerRestart(t *testing.T) {
	cfg := testConfig(t, 2)
	s, c := startServer(t, cfg)
	uuid := s.UUID()
	want := map[Key][]byte{}
	for i := range 10 {
		k := Key{ChunkID: uint64(i * 1000), Index: uint32(i)}
		want[k] = randBytes(i*5000, uint64(i))
		writeShard(t, c, k, want[k])
	}
	tmp := filepath.Join(cfg.Dirs[1], shardsDir, "00", "0000000000000001.0"+tempMarker+"9")
	os.MkdirAll(filepath.Dir(tmp), 0o755)
	if err := os.WriteFile(tmp, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("New on dirs held by a running server = %v, want an in-use error", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2, c2 := startServer(t, cfg)
	if s2.UUID() != uuid {
		t.Fatalf("UUID changed across restart: %s -> %s", uuid, s2.UUID())
	}
	for k, data := range want {
		resp, err := c2.ReadShard(context.Background(), &stratapb.ReadShardRequest{Key: pbKey(k)})
		if err != nil || !bytes.Equal(resp.Data, data) {
			t.Fatalf("after restart ReadShard(%v): %v", k, err)
		}
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temp file survived restart: %v", err)
	}
}

func TestIdentity(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	id, err := loadIdentity([]string{a})
	if err != nil || !validUUID(id) || id[14] != '4' {
		t.Fatalf("loadIdentity = %q, %v", id, err)
	}
	// A dir added later gets the identity of the existing one, whatever
	// the order.
	id2, err := loadIdentity([]string{b, a})
	if err != nil || id2 != id {
		t.Fatalf("loadIdentity with a new dir = %q, %v; want %q", id2, err, id)
	}
	if got, err := readIdentity(b); err != nil || got != id {
		t.Fatalf("identity not copied to the new dir: %q, %v", got, err)
	}
	other := t.TempDir()
	if _, err := loadIdentity([]string{other}); err != nil {
		t.Fatal(err)
	}
	if _, err := loadIdentity([]string{a, other}); err == nil || !strings.Contains(err.Error(), "different dataservers") {
		t.Fatalf("mixing two servers' dirs = %v, want refusal", err)
	}
	os.WriteFile(filepath.Join(other, identityFile), []byte("garbage\n"), 0o644)
	if _, err := loadIdentity([]string{other}); err == nil || !strings.Contains(err.Error(), other) {
		t.Fatalf("garbage IDENTITY = %v, want an error naming the file", err)
	}
}

func TestNewUnwritableDir(t *testing.T) {
	tmp := t.TempDir()
	file := filepath.Join(tmp, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(file, "sub")
	cfg := testConfig(t, 1)
	cfg.Dirs = append(cfg.Dirs, bad)
	_, err := New(cfg)
	if err == nil || !strings.Contains(err.Error(), bad) || !errors.Is(err, syscall.ENOTDIR) {
		t.Fatalf("New with %s = %v, want an error naming it", bad, err)
	}
	// The good dir must have been released again.
	cfg.Dirs = cfg.Dirs[:1]
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New after a failed New: %v", err)
	}
	s.Close()
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.Dirs = []string{"/tmp/x"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for name, mut := range map[string]func(*Config){
		"no dirs":         func(c *Config) { c.Dirs = nil },
		"empty dir":       func(c *Config) { c.Dirs = []string{""} },
		"duplicate dir":   func(c *Config) { c.Dirs = []string{"/tmp/x", "/tmp/x/"} },
		"no listen":       func(c *Config) { c.ListenAddr = "" },
		"bad listen":      func(c *Config) { c.ListenAddr = "localhost" },
		"bad advertise":   func(c *Config) { c.AdvertiseAddr = "nope" },
		"bad meta":        func(c *Config) { c.MetaAddrs = []string{""} },
		"bad metrics":     func(c *Config) { c.MetricsAddr = "x" },
		"tiny block":      func(c *Config) { c.BlockSize = 100 },
		"huge block":      func(c *Config) { c.BlockSize = 1 << 30 },
		"negative beat":   func(c *Config) { c.HeartbeatInterval = -1 },
		"empty label key": func(c *Config) { c.Labels = map[string]string{"": "x"} },
	} {
		c := ok
		mut(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Validate = %v, want ErrInvalid", name, err)
		}
	}
}

func TestServerLifecycle(t *testing.T) {
	s, err := New(testConfig(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err == nil {
		t.Fatal("second Start succeeded")
	}
	if err := errors.Join(s.Close(), s.Close()); err != nil {
		t.Fatalf("Close twice: %v", err)
	}
	if err := s.Start(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close = %v", err)
	}
	// Close without Start.
	s, err = New(testConfig(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestRecoverInterceptor(t *testing.T) {
	ic := grpcutil.RecoverUnary(testLogger(t))
	_, err := ic(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/strata.v1.Data/ReadShard"},
		func(context.Context, any) (any, error) { panic("boom") })
	wantCode(t, "panicking handler", err, codes.Internal)
}

func TestServerMetrics(t *testing.T) {
	// Own registry, served over HTTP.
	cfg := testConfig(t, 1)
	cfg.MetricsAddr = "127.0.0.1:0"
	s, c := startServer(t, cfg)
	writeShard(t, c, Key{ChunkID: 1}, []byte("metrics"))
	resp, err := http.Get("http://" + s.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`strata_dataserver_requests_total{code="OK",op="write"} 1`,
		`strata_dataserver_written_bytes_total 7`,
		`strata_dataserver_shards 1`,
		`strata_dataserver_request_duration_seconds_bucket`,
	} {
		if !strings.Contains(string(body), want) {
			t.Fatalf("/metrics lacks %q:\n%s", want, body)
		}
	}

	// Caller's registry: a restarted server registers again after Close.
	reg := prometheus.NewRegistry()
	for range 2 {
		cfg := testConfig(t, 1)
		cfg.Registerer = reg
		s, err := New(cfg)
		if err != nil {
			t.Fatalf("New with a registry: %v", err)
		}
		mfs, err := reg.Gather()
		if err != nil || len(mfs) < 5 {
			t.Fatalf("Gather = %d families, %v", len(mfs), err)
		}
		s.Close()
	}
}
