package fuse

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"
)

// posixSkips are go-fuse posixtest checks that do not apply, with the
// reason.
var posixSkips = map[string]string{
	// The check wants a second descriptor of the same process to conflict
	// with the first one's lock: that is what go-fuse's loopback does (it
	// forwards to open-file-description locks), not POSIX, where a
	// process's locks never conflict with each other (nor Linux on a
	// local disk). Strata follows POSIX; TestLocksAcrossMounts checks
	// conflicts between processes and between mounts.
	"FcntlFlockLocksFile": "expects non-POSIX lock conflicts within one process (see posixSkips)",
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
