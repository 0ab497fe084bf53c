package metaserver_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/dataserver"
	"github.com/strata-hpc/strata/internal/crc32c"
	"github.com/strata-hpc/strata/internal/testcluster"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// The self-healing tests run a real cluster (internal/testcluster: raft
// metaservers on disk, dataservers with shard files on disk, gRPC over
// loopback) and a real client; faults are real too: servers stopped,
// shard files deleted or overwritten on disk.

// healEnv is one test's cluster, client and the files that must read back.
type healEnv struct {
	t     testing.TB
	cl    *testcluster.Cluster
	c     *client.Client
	files map[string][]byte
	// lazy holds files too big to keep in memory (STRATA_HEAL_BIG): their
	// content is generated again from the seed to compare.
	lazy map[string][2]uint64 // path -> size, seed
}

// healPolicy: 4+2 with 1 MiB chunks, so that a few MiB make many stripes.
func healPolicy() *stratapb.StripePolicy {
	return &stratapb.StripePolicy{DataShards: 4, ParityShards: 2, ChunkSize: 1 << 20, SmallThreshold: 4 << 10}
}

func newHealEnv(t *testing.T, opts testcluster.Options) *healEnv {
	t.Helper()
	if opts.Policy == nil {
		opts.Policy = healPolicy()
	}
	opts.Heal = true
	if opts.Meta == 0 {
		opts.Meta = 3
	}
	cl := testcluster.New(t, opts)
	c, err := client.New(client.Config{MetaAddrs: cl.MetaAddrs(), TLS: cl.ClientTLS(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &healEnv{t: t, cl: cl, c: c, files: map[string][]byte{}, lazy: map[string][2]uint64{}}
}

func hctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func randData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// write puts files of size bytes each until total bytes are written.
func (e *healEnv) write(prefix string, total, size int) {
	e.t.Helper()
	for i := 0; i*size < total; i++ {
		p := fmt.Sprintf("/%s-%03d", prefix, i)
		seed := uint64(len(e.files)+len(e.lazy)+1)*7919 + uint64(i)
		data := randData(size, seed)
		e.put(p, data)
		if bigRun() {
			delete(e.files, p)
			e.lazy[p] = [2]uint64{uint64(size), seed}
		}
	}
}

func (e *healEnv) put(p string, data []byte) {
	e.t.Helper()
	if _, err := e.c.Put(hctx(e.t), p, bytes.NewReader(data), client.PutOptions{}); err != nil {
		e.t.Fatalf("put %s: %v", p, err)
	}
	e.files[p] = data
}

// verify reads every file back and compares it byte for byte.
func (e *healEnv) verify() {
	e.t.Helper()
	for p, spec := range e.lazy {
		e.verifyOne(p, randData(int(spec[0]), spec[1]))
	}
	for p, want := range e.files {
		e.verifyOne(p, want)
	}
}

func (e *healEnv) verifyOne(p string, want []byte) {
	e.t.Helper()
	{
		var got bytes.Buffer
		if _, err := e.c.Get(hctx(e.t), p, &got); err != nil {
			e.t.Fatalf("get %s: %v", p, err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			e.t.Fatalf("%s: read back %d bytes that differ from the %d written", p, got.Len(), len(want))
		}
	}
}

// leader returns the ready leader's server.
func (e *healEnv) leader() int { return e.cl.WaitLeader() }

func (e *healEnv) status() *stratapb.RepairStatusResponse {
	e.t.Helper()
	st, err := e.c.RepairStatus(hctx(e.t))
	if err != nil {
		e.t.Fatalf("repair status: %v", err)
	}
	return st
}

// chunks lists every chunk of every file, as the leader has them.
func (e *healEnv) chunks() []*stratapb.Chunk {
	e.t.Helper()
	var out []*stratapb.Chunk
	paths := slices.Collect(maps.Keys(e.files))
	for p := range e.lazy {
		paths = append(paths, p)
	}
	for _, p := range paths {
		a, err := e.c.Stat(hctx(e.t), p)
		if err != nil {
			e.t.Fatalf("stat %s: %v", p, err)
		}
		l := e.leader()
		resp, err := e.cl.Meta[l].Srv.GetChunks(hctx(e.t), &stratapb.GetChunksRequest{Ino: a.Ino})
		if err != nil {
			return nil // leader changed under us: the caller polls again
		}
		out = append(out, resp.Chunks...)
	}
	return out
}

// stripesOK reports whether every stripe has width distinct placed shards,
// none on a server in bad, and the scheduler has nothing queued.
func (e *healEnv) stripesOK(bad map[uint32]bool, width int) (bool, string) {
	chunks := e.chunks()
	if chunks == nil {
		return false, "no chunks read"
	}
	for _, ch := range chunks {
		seen := map[uint32]bool{}
		placed := 0
		for _, id := range ch.Servers {
			if id == 0 || bad[id] || seen[id] {
				continue
			}
			seen[id] = true
			placed++
		}
		if placed < width {
			return false, fmt.Sprintf("chunk %d: %d of %d shards placed well (servers %v)", ch.Id, placed, width, ch.Servers)
		}
	}
	return true, ""
}

// waitStripes waits until stripesOK holds.
func (e *healEnv) waitStripes(bad map[uint32]bool, width int, timeout time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	var why string
	for time.Now().Before(deadline) {
		var ok bool
		if ok, why = e.stripesOK(bad, width); ok {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	e.t.Fatalf("stripes not repaired within %v: %s (status %v)", timeout, why, e.status())
}

// waitCond polls cond until it holds or the timeout ends.
func waitCond(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s", timeout, what)
}

func (e *healEnv) dataID(i int) uint32 {
	e.t.Helper()
	var id uint32
	waitCond(e.t, 30*time.Second, "dataserver id", func() bool {
		if s := e.cl.Data[i].Srv; s != nil {
			id = s.ID()
		}
		return id != 0
	})
	return id
}

func bigRun() bool { return os.Getenv("STRATA_HEAL_BIG") != "" }

// shardFile is one shard file on a dataserver's disk.
type shardFile struct {
	data  int // index in cl.Data
	chunk uint64
	index uint32
	path  string
}

// shardFiles lists the shard files on every dataserver's disks.
func (e *healEnv) shardFiles() []shardFile {
	e.t.Helper()
	var out []shardFile
	for i, d := range e.cl.Data {
		for _, dir := range d.Cfg.Dirs {
			err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
				if err != nil || de.IsDir() {
					return nil
				}
				id, idx, ok := strings.Cut(de.Name(), ".")
				if !ok || len(id) != 16 {
					return nil
				}
				c, err1 := strconv.ParseUint(id, 16, 64)
				x, err2 := strconv.ParseUint(idx, 10, 32)
				if err1 == nil && err2 == nil {
					out = append(out, shardFile{data: i, chunk: c, index: uint32(x), path: p})
				}
				return nil
			})
			if err != nil {
				e.t.Fatal(err)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	return out
}

// corrupt overwrites the last bytes of a shard file (its data, so that a
// block checksum fails).
func corruptFile(t testing.TB, p string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	junk := bytes.Repeat([]byte{0xA5}, 64)
	if _, err := f.WriteAt(junk, fi.Size()-int64(len(junk))); err != nil {
		t.Fatal(err)
	}
}

// placedOn reports which server the leader's metadata places shard index
// of chunk on (0 if the chunk is unknown).
func placedOn(chunks []*stratapb.Chunk, chunk uint64, index uint32) uint32 {
	for _, c := range chunks {
		if c.Id == chunk {
			return c.Servers[index]
		}
	}
	return 0
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

func dataserverKey(chunk uint64, index uint32) dataserver.Key {
	return dataserver.Key{ChunkID: chunk, Index: index}
}

func crcOf(b []byte) uint32 { return crc32c.Checksum(b) }

func removeFile(t testing.TB, p string) {
	t.Helper()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
}

func registerReq(uuid, addr string) *stratapb.RegisterDataServerRequest {
	return &stratapb.RegisterDataServerRequest{Uuid: strings.TrimSpace(uuid), Addr: addr}
}
