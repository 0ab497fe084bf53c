package client

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-hpc/strata/internal/capability"
	"github.com/strata-hpc/strata/internal/metaconn"
	"github.com/strata-hpc/strata/internal/pki"
	"github.com/strata-hpc/strata/internal/testcluster"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// The client's tests run against a real cluster in this process
// (internal/testcluster): three Raft metaservers with their stores on disk
// and dataservers keeping shard files on disk, all over gRPC on loopback.
// One cluster serves the subtests of a suite (see suites_test.go); each
// subtest works in its own directory. Faults are real too: shard files
// moved away or damaged on disk, dataservers stopped, shards overwritten
// through the dataserver's own API, metaservers partitioned.

// testPolicy keeps chunks small so that tests cover many chunks quickly:
// 4+2 erasure coding, 64 KiB chunks, chunks under 4 KiB replicated 3x.
func testPolicy() *stratapb.StripePolicy {
	return &stratapb.StripePolicy{DataShards: 4, ParityShards: 2, ChunkSize: 64 << 10, SmallThreshold: 4 << 10}
}

// cluster is what the subtests of a suite share: the servers, a client of
// them, and the model of every file written that must still read back.
type cluster struct {
	cl    *testcluster.Cluster
	c     *Client
	ids   []uint32 // dataserver id of cl.Data[i]
	aside string   // where shard files and disks a fault took away wait

	mu    sync.Mutex
	files map[string][]byte // absolute path -> content it must read back
}

// env is one (sub)test's view of a cluster. Its helpers that take a path
// (p, put, get, record, forget) take it relative to the test's own
// directory; calls on e.c directly need e.p(path).
type env struct {
	*cluster
	t    testing.TB
	root string // "" for the namespace root
}

// newEnv starts a cluster with nData dataservers and pol as the default
// stripe policy, and a client of it.
func newEnv(t testing.TB, nData int, pol *stratapb.StripePolicy) *env {
	t.Helper()
	cl := testcluster.New(t, testcluster.Options{Meta: 3, Data: nData, Policy: pol})
	c := newTestClient(t, cl.MetaAddrs(), cl.ClientTLS())
	sc := &cluster{cl: cl, c: c, aside: t.TempDir(), files: make(map[string][]byte)}
	for i, d := range cl.Data {
		if sc.ids = append(sc.ids, d.Srv.ID()); sc.ids[i] == 0 {
			t.Fatalf("dataserver %d has no id after registering", i)
		}
	}
	return &env{cluster: sc, t: t}
}

func newTestClient(t testing.TB, metaAddrs []string, id *pki.Identity) *Client {
	t.Helper()
	c, err := New(Config{MetaAddrs: metaAddrs, Logger: testLogger(t), ShardTimeout: 5 * time.Second, TLS: id})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sub returns the env of subtest t, with a fresh directory named after it.
func (e *env) sub(t testing.TB) *env {
	t.Helper()
	name := t.Name()
	return e.in(t, name[strings.LastIndex(name, "/")+1:])
}

// in returns an env for t working in a fresh directory name.
func (e *env) in(t testing.TB, name string) *env {
	t.Helper()
	s := &env{cluster: e.cluster, t: t, root: e.root + "/" + name}
	if err := s.c.MkdirAll(ctxT(t), s.root, 0o755); err != nil {
		t.Fatal(err)
	}
	return s
}

// p turns a path relative to the test's root ("/f") into an absolute one.
func (e *env) p(rel string) string {
	if rel == "/" && e.root != "" {
		return e.root
	}
	return e.root + rel
}

// testLogger shows client logs only with -v, where they help debugging.
func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func randBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// put writes data to rel, fails the test on error, and adds the file to
// the model of what must read back.
func (e *env) put(rel string, data []byte) *stratapb.Attr {
	e.t.Helper()
	attr, err := e.c.Put(ctxT(e.t), e.p(rel), bytes.NewReader(data), PutOptions{})
	if err != nil {
		e.t.Fatalf("put %s: %v", e.p(rel), err)
	}
	e.record(rel, data)
	return attr
}

func (e *env) get(rel string) []byte {
	e.t.Helper()
	var buf bytes.Buffer
	if _, err := e.c.Get(ctxT(e.t), e.p(rel), &buf); err != nil {
		e.t.Fatalf("get %s: %v", e.p(rel), err)
	}
	return buf.Bytes()
}

// readAll reads the whole of inode ino with ReadAt.
func (e *env) readAll(ino uint64) []byte {
	e.t.Helper()
	attr, err := e.c.GetAttr(ctxT(e.t), ino)
	if err != nil {
		e.t.Fatal(err)
	}
	p := make([]byte, attr.Size)
	n, err := e.c.ReadAt(ctxT(e.t), ino, p, 0)
	if err != nil && err != io.EOF || n != len(p) {
		e.t.Fatalf("ReadAt whole file: %d of %d bytes, %v", n, len(p), err)
	}
	return p
}

// record sets what the file at rel must read back as.
func (e *env) record(rel string, data []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.files[e.p(rel)] = slices.Clone(data)
}

// forget drops rel and everything under it from the model.
func (e *env) forget(rel string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.p(rel)
	for f := range e.files {
		if f == p || strings.HasPrefix(f, p+"/") {
			delete(e.files, f)
		}
	}
}

// verifyAll reads back every file of the model, byte for byte.
func (e *env) verifyAll(t testing.TB) {
	t.Helper()
	e.mu.Lock()
	files := maps.Clone(e.files)
	e.mu.Unlock()
	if len(files) == 0 {
		t.Fatal("verifyAll: the model holds no file")
	}
	for _, p := range slices.Sorted(maps.Keys(files)) {
		var buf bytes.Buffer
		_, err := e.c.Get(ctxT(t), p, &buf)
		if want := files[p]; err != nil || !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("%s: read back %d bytes (identical=%v), want %d bytes; err %v",
				p, buf.Len(), bytes.Equal(buf.Bytes(), want), len(want), err)
		}
	}
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	waitForT(t, 10*time.Second, what, cond)
}

// waitForT polls cond for up to timeout.
func waitForT(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// chunks returns the chunk list of inode ino, as the metadata service
// holds it.
func (e *env) chunks(ino uint64) *stratapb.GetChunksResponse {
	e.t.Helper()
	resp, err := e.c.getChunks(ctxT(e.t), ino, 0, 0)
	if err != nil {
		e.t.Fatalf("GetChunks(%d): %v", ino, err)
	}
	return resp
}

// chunk returns the chunk at index idx of inode ino.
func (e *env) chunk(ino, idx uint64) *stratapb.Chunk {
	e.t.Helper()
	for _, ch := range e.chunks(ino).Chunks {
		if ch.Index == idx {
			return ch
		}
	}
	e.t.Fatalf("inode %d has no chunk %d", ino, idx)
	return nil
}

// dataIndex returns the testcluster index of the dataserver with id.
func (e *env) dataIndex(id uint32) int {
	e.t.Helper()
	i := slices.Index(e.ids, id)
	if i < 0 {
		e.t.Fatalf("no dataserver has id %d (ids %v)", id, e.ids)
	}
	return i
}

// shardFile returns the path of the file holding shard j of ch, found on
// the disk of the dataserver the metadata names for it.
func (e *env) shardFile(ch *stratapb.Chunk, j int) string {
	e.t.Helper()
	d := e.cl.Data[e.dataIndex(ch.Servers[j])]
	var found []string
	for _, dir := range d.Cfg.Dirs {
		m, err := filepath.Glob(filepath.Join(dir, "shards", "*", fmt.Sprintf("%016x.%d", ch.Id, j)))
		if err != nil {
			e.t.Fatal(err)
		}
		found = append(found, m...)
	}
	if len(found) != 1 {
		e.t.Fatalf("shard %d of chunk %d on server %d: %d files found: %v", j, ch.Id, ch.Servers[j], len(found), found)
	}
	return found[0]
}

// hideShard moves shard j of ch off its dataserver's disk (reads of it
// fail NotFound) and returns the function that puts it back.
func (e *env) hideShard(ch *stratapb.Chunk, j int) func() {
	e.t.Helper()
	path := e.shardFile(ch, j)
	aside := filepath.Join(e.aside, fmt.Sprintf("%016x.%d", ch.Id, j))
	if err := os.Rename(path, aside); err != nil {
		e.t.Fatal(err)
	}
	return func() {
		if err := os.Rename(aside, path); err != nil {
			e.t.Errorf("put shard file back: %v", err)
		}
	}
}

// corruptShard flips one bit of shard j of ch in its file's data region,
// so that the block checksum fails (reads of it fail DataLoss), and
// returns the function that flips it back. Shard file layout: a 36-byte
// header (block size at 8, data length at 24), a CRC32C per block, data.
func (e *env) corruptShard(ch *stratapb.Chunk, j int) func() {
	e.t.Helper()
	path := e.shardFile(ch, j)
	flip := func() error {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		var h [36]byte
		if _, err := f.ReadAt(h[:], 0); err != nil {
			return err
		}
		block := uint64(binary.LittleEndian.Uint32(h[8:]))
		dataLen := binary.LittleEndian.Uint64(h[24:])
		if block == 0 || dataLen == 0 {
			return fmt.Errorf("%s: unexpected header (block size %d, data length %d)", path, block, dataLen)
		}
		at := int64(36+4*((dataLen+block-1)/block)) + int64(min(5, dataLen-1))
		var b [1]byte
		if _, err := f.ReadAt(b[:], at); err != nil {
			return err
		}
		b[0] ^= 0x10
		_, err = f.WriteAt(b[:], at)
		return err
	}
	if err := flip(); err != nil {
		e.t.Fatal(err)
	}
	return func() {
		if err := flip(); err != nil {
			e.t.Errorf("repair shard file: %v", err)
		}
	}
}

// stopServerOf stops the dataserver holding shard j of ch (reads of it
// fail Unavailable) and returns the function that restarts it.
func (e *env) stopServerOf(ch *stratapb.Chunk, j int) func() {
	e.t.Helper()
	i := e.dataIndex(ch.Servers[j])
	e.cl.KillData(i)
	return func() { e.restartData(i) }
}

// restartData restarts dataserver i and waits until the client's own
// connection to it works again (gRPC backs off reconnecting for a while).
func (e *env) restartData(i int) {
	e.t.Helper()
	e.cl.RestartData(i)
	dc, err := e.c.data.client(e.cl.Data[i].Srv.Addr())
	if err != nil {
		e.t.Fatal(err)
	}
	waitFor(e.t, fmt.Sprintf("client to reach restarted dataserver %d", i), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := dc.StatShard(ctx, &stratapb.StatShardRequest{Key: &stratapb.ShardKey{ChunkId: 1}, Capability: e.cl.Capability(1, capability.OpRead)})
		return err == nil
	})
}

// breakDisk makes dataserver i fail every shard write (and read) while it
// stays up and heartbeats as writable: its shard directory is replaced by
// a plain file, as if the disk's file system had failed. It returns the
// function that repairs it.
func (e *env) breakDisk(i int) func() {
	e.t.Helper()
	var undo []func()
	for n, dir := range e.cl.Data[i].Cfg.Dirs {
		shards := filepath.Join(dir, "shards")
		aside := filepath.Join(e.aside, fmt.Sprintf("disk%d.%d", i, n))
		if err := os.Rename(shards, aside); err != nil {
			e.t.Fatal(err)
		}
		if err := os.WriteFile(shards, []byte("not a directory"), 0o644); err != nil {
			e.t.Fatal(err)
		}
		undo = append(undo, func() {
			if err := os.Remove(shards); err != nil {
				e.t.Errorf("repair disk: %v", err)
			}
			if err := os.Rename(aside, shards); err != nil {
				e.t.Errorf("repair disk: %v", err)
			}
		})
	}
	return func() {
		for _, u := range undo {
			u()
		}
	}
}

// dataClient is a connection of the test's own to dataserver addr.
func (e *env) dataClient(addr string) stratapb.DataClient {
	e.t.Helper()
	cc, err := grpc.NewClient(addr, metaconn.DialOptions(e.cl.DialCreds(pki.RoleData), grpc.WithChainUnaryInterceptor(e.cl.CapInterceptor()))...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cc.Close() })
	return stratapb.NewDataClient(cc)
}

// rewriteShard replaces shard j of ch through the real dataserver's
// WriteShard with fn applied to its bytes, and a CRC32C of the new bytes:
// the shard passes the dataserver's block checksums but holds wrong data,
// which only the chunk checksum in the metadata can catch. It returns the
// function that writes the original bytes back.
func (e *env) rewriteShard(ch *stratapb.Chunk, j int, fn func([]byte)) func() {
	e.t.Helper()
	ctx := ctxT(e.t)
	dc := e.dataClient(e.chunkAddr(ch, j))
	key := &stratapb.ShardKey{ChunkId: ch.Id, Index: uint32(j)}
	resp, err := dc.ReadShard(ctx, &stratapb.ReadShardRequest{Key: key})
	if err != nil {
		e.t.Fatalf("read shard %d of chunk %d: %v", j, ch.Id, err)
	}
	orig := resp.Data
	bad := slices.Clone(orig)
	fn(bad)
	if bytes.Equal(bad, orig) {
		e.t.Fatal("rewriteShard: fn changed nothing")
	}
	write := func(b []byte) error {
		_, err := dc.WriteShard(ctx, &stratapb.WriteShardRequest{Key: key, Data: b, Crc32C: crc32c(b)})
		return err
	}
	if err := write(bad); err != nil {
		e.t.Fatalf("overwrite shard %d of chunk %d: %v", j, ch.Id, err)
	}
	return func() {
		if err := write(orig); err != nil {
			e.t.Errorf("restore shard %d of chunk %d: %v", j, ch.Id, err)
		}
	}
}

// chunkAddr is the address of the dataserver holding shard j of ch.
func (e *env) chunkAddr(ch *stratapb.Chunk, j int) string {
	e.t.Helper()
	d := e.cl.Data[e.dataIndex(ch.Servers[j])]
	if d.Srv == nil {
		e.t.Fatalf("dataserver of shard %d of chunk %d is stopped", j, ch.Id)
	}
	return d.Srv.Addr()
}

// breakShards makes the given shards of a chunk unreadable, each in its own
// way in turn (file gone: NotFound; bad block: DataLoss; server stopped:
// Unavailable), checks with a read of each that the fault took, and
// returns the function that undoes it all.
func (e *env) breakShards(ch *stratapb.Chunk, shards []int) func() {
	e.t.Helper()
	var undo []func()
	undoAll := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	want := make([]codes.Code, len(shards))
	addrs := make([]string, len(shards))
	for n, j := range shards {
		addrs[n] = e.chunkAddr(ch, j)
		switch n % 3 {
		case 0:
			undo = append(undo, e.hideShard(ch, j))
			want[n] = codes.NotFound
		case 1:
			undo = append(undo, e.corruptShard(ch, j))
			want[n] = codes.DataLoss
		case 2:
			undo = append(undo, e.stopServerOf(ch, j))
			want[n] = codes.Unavailable
		}
	}
	for n, j := range shards {
		dc, err := e.c.data.client(addrs[n])
		if err == nil {
			_, err = dc.ReadShard(ctxT(e.t), &stratapb.ReadShardRequest{Key: &stratapb.ShardKey{ChunkId: ch.Id, Index: uint32(j)}, Capability: e.cl.Capability(ch.Id, capability.OpRead)})
		}
		if status.Code(err) != want[n] {
			undoAll()
			e.t.Fatalf("shard %d of chunk %d broken: read says %v, want %v", j, ch.Id, err, want[n])
		}
	}
	return undoAll
}
