package fuse

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/internal/testcluster"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// TestNToOneSharedFile is the N-to-1 pattern of MPI-IO and IOR
// (-F off, segmented layout) on two mounts of one cluster: writers on
// both mounts open one file and pwrite disjoint blocks of it that
// straddle chunk boundaries, several writers to a chunk; everything must
// read back byte for byte through both mounts and through a client that
// started afterwards. Then writers on different mounts write overlapping
// ranges, and the file must hold what the README promises: each flushed
// range lands atomically and an overlap holds the bytes of the flush that
// committed last.
//
// It runs with the default 4 MiB chunks and in a directory whose policy
// (SetPolicy) has 1 MiB chunks, where every chunk is shared by two or
// three writers.
func TestNToOneSharedFile(t *testing.T) {
	c := newCluster(t, nil)
	ma, mb := mount(t, c, nil), mount(t, c, nil)
	t.Logf("mounts: A %s, B %s", ma, mb)
	admin := newClient(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	for _, tc := range []struct {
		dir string
		cs  int64
		pol *stratapb.StripePolicy // nil: the cluster's default
	}{
		{"chunk4m", 4 << 20, nil},
		{"chunk1m", 1 << 20, &stratapb.StripePolicy{DataShards: 4, ParityShards: 2, ChunkSize: 1 << 20, SmallThreshold: 128 << 10}},
	} {
		must(t, os.Mkdir(filepath.Join(ma, tc.dir), 0o755))
		if tc.pol != nil {
			if err := admin.SetPolicy(ctx, "/"+tc.dir, tc.pol); err != nil {
				t.Fatalf("setpolicy /%s: %v", tc.dir, err)
			}
		}
		t.Run("disjoint/"+tc.dir, func(t *testing.T) {
			nToOneDisjoint(ctx, t, c, [2]string{ma, mb}, tc.dir, tc.cs)
		})
		t.Run("overlap/"+tc.dir, func(t *testing.T) {
			nToOneOverlap(ctx, t, c, [2]string{ma, mb}, tc.dir, tc.cs)
		})
	}
}

// nToOneDisjoint: 8 writers, half on each mount, IOR segmented layout:
// segment s of writer w is the block at (s*writers+w)*block, written in
// transfers of xfer bytes, then fsync and close.
func nToOneDisjoint(ctx context.Context, t *testing.T, c *testcluster.Cluster, mps [2]string, dir string, cs int64) {
	const (
		writers  = 8
		segments = 3
		block    = 1<<20 + 12345
		xfer     = 256 << 10
		size     = writers * segments * block
	)
	name := filepath.Join(dir, "ior.shared")
	want := make([]byte, size)
	rnd := rand.New(rand.NewPCG(uint64(cs), 1))
	for i := range want {
		want[i] = byte(rnd.Uint32())
	}
	chunksShared := 0
	for idx := int64(0); idx*cs < size; idx++ {
		lo, hi := idx*cs, min((idx+1)*cs, size)
		if (hi-1)/block-lo/block+1 >= 2 {
			chunksShared++
		}
	}
	t.Logf("%d writers x %d segments x %d bytes = %d bytes; %d of %d chunks (%d KiB) written by 2 or more writers",
		writers, segments, block, size, chunksShared, (size+cs-1)/cs, cs>>10)

	start := make(chan struct{})
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- func() error {
				<-start
				p := filepath.Join(mps[w%2], name)
				f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
				if err != nil {
					return fmt.Errorf("writer %d: %w", w, err)
				}
				defer f.Close()
				for s := 0; s < segments; s++ {
					off := int64(s*writers+w) * block
					for x := int64(0); x < block; x += xfer {
						n := min(xfer, block-x)
						if _, err := f.WriteAt(want[off+x:off+x+n], off+x); err != nil {
							return fmt.Errorf("writer %d, segment %d: %w", w, s, err)
						}
					}
				}
				if err := f.Sync(); err != nil {
					return fmt.Errorf("writer %d: fsync: %w", w, err)
				}
				if err := f.Close(); err != nil {
					return fmt.Errorf("writer %d: close: %w", w, err)
				}
				return nil
			}()
		}()
	}
	began := time.Now()
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("written in %v", time.Since(began).Round(time.Millisecond))

	fresh := newClient(t, c)
	if a, err := fresh.Stat(ctx, "/"+name); err != nil {
		t.Fatal(err)
	} else if got := int64(a.GetPolicy().GetChunkSize()); got != cs {
		t.Fatalf("/%s has %d-byte chunks, want %d (the directory's policy)", name, got, cs)
	}
	for who, got := range readEverywhere(ctx, t, fresh, mps, name) {
		if !bytes.Equal(got, want) {
			t.Errorf("read through %s: %d bytes, want %d %s%s", who, len(got), len(want), firstDiff(got, want),
				describeBlocks(got, want, block, writers))
		}
	}
}

// describeBlocks says which writers' blocks read back wrong.
func describeBlocks(got, want []byte, block, writers int) string {
	var bad []string
	for off := 0; off < len(want); off += block {
		end := min(off+block, len(want))
		if end > len(got) || !bytes.Equal(got[off:end], want[off:end]) {
			i := off / block
			bad = append(bad, fmt.Sprintf("seg%d/w%d", i/writers, i%writers))
		}
	}
	if len(bad) == 0 {
		return ""
	}
	return "; wrong blocks: " + strings.Join(bad, " ")
}

// readEverywhere reads the file at name (relative to the root) through
// both mounts (fresh opens: close-to-open) and through cl.
func readEverywhere(ctx context.Context, t *testing.T, cl *client.Client, mps [2]string, name string) map[string][]byte {
	t.Helper()
	out := make(map[string][]byte)
	for i, mp := range mps {
		got, err := os.ReadFile(filepath.Join(mp, name))
		if err != nil {
			t.Fatalf("read through mount %c: %v", 'A'+i, err)
		}
		out[fmt.Sprintf("mount %c", 'A'+i)] = got
	}
	var buf bytes.Buffer
	if _, err := cl.Get(ctx, "/"+name, &buf); err != nil {
		t.Fatalf("read through a fresh client: %v", err)
	}
	out["a fresh client"] = buf.Bytes()
	return out
}

// span is one writer's range in the overlap test, and its bytes.
type span struct {
	who    string
	lo, hi int64
	data   []byte
}

// nToOneOverlap races three writers over overlapping ranges of a file
// that already holds background bytes: one on each mount (pwrite of the
// whole range, fsync, close) and one client WriteAt. Each of these is one
// flushed range (at most two whole chunks, so the mount sends it in one
// piece at fsync, and one WriteAt step). The README promises that each
// lands atomically and that an overlap holds the bytes of whichever
// committed last; so every piece of the file between two range
// boundaries holds, in full, the bytes of one writer that covers it (or
// the background where none does), and the "won over" relation this
// defines has no cycle: some commit order explains the whole file.
func nToOneOverlap(ctx context.Context, t *testing.T, c *testcluster.Cluster, mps [2]string, dir string, cs int64) {
	writer := newClient(t, c)
	type geom struct {
		name     string
		a, b, cl [2]int64
	}
	geoms := []geom{
		{"in one chunk", [2]int64{cs / 4, 3 * cs / 4}, [2]int64{cs / 2, cs - 100}, [2]int64{cs / 3, cs/2 + 7}},
		{"across chunk boundaries", [2]int64{cs - 300000, 2*cs + 5000}, [2]int64{cs / 2, cs + cs/2}, [2]int64{cs + 1000, 2*cs + 100000}},
		{"nested and equal", [2]int64{0, 2*cs + 12345}, [2]int64{cs - 3*4096 + 17, cs + 5*4096}, [2]int64{0, 2*cs + 12345}},
	}
	const rounds = 3
	orders := make(map[string]int)
	for gi, g := range geoms {
		for r := 0; r < rounds; r++ {
			name := filepath.Join(dir, fmt.Sprintf("overlap-%d-%d", gi, r))
			rnd := rand.New(rand.NewPCG(uint64(cs), uint64(gi*100+r)))
			fill := func(n int64) []byte {
				b := make([]byte, n)
				for i := range b {
					b[i] = byte(rnd.Uint32())
				}
				return b
			}
			background := fill(2*cs + 200000) // past every range
			must(t, os.WriteFile(filepath.Join(mps[0], name), background, 0o644))
			spans := []span{
				{who: "mount A", lo: g.a[0], hi: g.a[1]},
				{who: "mount B", lo: g.b[0], hi: g.b[1]},
				{who: "client", lo: g.cl[0], hi: g.cl[1]},
			}
			for i := range spans {
				spans[i].data = fill(spans[i].hi - spans[i].lo)
			}
			attr, err := writer.Stat(ctx, "/"+name)
			if err != nil {
				t.Fatal(err)
			}

			start := make(chan struct{})
			errs := make([]error, len(spans))
			var wg sync.WaitGroup
			for i, s := range spans {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					if i == 2 {
						_, errs[i] = writer.WriteAt(ctx, attr.GetIno(), s.data, s.lo)
						return
					}
					errs[i] = pwriteSyncClose(filepath.Join(mps[i], name), s.data, s.lo)
				}()
			}
			close(start)
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("%s, round %d: %s: %v", g.name, r, spans[i].who, err)
				}
			}

			fresh := newClient(t, c)
			for who, got := range readEverywhere(ctx, t, fresh, mps, name) {
				order, err := checkOverlap(got, background, spans)
				if err != nil {
					t.Errorf("%s, round %d, read through %s: %v", g.name, r, who, err)
				} else if who == "a fresh client" {
					orders[order]++
				}
			}
			fresh.Close()
		}
	}
	t.Logf("commit orders seen (last wins): %v", orders)
}

// pwriteSyncClose writes data at off of the existing file p with one
// pwrite, then fsyncs and closes it.
func pwriteSyncClose(p string, data []byte, off int64) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// checkOverlap checks got against the promise of the README for spans
// written over background, and returns a commit order that explains it.
func checkOverlap(got, background []byte, spans []span) (string, error) {
	if len(got) != len(background) {
		return "", fmt.Errorf("size %d, want %d (no range goes past the background)", len(got), len(background))
	}
	cuts := []int64{0, int64(len(got))}
	for _, s := range spans {
		cuts = append(cuts, s.lo, s.hi)
	}
	slices.Sort(cuts)
	cuts = slices.Compact(cuts)
	// won[i][j]: some piece covered by both holds the bytes of i.
	won := make([][]bool, len(spans))
	for i := range won {
		won[i] = make([]bool, len(spans))
	}
	for k := 0; k+1 < len(cuts); k++ {
		lo, hi := cuts[k], cuts[k+1]
		var cover []int
		for i, s := range spans {
			if s.lo <= lo && hi <= s.hi {
				cover = append(cover, i)
			}
		}
		if len(cover) == 0 {
			if !bytes.Equal(got[lo:hi], background[lo:hi]) {
				return "", fmt.Errorf("bytes [%d, %d), written by no one, changed %s", lo, hi, firstDiff(got[lo:hi], background[lo:hi]))
			}
			continue
		}
		owner := -1
		for _, i := range cover {
			s := spans[i]
			if bytes.Equal(got[lo:hi], s.data[lo-s.lo:hi-s.lo]) {
				owner = i
				break
			}
		}
		if owner < 0 {
			return "", fmt.Errorf("bytes [%d, %d), written by %s, hold none of their writes in full: %s",
				lo, hi, spanNames(spans, cover), pageOwners(got, background, spans, lo, hi))
		}
		for _, i := range cover {
			if i != owner {
				won[owner][i] = true
			}
		}
	}
	// Some order of the spans in which every winner comes after those it
	// won over (three spans: try them all).
	idx := make([]int, len(spans))
	for i := range idx {
		idx[i] = i
	}
	for perm := range permutations(idx) {
		ok := true
		for x := range perm {
			for y := x + 1; y < len(perm); y++ {
				if won[perm[x]][perm[y]] { // an earlier one won over a later one
					ok = false
				}
			}
		}
		if ok {
			var ws []string
			for _, i := range perm {
				ws = append(ws, spans[i].who)
			}
			return strings.Join(ws, " < "), nil
		}
	}
	var rel []string
	for i := range won {
		for j := range won[i] {
			if won[i][j] {
				rel = append(rel, spans[i].who+" over "+spans[j].who)
			}
		}
	}
	return "", fmt.Errorf("no commit order explains the file: %s", strings.Join(rel, ", "))
}

func spanNames(spans []span, idx []int) string {
	var ws []string
	for _, i := range idx {
		ws = append(ws, spans[i].who)
	}
	return strings.Join(ws, ", ")
}

// pageOwners says, 4 KiB at a time, whose bytes [lo, hi) hold.
func pageOwners(got, background []byte, spans []span, lo, hi int64) string {
	var out []string
	for p := lo; p < hi; p += 4096 {
		e := min(p+4096, hi)
		who := "?"
		if bytes.Equal(got[p:e], background[p:e]) {
			who = "bg"
		}
		for _, s := range spans {
			if s.lo <= p && e <= s.hi && bytes.Equal(got[p:e], s.data[p-s.lo:e-s.lo]) {
				who = s.who
			}
		}
		if len(out) > 0 && strings.HasSuffix(out[len(out)-1], "="+who) {
			continue
		}
		out = append(out, fmt.Sprintf("%d=%s", p, who))
	}
	return strings.Join(out, " ")
}

// permutations yields every order of s (Heap's algorithm); the slice it
// yields is reused.
func permutations(s []int) func(yield func([]int) bool) {
	return func(yield func([]int) bool) {
		a := slices.Clone(s)
		var gen func(k int) bool
		gen = func(k int) bool {
			if k <= 1 {
				return yield(a)
			}
			if !gen(k - 1) {
				return false
			}
			for i := 0; i < k-1; i++ {
				if k%2 == 0 {
					a[i], a[k-1] = a[k-1], a[i]
				} else {
					a[0], a[k-1] = a[k-1], a[0]
				}
				if !gen(k - 1) {
					return false
				}
			}
			return true
		}
		gen(len(a))
	}
}
