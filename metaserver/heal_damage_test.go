package metaserver_test

import (
	"bytes"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-hpc/strata/internal/testcluster"
)

// TestHealScrubFindsDamage deletes or corrupts 1% of the shard files (on
// several servers, at most one per stripe) while readers read and compare
// every file: the scrubbers and the readers find every damaged shard,
// repair moves each to a healthy copy elsewhere, and no read returns wrong
// bytes.
func TestHealScrubFindsDamage(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	e := newHealEnv(t, testcluster.Options{Data: 8, ScrubRate: 4 << 20, ScrubInterval: time.Second})
	e.write("s", 48<<20, 2<<20)

	files := e.shardFiles()
	want := max(len(files)/100, 4)
	damaged := map[[2]uint64]uint32{} // chunk, index -> server it was on
	usedChunk, usedServer := map[uint64]bool{}, map[int]bool{}
	chunks := e.chunks()
	for _, i := range rng.Perm(len(files)) {
		f := files[i]
		if len(damaged) == want || usedChunk[f.chunk] {
			continue
		}
		usedChunk[f.chunk], usedServer[f.data] = true, true
		damaged[[2]uint64{f.chunk, uint64(f.index)}] = placedOn(chunks, f.chunk, f.index)
		if len(damaged)%2 == 0 {
			if err := os.Remove(f.path); err != nil {
				t.Fatal(err)
			}
		} else {
			corruptFile(t, f.path)
		}
	}
	t.Logf("damaged %d of %d shard files on %d servers", len(damaged), len(files), len(usedServer))

	// Readers compare every byte while the damage is found and repaired.
	var stop atomic.Bool
	var wrong atomic.Int64
	var wg sync.WaitGroup
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				for p, data := range e.files {
					var got bytes.Buffer
					if _, err := e.c.Get(hctx(t), p, &got); err != nil || !bytes.Equal(got.Bytes(), data) {
						t.Errorf("read %s: %v (equal %v)", p, err, bytes.Equal(got.Bytes(), data))
						wrong.Add(1)
					}
				}
			}
		}()
	}
	waitCond(t, 90*time.Second, "every damaged shard moved to a healthy copy", func() bool {
		chunks := e.chunks()
		for k, old := range damaged {
			if placedOn(chunks, k[0], uint32(k[1])) == old {
				return false
			}
		}
		return true
	})
	stop.Store(true)
	wg.Wait()
	if wrong.Load() > 0 {
		t.Fatalf("%d reads failed or returned wrong bytes", wrong.Load())
	}
	ok, why := e.stripesOK(nil, 6)
	if !ok {
		t.Fatal(why)
	}
	e.verify()
}
