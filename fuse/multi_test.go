package fuse

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestTwoMounts checks close-to-open consistency between two mounts of
// one cluster (two clients): a file written and closed on one is read
// whole on the other after open, even where the other had cached its old
// attributes; a rename on one shows on the other within the timeouts.
func TestTwoMounts(t *testing.T) {
	c := newCluster(t, nil)
	// B caches for long: only open can refresh what it knows of the
	// file's content. C caches briefly, and sees the rename.
	slow, quick := DefaultOptions(), DefaultOptions()
	slow.AttrTimeout, slow.EntryTimeout = 30*time.Second, 30*time.Second
	quick.AttrTimeout, quick.EntryTimeout = 200*time.Millisecond, 200*time.Millisecond
	a, b, cm := mount(t, c, nil), mount(t, c, &slow), mount(t, c, &quick)

	pa, pb := filepath.Join(a, "data"), filepath.Join(b, "data")
	must(t, os.WriteFile(pa, []byte("v1"), 0o644))
	if got, err := os.ReadFile(pb); err != nil || string(got) != "v1" {
		t.Fatalf("B reads %q, %v; want v1", got, err)
	}
	for round, size := range []int{9<<20 + 12345, 100, 5 << 20} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rand.Uint32())
		}
		must(t, os.WriteFile(pa, data, 0o644)) // closed: all of it is on the servers
		got, err := os.ReadFile(pb)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("round %d: B reads %d bytes (%v) %s, want %d written and closed on A", round, len(got), err, firstDiff(got, data), len(data))
		}
	}

	pc := filepath.Join(cm, "data")
	if _, err := os.Stat(pc); err != nil {
		t.Fatal(err)
	}
	must(t, os.Rename(pa, filepath.Join(a, "renamed")))
	deadline := time.Now().Add(3 * time.Second)
	for {
		_, errOld := os.Stat(pc)
		_, errNew := os.Stat(filepath.Join(cm, "renamed"))
		if errors.Is(errOld, os.ErrNotExist) && errNew == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rename on A not seen on C: old name %v, new name %v", errOld, errNew)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDataserverLoss kills a dataserver while files are written and read
// through the mount: no I/O error may reach the programs, and everything
// reads back intact afterwards.
func TestDataserverLoss(t *testing.T) {
	c := newCluster(t, nil)
	mp := mount(t, c, nil)
	const writers, files, size = 3, 4, 6 << 20
	sums := make(map[string][32]byte)
	var mu sync.Mutex
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, writers*files)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 0; i < files && ctx.Err() == nil; i++ {
				p := filepath.Join(mp, fmt.Sprintf("w%d-f%d", w, i))
				data := make([]byte, size)
				for j := range data {
					data[j] = byte(rnd.Uint32())
				}
				if err := os.WriteFile(p, data, 0o644); err != nil {
					errs <- err
					return
				}
				sum := sha256.Sum256(data)
				mu.Lock()
				sums[p] = sum
				mu.Unlock()
				if got, err := os.ReadFile(p); err != nil || sha256.Sum256(got) != sum {
					errs <- fmt.Errorf("read back %s: %v (%d bytes)", p, err, len(got))
					return
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	c.KillData(2)
	t.Log("killed dataserver 2")
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for p, sum := range sums {
		got, err := os.ReadFile(p)
		if err != nil || sha256.Sum256(got) != sum {
			t.Errorf("%s after the loss: %v (%d bytes)", p, err, len(got))
		}
	}
	if len(sums) != writers*files {
		t.Errorf("%d files written, want %d", len(sums), writers*files)
	}
}
