package fuse

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"
)

// posixSkips are go-fuse posixtest checks that need what this slice of
// the FUSE client does not build yet, with the reason.
var posixSkips = map[string]string{
	"Fallocate":           "fallocate(2) is not built yet (no Allocate operation)",
	"FallocateKeepSize":   "fallocate(2) is not built yet (no Allocate operation)",
	"FcntlFlockLocksFile": "flock(2) is not built yet (DESIGN.md lists it; no lock operations in this slice)",
}

// TestPOSIX runs go-fuse's reusable POSIX checks against a mount, each in
// a fresh directory of one mount.
func TestPOSIX(t *testing.T) {
	c := newCluster(t, smallChunks())
	mp := mount(t, c, nil)
	var names []string
	for name := range posixtest.All {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			if why, ok := posixSkips[name]; ok {
				t.Skip(why)
			}
			dir := filepath.Join(mp, name)
			must(t, os.Mkdir(dir, 0o755))
			posixtest.All[name](t, dir)
		})
	}
}
