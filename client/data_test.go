package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/strata-hpc/strata/proto/stratapb"
)

func testPutGetSizes(t *testing.T, e *env) {
	const cs = 64 << 10
	for _, size := range []int{0, 1, 100, 4<<10 - 1, 4 << 10, cs - 1, cs, cs + 1, 5*cs + 7, 40 * cs} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			e := &env{cluster: e.cluster, t: t, root: e.root}
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
				ch := e.chunk(attr.Ino, 0)
				wantScheme, wantWidth := stratapb.Scheme_ERASURE, 6
				if min(size, cs) < 4<<10 {
					wantScheme, wantWidth = stratapb.Scheme_REPLICATED, 3
				}
				if ch.Scheme != wantScheme || len(ch.Servers) != wantWidth {
					t.Fatalf("chunk 0: scheme %v on %d servers, want %v on %d", ch.Scheme, len(ch.Servers), wantScheme, wantWidth)
				}
			}
		})
	}
}

func testPutOverwriteTruncates(t *testing.T, e *env) {
	e.put("/f", randBytes(300<<10, 1))
	short := randBytes(10, 2)
	e.put("/f", short)
	if got := e.get("/f"); !bytes.Equal(got, short) {
		t.Fatalf("after overwrite got %d bytes, want %d", len(got), len(short))
	}
	for _, dir := range []string{"/", e.p("/")} {
		if _, err := e.c.Put(ctxT(t), dir, bytes.NewReader(nil), PutOptions{}); !errors.Is(err, syscall.EISDIR) {
			t.Fatalf("put %s = %v, want EISDIR", dir, err)
		}
		if _, err := e.c.Get(ctxT(t), dir, io.Discard); !errors.Is(err, syscall.EISDIR) {
			t.Fatalf("get %s = %v, want EISDIR", dir, err)
		}
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

func testPutReaderError(t *testing.T, e *env) {
	_, err := e.c.Put(ctxT(t), e.p("/f"), &failingReader{n: 200 << 10}, PutOptions{})
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("put from a failing reader: %v", err)
	}
}

func testPutCanceled(t *testing.T, e *env) {
	ctx, cancel := context.WithCancel(ctxT(t))
	cancel()
	_, err := e.c.Put(ctx, e.p("/f"), bytes.NewReader(randBytes(1<<20, 1)), PutOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("put with canceled context: %v", err)
	}
}

func testReadAt(t *testing.T, e *env) {
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

// testGetManyChunks crosses several GetChunks pages (chunkPage chunks
// each) and holes, which Get must fill with zeros. The file is dense: 3
// full pages and a bit. Its directory stores each chunk as a single shard
// (1+0): paging is what is tested, and 769 chunks of 6 shard files would
// spend some 10 s creating files.
func testGetManyChunks(t *testing.T, e *env) {
	if _, err := e.c.Mkdir(ctxT(t), e.p("/d"), 0o755); err != nil {
		t.Fatal(err)
	}
	pol := &stratapb.StripePolicy{DataShards: 1, ParityShards: 0, ChunkSize: 4096, SmallThreshold: 1024}
	if err := e.c.SetPolicy(ctxT(t), e.p("/d"), pol); err != nil {
		t.Fatal(err)
	}
	data := randBytes(3*chunkPage*4096+100, 13)
	attr := e.put("/d/f", data)
	if n := len(e.chunks(attr.Ino).Chunks); n != 3*chunkPage+1 {
		t.Fatalf("file has %d chunks, want %d", n, 3*chunkPage+1)
	}
	if got := e.get("/d/f"); !bytes.Equal(got, data) {
		t.Fatal("multi-page get differs")
	}
	// A sparse file: one chunk far out, holes before it.
	sparse := e.put("/d/sparse", nil)
	tail := []byte("the end")
	off := int64(2*chunkPage*4096 + 5)
	if _, err := e.c.WriteAt(ctxT(t), sparse.Ino, tail, off); err != nil {
		t.Fatal(err)
	}
	want := append(make([]byte, off), tail...)
	if got := e.get("/d/sparse"); !bytes.Equal(got, want) {
		t.Fatalf("sparse get: %d bytes, want %d with zeros before the tail", len(got), len(want))
	}
	e.record("/d/sparse", want)
}

// testPutThroughSymlink: Put follows a final symlink, also a dangling one,
// like open(O_CREAT|O_TRUNC).
func testPutThroughSymlink(t *testing.T, e *env) {
	ctx := ctxT(t)
	if err := e.c.MkdirAll(ctx, e.p("/d/sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.put("/d/real", []byte("old"))
	for _, l := range [][2]string{{"real", "/d/l1"}, {"../../d/./l1", "/d/sub/l2"}, {e.p("/d/new"), "/dangling"}, {"sub/", "/d/todir"}, {e.p("/d/sub"), "/d/todir2"}} {
		if err := e.c.Symlink(ctx, l[0], e.p(l[1])); err != nil {
			t.Fatal(err)
		}
	}
	e.put("/d/sub/l2", []byte("via two links"))
	if got := e.get("/d/real"); string(got) != "via two links" {
		t.Fatalf("/d/real = %q", got)
	}
	e.record("/d/real", []byte("via two links"))
	if a, err := e.c.Lstat(ctx, e.p("/d/l1")); err != nil || a.Type != stratapb.FileType_SYMLINK {
		t.Fatalf("link replaced: %v %v", a, err)
	}
	e.put("/dangling", []byte("created"))
	if got := e.get("/d/new"); string(got) != "created" {
		t.Fatalf("/d/new = %q", got)
	}
	e.record("/d/new", []byte("created"))
	for _, p := range []string{"/d/todir", "/d/todir2", "/d"} {
		if _, err := e.c.Put(ctx, e.p(p), bytes.NewReader(nil), PutOptions{}); !errors.Is(err, syscall.EISDIR) {
			t.Fatalf("put %s: %v, want EISDIR", p, err)
		}
	}
}

// testDegradedReadEveryCombination reads byte ranges of a 4+2 chunk with
// every set of 1 or 2 of its 6 shards broken (a shard file gone, a shard
// with a bad block), and checks the bytes.
func testDegradedReadEveryCombination(t *testing.T, e *env) {
	const size = 64<<10 - 3 // shard size 16384, last data shard padded
	data := randBytes(size, 7)
	attr := e.put("/f", data)
	ch := e.chunk(attr.Ino, 0)
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
			func() {
				defer e.breakShards(ch, broken)()
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
			}()
		}
	}
}

// waitReports waits until the tap has seen the real leader accept a
// ReportBadShard for each of the shards of chunk id, and returns them.
func waitReports(t *testing.T, tap *metaTap, id uint64, shards ...int) map[int]*stratapb.ReportBadShardRequest {
	t.Helper()
	got := make(map[int]*stratapb.ReportBadShardRequest)
	waitFor(t, fmt.Sprintf("reports of shards %v of chunk %d", shards, id), func() bool {
		for _, c := range tap.callsOf(stratapb.Meta_ReportBadShard_FullMethodName) {
			r := decode(t, c.req, &stratapb.ReportBadShardRequest{})
			if r.ChunkId == id && c.code == 0 {
				got[int(r.ShardIndex)] = r
			}
		}
		for _, j := range shards {
			if got[j] == nil {
				return false
			}
		}
		return true
	})
	return got
}

func testDegradedReadReportsBadShards(t *testing.T, e *env) {
	tap := newMetaTap(t, e.cl)
	tc := tap.client()
	data := randBytes(64<<10, 8)
	attr := e.put("/f", data)
	ch := e.chunk(attr.Ino, 0)
	defer e.hideShard(ch, 1)()
	defer e.corruptShard(ch, 4)()
	badBefore := e.cl.Meta[e.cl.WaitLeader()].Srv.Stats().BadShards
	var buf bytes.Buffer
	if _, err := tc.Get(ctxT(t), e.p("/f"), &buf); err != nil || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("degraded get: identical=%v, err %v", bytes.Equal(buf.Bytes(), data), err)
	}
	reports := waitReports(t, tap, ch.Id, 1, 4)
	for j, want := range map[int]string{1: "not found", 4: "data loss"} {
		if r := reports[j]; r.ServerId != ch.Servers[j] || !strings.Contains(r.Reason, want) {
			t.Errorf("report %v, want shard %d on server %d, reason %q", r, j, ch.Servers[j], want)
		}
	}
	for _, c := range tap.callsOf(stratapb.Meta_ReportBadShard_FullMethodName) {
		if r := decode(t, c.req, &stratapb.ReportBadShardRequest{}); r.ChunkId == ch.Id && r.ShardIndex != 1 && r.ShardIndex != 4 {
			t.Errorf("healthy shard reported bad: %v", r)
		}
	}
	// The leader keeps each (chunk, shard) reported until repair.
	if st := e.cl.Meta[e.cl.WaitLeader()].Srv.Stats(); st.BadShards < badBefore+2 {
		t.Errorf("leader holds %d bad shards, %d before the 2 reports", st.BadShards, badBefore)
	}
}

// testReadFailsWithThreeMissing: 3 of 6 shards gone is more than 4+2 can
// survive; the error must say which chunk, offset, shards and why, and
// unwrap to ErrNotEnoughShards and EIO.
func testReadFailsWithThreeMissing(t *testing.T, e *env) {
	data := randBytes(3*(64<<10), 9)
	attr := e.put("/f", data)
	ch := e.chunk(attr.Ino, 1)
	defer e.breakShards(ch, []int{0, 2, 5})()
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
	if _, err := e.c.Get(ctxT(t), e.p("/f"), io.Discard); !errors.Is(err, ErrNotEnoughShards) {
		t.Fatalf("get: %v", err)
	}
}

// testSilentCorruption: a shard that returns wrong bytes without an error
// (it passes the dataserver's block checksums: it was written that way) is
// caught by the chunk checksum and the chunk rebuilt from the others.
func testSilentCorruption(t *testing.T, e *env) {
	tap := newMetaTap(t, e.cl)
	tc := tap.client()
	data := randBytes(64<<10, 10)
	attr := e.put("/f", data)
	ch := e.chunk(attr.Ino, 0)
	defer e.rewriteShard(ch, 2, func(b []byte) { b[5] ^= 1 })()
	var buf bytes.Buffer
	if _, err := tc.Get(ctxT(t), e.p("/f"), &buf); err != nil || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("corrupt shard leaked into the data: identical=%v, err %v", bytes.Equal(buf.Bytes(), data), err)
	}
	r := waitReports(t, tap, ch.Id, 2)[2]
	if r.ServerId != ch.Servers[2] || !strings.Contains(r.Reason, "checksum") {
		t.Errorf("report %v, want shard 2 on server %d, a checksum mismatch", r, ch.Servers[2])
	}
	for j := 0; j < 3; j++ {
		defer e.rewriteShard(ch, j, func(b []byte) { b[9] ^= 1 })()
	}
	_, err := tc.Get(ctxT(t), e.p("/f"), io.Discard)
	var ce *ChunkError
	if !errors.As(err, &ce) || !strings.Contains(ce.Reason, "checksum") {
		t.Fatalf("three corrupt shards: err = %v, want a checksum ChunkError", err)
	}
}

func testReplicatedFallback(t *testing.T, e *env) {
	data := []byte("small file, stored as three replicas")
	attr := e.put("/f", data)
	ch := e.chunk(attr.Ino, 0)
	if ch.Scheme != stratapb.Scheme_REPLICATED || len(ch.Servers) != 3 {
		t.Fatalf("chunk %v, want 3 replicas", ch)
	}
	undo := e.breakShards(ch, []int{0, 1})
	defer func() {
		if undo != nil {
			undo()
		}
	}()
	if got := e.get("/f"); !bytes.Equal(got, data) {
		t.Fatal("replica fallback returned wrong bytes")
	}
	defer e.rewriteShard(ch, 2, func(b []byte) { b[0] ^= 1 })()
	if _, err := e.c.Get(ctxT(t), e.p("/f"), io.Discard); !errors.Is(err, ErrNotEnoughShards) {
		t.Fatalf("all replicas bad: %v", err)
	}
	undo()
	undo = nil
	if got := e.get("/f"); !bytes.Equal(got, data) {
		t.Fatal("checksum mismatch on one replica not routed around")
	}
}

// testReadChunkCutByServer reads a chunk that the metadata service cut
// without the client (size lowered, checksum zeroed, shards unchanged), as
// happens when a truncate races with a write: the test sends the SetAttr
// itself, past the client's Truncate, which would rewrite the chunk.
func testReadChunkCutByServer(t *testing.T, e *env) {
	data := randBytes(64<<10, 6)
	attr := e.put("/f", data)
	hdr := e.c.NewHeader()
	err := e.c.Meta().Call(ctxT(t), func(ctx context.Context, mc stratapb.MetaClient) error {
		_, err := mc.SetAttr(ctx, &stratapb.SetAttrRequest{Header: hdr, Ino: attr.Ino,
			Valid: uint32(stratapb.SetAttrMask_SETATTR_SIZE), Size: 5000})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	e.record("/f", data[:5000])
	ch := e.chunk(attr.Ino, 0)
	if ch.Size != 5000 || ch.Crc32C != 0 || ch.ShardSize != 16<<10 {
		t.Fatalf("chunk after the server's cut: %v, want size 5000, no checksum, 16 KiB shards", ch)
	}
	if got := e.get("/f"); !bytes.Equal(got, data[:5000]) {
		t.Fatal("chunk cut by the server reads back wrong")
	}
	// Degraded: the bytes past the cut in shards 1-3 are old data, not
	// zero padding, and reconstruction must use them as they are.
	defer e.breakShards(ch, []int{0, 5})()
	if got := e.get("/f"); !bytes.Equal(got, data[:5000]) {
		t.Fatal("degraded read of a chunk cut by the server reads back wrong")
	}
}

// testWriteUsesSpares: a server that fails writes (its disk broken; it
// still heartbeats as writable, so placement keeps choosing it) is
// replaced by a spare not already in the stripe, and the commit names the
// spare.
func testWriteUsesSpares(t *testing.T, e *env) {
	tap := newMetaTap(t, e.cl)
	tc := tap.client()
	bad := e.ids[0]
	defer e.breakDisk(0)()
	data := randBytes(20*(64<<10), 11)
	attr, err := tc.Put(ctxT(t), e.p("/f"), bytes.NewReader(data), PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.record("/f", data)
	allocated := 0
	for _, c := range tap.callsOf(stratapb.Meta_AllocateChunks_FullMethodName) {
		for _, a := range decode(t, c.resp, &stratapb.AllocateChunksResponse{}).Allocations {
			if slices.Contains(a.Servers, bad) {
				allocated++
			}
		}
	}
	if allocated == 0 {
		t.Fatalf("the failing server %d was never allocated a shard: spares not exercised", bad)
	}
	chunks := e.chunks(attr.Ino).Chunks
	if len(chunks) != 20 {
		t.Fatalf("%d chunks, want 20", len(chunks))
	}
	for _, ch := range chunks {
		seen := map[uint32]bool{}
		for _, s := range ch.Servers {
			if s == bad || s == 0 || seen[s] {
				t.Fatalf("chunk %d servers %v: failed (%d), unplaced or repeated server", ch.Index, ch.Servers, bad)
			}
			seen[s] = true
		}
	}
	if got := e.get("/f"); !bytes.Equal(got, data) {
		t.Fatal("wrong bytes after spare writes")
	}
}

// testWriteDegraded: with no spare left (a 6+2 stripe on 8 dataservers),
// a stripe is stored on k+1 servers (the rest unplaced), but not on fewer.
func testWriteDegraded(t *testing.T, e *env) {
	ctx := ctxT(t)
	if _, err := e.c.Mkdir(ctx, e.p("/wide"), 0o755); err != nil {
		t.Fatal(err)
	}
	pol := &stratapb.StripePolicy{DataShards: 6, ParityShards: 2, ChunkSize: 64 << 10, SmallThreshold: 4 << 10}
	if err := e.c.SetPolicy(ctx, e.p("/wide"), pol); err != nil {
		t.Fatal(err)
	}
	defer e.breakDisk(0)()
	data := randBytes(3*(64<<10), 12)
	attr := e.put("/wide/f", data)
	for _, ch := range e.chunks(attr.Ino).Chunks {
		if len(ch.Servers) != 8 || slices.Contains(ch.Servers, e.ids[0]) {
			t.Fatalf("chunk %d servers %v: want 8, without the failing server %d", ch.Index, ch.Servers, e.ids[0])
		}
		if unplaced := len(ch.Servers) - len(slices.DeleteFunc(slices.Clone(ch.Servers), func(s uint32) bool { return s == 0 })); unplaced != 1 {
			t.Fatalf("chunk %d servers %v: want exactly one unplaced shard", ch.Index, ch.Servers)
		}
	}
	if got := e.get("/wide/f"); !bytes.Equal(got, data) {
		t.Fatal("degraded stripe reads back wrong")
	}
	defer e.breakDisk(1)()
	_, err := e.c.Put(ctx, e.p("/wide/g"), bytes.NewReader(data), PutOptions{})
	if !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "need 7") {
		t.Fatalf("put with two failing servers: %v", err)
	}
}

// testMutationsThroughLeaderPartition cuts the metadata leader off the
// network while four writers create directories (exclusively: a second
// apply would fail EEXIST) and files. Calls in flight at the cut lose
// their replies; the client must retry them with the same request ids at
// the new leader, so that every operation is applied exactly once.
//
// The files are empty: a Put with data fails here about one run in five,
// because the metaserver's AllocateChunks checks the inode against the
// local state of whichever server the call reaches, before any leader
// check, so a follower that has not applied the Create yet answers ENOENT
// (final) where it should say "not leader" (retry). Data written across a
// failover is TestClusterPutThroughLeaderFailover's, and lost replies of
// AllocateChunks and CommitChunks are RetriesReuseRequestID's.
func testMutationsThroughLeaderPartition(t *testing.T, e *env) {
	ctx := ctxT(t)
	const writers, perWriter = 4, 40
	var progress atomic.Int64
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	defer wg.Wait() // after the heal below, if the test ends early
	for w := range writers {
		dir := e.p(fmt.Sprintf("/w%d", w))
		if _, err := e.c.Mkdir(ctx, dir, 0o755); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for i := range perWriter {
				if _, err := e.c.Mkdir(ctx, fmt.Sprintf("%s/d%02d", dir, i), 0o755); err != nil {
					errs <- fmt.Errorf("writer %d: mkdir %d: %w", w, i, err)
					return
				}
				if i%4 == 0 {
					p := fmt.Sprintf("/w%d/f%02d", w, i)
					if _, err := e.c.Put(ctx, e.p(p), bytes.NewReader(nil), PutOptions{}); err != nil {
						errs <- fmt.Errorf("writer %d: put %d: %w", w, i, err)
						return
					}
					e.record(p, nil)
				}
				progress.Add(1)
			}
		})
	}
	waitForT(t, 30*time.Second, "writers to start", func() bool { return progress.Load() >= 20 })
	leader := e.cl.WaitLeader()
	e.cl.PartitionMeta(leader)
	healed := false
	defer func() {
		if !healed {
			e.cl.HealMeta(leader)
		}
	}()
	cut := progress.Load()
	waitForT(t, 30*time.Second, "writers to go on under a new leader", func() bool { return progress.Load() >= cut+40 })
	e.cl.HealMeta(leader)
	healed = true
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	for w := range writers {
		list, err := e.c.ReadDir(ctx, e.p(fmt.Sprintf("/w%d", w)))
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for i := range perWriter {
			want = append(want, fmt.Sprintf("d%02d", i))
			if i%4 == 0 {
				want = append(want, fmt.Sprintf("f%02d", i))
			}
		}
		slices.Sort(want)
		if got := names(list); !slices.Equal(got, want) {
			t.Fatalf("writer %d's directory holds %v, want %v", w, got, want)
		}
	}
	// The partitioned voter catches up and agrees with the others.
	waitFor(t, "voters to agree after the partition heals", func() bool {
		var digests []uint64
		for _, m := range e.cl.Meta {
			digests = append(digests, m.Srv.Stats().Digest)
		}
		return digests[0] == digests[1] && digests[1] == digests[2]
	})
}
