package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"

	"github.com/strata-hpc/strata/proto/stratapb"
)

func TestPutGetSizes(t *testing.T) {
	e := newEnv(t, 8, testPolicy())
	const cs = 64 << 10
	for _, size := range []int{0, 1, 100, 4<<10 - 1, 4 << 10, cs - 1, cs, cs + 1, 5*cs + 7, 40 * cs} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			data := randBytes(size, uint64(size))
			p := fmt.Sprintf("/f%d", size)
			attr := e.put(p, data)
			if attr.Size != uint64(size) {
				t.Fatalf("size after put = %d, want %d", attr.Size, size)
			}
			if got := e.get(p); !bytes.Equal(got, data) {
				t.Fatalf("get returned %d bytes, not the %d put", len(got), size)
			}
			if size > 0 {
				ch := e.meta.chunk(attr.Ino, 0)
				wantScheme := stratapb.Scheme_ERASURE
				if min(size, cs) < 4<<10 {
					wantScheme = stratapb.Scheme_REPLICATED
				}
				if ch.Scheme != wantScheme {
					t.Fatalf("chunk 0 scheme %v, want %v", ch.Scheme, wantScheme)
				}
			}
		})
	}
}

func TestPutOverwriteTruncates(t *testing.T) {
	e := newEnv(t, 6, testPolicy())
	e.put("/f", randBytes(300<<10, 1))
	short := randBytes(10, 2)
	e.put("/f", short)
	if got := e.get("/f"); !bytes.Equal(got, short) {
		t.Fatalf("after overwrite got %d bytes, want %d", len(got), len(short))
	}
	if _, err := e.c.Put(ctxT(t), "/", bytes.NewReader(nil), PutOptions{}); !errors.Is(err, syscall.EISDIR) {
		t.Fatalf("put / = %v, want EISDIR", err)
	}
	if _, err := e.c.Get(ctxT(t), "/", io.Discard); !errors.Is(err, syscall.EISDIR) {
		t.Fatalf("get / = %v, want EISDIR", err)
	}
}

// failingReader yields n bytes, then an error.
type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, errors.New("disk on fire")
	}
	k := min(len(p), r.n)
	r.n -= k
	return k, nil
}

func TestPutReaderError(t *testing.T) {
	e := newEnv(t, 6, testPolicy())
	_, err := e.c.Put(ctxT(t), "/f", &failingReader{n: 200 << 10}, PutOptions{})
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("put from a failing reader: %v", err)
	}
}

func TestPutCanceled(t *testing.T) {
	e := newEnv(t, 6, testPolicy())
	ctx, cancel := context.WithCancel(ctxT(t))
	cancel()
	_, err := e.c.Put(ctx, "/f", bytes.NewReader(randBytes(1<<20, 1)), PutOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("put with canceled context: %v", err)
	}
}

func TestReadAt(t *testing.T) {
	e := newEnv(t, 6, testPolicy())
	const size = 5*(64<<10) + 1234
	data := randBytes(size, 5)
	attr := e.put("/f", data)
	ctx := ctxT(t)
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		off := r.IntN(size + 100)
		n := r.IntN(200 << 10)
		p := make([]byte, n)
		got, err := e.c.ReadAt(ctx, attr.Ino, p, int64(off))
		want := max(0, min(n, size-off))
		if got != want {
			t.Fatalf("ReadAt(%d, %d) = %d bytes, want %d", off, n, got, want)
		}
		if want < n && err != io.EOF {
			t.Fatalf("ReadAt(%d, %d) past EOF: err = %v, want io.EOF", off, n, err)
		}
		if want == n && err != nil {
			t.Fatalf("ReadAt(%d, %d): %v", off, n, err)
		}
		if !bytes.Equal(p[:got], data[off:off+got]) {
			t.Fatalf("ReadAt(%d, %d): wrong bytes", off, n)
		}
	}
	if n, err := e.c.ReadAt(ctx, attr.Ino, nil, size+10); n != 0 || err != nil {
		t.Fatalf("empty read = %d, %v", n, err)
	}
	if _, err := e.c.ReadAt(ctx, attr.Ino, make([]byte, 1), -1); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("negative offset: %v", err)
	}
}

// stashShards removes, corrupts or takes offline the given shards of a
// chunk, each in its own way, and returns a function that undoes it.
func (e *env) breakShards(ch *stratapb.Chunk, shards []int) func() {
	var undo []func()
	for n, j := range shards {
		d := e.server(ch.Servers[j])
		switch n % 3 {
		case 0: // missing: NotFound
			var saved []byte
			d.mutate(ch.Id, j, func(b []byte) { saved = append([]byte(nil), b...) })
			d.drop(ch.Id, j)
			undo = append(undo, func() {
				d.mu.Lock()
				d.shards[[2]uint64{ch.Id, uint64(j)}] = saved
				d.mu.Unlock()
			})
		case 1: // bad block: DataLoss
			d.setCorrupt(ch.Id, j)
			undo = append(undo, func() {
				d.mu.Lock()
				delete(d.corrupt, [2]uint64{ch.Id, uint64(j)})
				d.mu.Unlock()
			})
		case 2: // server down: Unavailable
			d.setDown(true)
			undo = append(undo, func() { d.setDown(false) })
		}
	}
	return func() {
		for _, u := range undo {
			u()
		}
	}
}

// TestDegradedReadEveryCombination reads byte ranges of a 4+2 chunk with
// every set of 1 or 2 of its 6 shards broken, and checks the bytes.
func TestDegradedReadEveryCombination(t *testing.T) {
	e := newEnv(t, 6, testPolicy())
	const size = 64<<10 - 3 // shard size 16384, last data shard padded
	data := randBytes(size, 7)
	attr := e.put("/f", data)
	ch := e.meta.chunk(attr.Ino, 0)
	if ch.Scheme != stratapb.Scheme_ERASURE || len(ch.Servers) != 6 {
		t.Fatalf("unexpected chunk %v", ch)
	}
	ss := int(ch.ShardSize)
	ranges := [][2]int{
		{0, size},                   // whole chunk (checksum verified)
		{0, 1},                      // first byte
		{size - 1, 1},               // last byte
		{ss + 100, 1000},            // inside shard 1
		{ss - 10, 20},               // across shards 0 and 1
		{100, 3 * ss},               // across all four
		{3*ss + 5, size - 3*ss - 5}, // tail of the padded shard
	}
	ctx := ctxT(t)
	all := []int{0, 1, 2, 3, 4, 5}
	for n := 1; n <= 2; n++ {
		for _, broken := range combinations(all, n) {
			undo := e.breakShards(ch, broken)
			for _, rg := range ranges {
				p := make([]byte, rg[1])
				got, err := e.c.ReadAt(ctx, attr.Ino, p, int64(rg[0]))
				if err != nil && err != io.EOF {
					t.Fatalf("broken %v, range %v: %v", broken, rg, err)
				}
				if got != rg[1] || !bytes.Equal(p, data[rg[0]:rg[0]+rg[1]]) {
					t.Fatalf("broken %v, range %v: wrong bytes", broken, rg)
				}
			}
			undo()
		}
	}
}

func TestDegradedReadReportsBadShards(t *testing.T) {
	e := newEnv(t, 6, testPolicy())
	data := randBytes(64<<10, 8)
	attr := e.put("/f", data)
	ch := e.meta.chunk(attr.Ino, 0)
	e.server(ch.Servers[1]).drop(ch.Id, 1)
	e.server(ch.Servers[4]).setCorrupt(ch.Id, 4)
	if got := e.get("/f"); !bytes.Equal(got, data) {
		t.Fatal("degraded get returned wrong bytes")
	}
	waitFor(t, "bad shard report", func() bool { return e.meta.reportCount() >= 1 })
	e.meta.mu.Lock()
	r := e.meta.reports[0]
	e.meta.mu.Unlock()
	if r.ChunkId != ch.Id || r.ShardIndex != 1 || r.ServerId != ch.Servers[1] || r.Reason == "" {
		t.Fatalf("report %v, want chunk %d shard 1 on server %d", r, ch.Id, ch.Servers[1])
	}
}

// TestReadFailsWithThreeMissing: 3 of 6 shards gone is more than 4+2 can
// survive; the error must say which chunk, offset, shards and why, and
// unwrap to ErrNotEnoughShards and EIO.
func TestReadFailsWithThreeMissing(t *testing.T) {
	e := newEnv(t, 6, testPolicy())
	data := randBytes(3*(64<<10), 9)
	attr := e.put("/f", data)
	ch := e.meta.chunk(attr.Ino, 1)
	undo := e.breakShards(ch, []int{0, 2, 5})
	defer undo()
	p := make([]byte, 100)
	_, err := e.c.ReadAt(ctxT(t), attr.Ino, p, 64<<10+10)
	if !errors.Is(err, ErrNotEnoughShards) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("err = %v, want ErrNotEnoughShards wrapping EIO", err)
	}
	var ce *ChunkError
	if !errors.As(err, &ce) {
		t.Fatalf("err %T is not a *ChunkError", err)
	}
	if ce.ChunkIndex != 1 || ce.ChunkID != ch.Id || ce.FileOffset != 64<<10+10 || ce.Need != 4 || ce.Have != 3 {
		t.Fatalf("ChunkError fields: %+v", ce)
	}
	var failed []int
	for _, f := range ce.Failures {
		failed = append(failed, f.Shard)
	}
	if fmt.Sprint(failed) != "[0 2 5]" {
		t.Fatalf("failures name shards %v, want [0 2 5]", failed)
	}
	msg := err.Error()
	for _, want := range []string{"chunk 1", fmt.Sprintf("id %d", ch.Id), "offset 65546",
		fmt.Sprintf("shard 0 on server %d", ch.Servers[0]), "not found", "data loss", "unavailable"} {
		if !strings.Contains(strings.ToLower(msg), strings.ToLower(want)) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	if _, err := e.c.Get(ctxT(t), "/f", io.Discard); !errors.Is(err, ErrNotEnoughShards) {
		t.Fatalf("get: %v", err)
	}
}

// TestSilentCorruption: a shard that returns wrong bytes without an error
// (which the dataserver's block checksums should prevent) is caught by the
// chunk checksum and the chunk rebuilt from the others.
func TestSilentCorruption(t *testing.T) {
	e := newEnv(t, 6, testPolicy())
	data := randBytes(64<<10, 10)
	attr := e.put("/f", data)
	ch := e.meta.chunk(attr.Ino, 0)
	e.server(ch.Servers[2]).mutate(ch.Id, 2, func(b []byte) { b[5] ^= 1 })
	if got := e.get("/f"); !bytes.Equal(got, data) {
		t.Fatal("corrupt shard leaked into the data")
	}
	waitFor(t, "report of the corrupt shard", func() bool { return e.meta.reportCount() >= 1 })
	for j := 0; j < 3; j++ {
		e.server(ch.Servers[j]).mutate(ch.Id, j, func(b []byte) { b[9] ^= 1 })
	}
	_, err := e.c.Get(ctxT(t), "/f", io.Discard)
	var ce *ChunkError
	if !errors.As(err, &ce) || !strings.Contains(ce.Reason, "checksum") {
		t.Fatalf("three corrupt shards: err = %v, want a checksum ChunkError", err)
	}
}

func TestReplicatedFallback(t *testing.T) {
	e := newEnv(t, 6, testPolicy())
	data := []byte("small file, stored as three replicas")
	attr := e.put("/f", data)
	ch := e.meta.chunk(attr.Ino, 0)
	if ch.Scheme != stratapb.Scheme_REPLICATED || len(ch.Servers) != 3 {
		t.Fatalf("chunk %v, want 3 replicas", ch)
	}
	undo := e.breakShards(ch, []int{0, 1})
	if got := e.get("/f"); !bytes.Equal(got, data) {
		t.Fatal("replica fallback returned wrong bytes")
	}
	e.server(ch.Servers[2]).mutate(ch.Id, 2, func(b []byte) { b[0] ^= 1 })
	if _, err := e.c.Get(ctxT(t), "/f", io.Discard); !errors.Is(err, ErrNotEnoughShards) {
		t.Fatalf("all replicas bad: %v", err)
	}
	undo()
	if got := e.get("/f"); !bytes.Equal(got, data) {
		t.Fatal("checksum mismatch on one replica not routed around")
	}
}

// TestWriteUsesSpares: a server that refuses writes is replaced by a spare
// not already in the stripe, and the commit names the spare.
func TestWriteUsesSpares(t *testing.T) {
	e := newEnv(t, 8, testPolicy())
	e.data[0].failW = true
	data := randBytes(20*(64<<10), 11)
	attr := e.put("/f", data)
	for idx := range uint64(20) {
		ch := e.meta.chunk(attr.Ino, idx)
		seen := map[uint32]bool{}
		for _, s := range ch.Servers {
			if s == e.data[0].id || s == 0 || seen[s] {
				t.Fatalf("chunk %d servers %v: failed, unplaced or repeated server", idx, ch.Servers)
			}
			seen[s] = true
		}
	}
	if got := e.get("/f"); !bytes.Equal(got, data) {
		t.Fatal("wrong bytes after spare writes")
	}
}

// TestWriteDegraded: with no spare left, a stripe is stored on k+1
// servers (the rest unplaced), but not on fewer.
func TestWriteDegraded(t *testing.T) {
	e := newEnv(t, 6, testPolicy())
	e.data[0].failW = true
	data := randBytes(3*(64<<10), 12)
	attr := e.put("/f", data)
	ch := e.meta.chunk(attr.Ino, 0)
	unplaced := 0
	for _, s := range ch.Servers {
		if s == 0 {
			unplaced++
		}
	}
	if unplaced != 1 {
		t.Fatalf("servers %v: want exactly one unplaced shard", ch.Servers)
	}
	if got := e.get("/f"); !bytes.Equal(got, data) {
		t.Fatal("degraded stripe reads back wrong")
	}
	e.data[1].failW = true
	_, err := e.c.Put(ctxT(t), "/g", bytes.NewReader(data), PutOptions{})
	if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "need 5") {
		t.Fatalf("put with two failing servers: %v", err)
	}
}

// TestGetManyChunks crosses several GetChunks pages (chunkPage chunks
// each) and holes, which Get must fill with zeros.
func TestGetManyChunks(t *testing.T) {
	pol := &stratapb.StripePolicy{DataShards: 4, ParityShards: 2, ChunkSize: 4096, SmallThreshold: 1024}
	e := newEnv(t, 6, pol)
	data := randBytes(3*chunkPage*4096+100, 13)
	e.put("/f", data)
	if got := e.get("/f"); !bytes.Equal(got, data) {
		t.Fatal("multi-page get differs")
	}
	// A sparse file: one chunk far out, holes before it.
	sparse := e.put("/sparse", nil)
	tail := []byte("the end")
	off := int64(2*chunkPage*4096 + 5)
	if _, err := e.c.WriteAt(ctxT(t), sparse.Ino, tail, off); err != nil {
		t.Fatal(err)
	}
	want := append(make([]byte, off), tail...)
	if got := e.get("/sparse"); !bytes.Equal(got, want) {
		t.Fatalf("sparse get: %d bytes, want %d with zeros before the tail", len(got), len(want))
	}
}

// TestPutThroughSymlink: Put follows a final symlink, also a dangling one,
// like open(O_CREAT|O_TRUNC).
func TestPutThroughSymlink(t *testing.T) {
	e := newEnv(t, 6, testPolicy())
	ctx := ctxT(t)
	if err := e.c.MkdirAll(ctx, "/d/sub", 0o755); err != nil {
		t.Fatal(err)
	}
	e.put("/d/real", []byte("old"))
	for _, l := range [][2]string{{"real", "/d/l1"}, {"../../d/./l1", "/d/sub/l2"}, {"/d/new", "/dangling"}, {"sub/", "/d/todir"}, {"/d/sub", "/d/todir2"}} {
		if err := e.c.Symlink(ctx, l[0], l[1]); err != nil {
			t.Fatal(err)
		}
	}
	e.put("/d/sub/l2", []byte("via two links"))
	if got := e.get("/d/real"); string(got) != "via two links" {
		t.Fatalf("/d/real = %q", got)
	}
	if a, err := e.c.Lstat(ctx, "/d/l1"); err != nil || a.Type != stratapb.FileType_SYMLINK {
		t.Fatalf("link replaced: %v %v", a, err)
	}
	e.put("/dangling", []byte("created"))
	if got := e.get("/d/new"); string(got) != "created" {
		t.Fatalf("/d/new = %q", got)
	}
	for _, p := range []string{"/d/todir", "/d/todir2", "/d"} {
		if _, err := e.c.Put(ctx, p, bytes.NewReader(nil), PutOptions{}); !errors.Is(err, syscall.EISDIR) {
			t.Fatalf("put %s: %v, want EISDIR", p, err)
		}
	}
}
