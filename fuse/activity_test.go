package fuse

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestActivityCounts: a mount with an Activity counts the requests
// programs make (a lookup, a create, a write, a read) and when the latest
// came, but not STATFS, which monitoring tools send to every mount.
func TestActivityCounts(t *testing.T) {
	c := newCluster(t, nil)
	var a Activity
	mp := mount(t, c, &Options{Activity: &a})
	for i := 0; i < 5; i++ { // statfs only: no use
		var st syscall.Statfs_t
		must(t, syscall.Statfs(mp, &st))
	}
	before := a.Requests()
	for i := 0; i < 5; i++ {
		var st syscall.Statfs_t
		must(t, syscall.Statfs(mp, &st))
	}
	if got := a.Requests(); got != before {
		t.Errorf("statfs counted: %d -> %d requests", before, got)
	}
	start := time.Now()
	p := filepath.Join(mp, "used")
	must(t, os.WriteFile(p, []byte("data"), 0o644))
	if _, err := os.Stat(filepath.Join(mp, "missing")); !os.IsNotExist(err) {
		t.Fatalf("stat of a missing name: %v", err)
	}
	got := a.Requests()
	if got < before+3 {
		t.Errorf("%d requests after a create, a write and a lookup; was %d", got, before)
	}
	if last := a.Last(); last.Before(start) {
		t.Errorf("last request at %v, before the activity began (%v)", last, start)
	}
}
