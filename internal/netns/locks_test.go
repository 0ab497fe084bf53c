package netns_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strata-hpc/strata/internal/netns"
)

// lockBusy is the exit code `flock -n -E` gives when the lock is held.
const lockBusy = "75"

// TestLocksAcrossHosts: two client hosts, each running `strata mount` as
// a real process that knows only the service IP. A flock taken through
// one host's mount excludes the other host's while the metadata leader
// is killed and then partitioned; it goes when its holder exits; and when
// the holding host's mount dies, the lock goes once its lease lapses.
// (flock(1) from util-linux takes the locks. `ip netns exec` gives each
// process a mount namespace of its own, so a mount is visible only to
// processes entered into its daemon's: nsenter -m does that.)
func TestLocksAcrossHosts(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	for _, tool := range []string{"flock", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	start := time.Now()
	logf := func(format string, args ...any) {
		t.Helper()
		t.Logf("%6.2fs: "+format, append([]any{time.Since(start).Seconds()}, args...)...)
	}
	c := newCluster(t, "--service-ip", serviceIP+"/24", "--service-iface", "eth0")
	c.meta = serviceIP + ":7400"
	st := c.waitStatus("a leader on the service ip", 30*time.Second, func(st status) bool {
		return st.leader != "" && st.dataUp == "1 of 1"
	})
	c.onlyHolder(st.leader)
	hostA, hostB := c.client, c.net.AddHost("c2")
	mountA, mpA := c.mount(hostA)
	mountB, mpB := c.mount(hostB)
	fa, fb := filepath.Join(mpA, "lockfile"), filepath.Join(mpB, "lockfile")
	// Empty: one dataserver cannot hold a small file's three replicas.
	if out, err := hostA.Exec(context.Background(), "nsenter", inMount(mountA, "touch", fa)...); err != nil {
		t.Fatalf("writing through A's mount: %v\n%s", err, out)
	}
	holdOnA := inMount(mountA, "/usr/bin/flock", "-n", "-E", lockBusy, fa, "-c", "echo locked; exec sleep 600")
	holder := hostA.Start("nsenter", holdOnA...)
	waitFor(t, "the holder on A to lock", 30*time.Second, func() bool { return strings.Contains(holder.Output(), "locked") })
	c.expectFlock(hostB, mountB, fb, false)
	logf("A holds the flock; B is refused")

	old := c.holder()
	c.procs[old].Kill()
	c.waitNewHolder(old)
	c.expectFlock(hostB, mountB, fb, false)
	c.startMeta(c.host(old), "")
	cut := c.holder()
	c.net.Partition(c.host(cut))
	c.waitNewHolder(cut)
	c.expectFlock(hostB, mountB, fb, false)
	c.net.Heal(c.host(cut))
	logf("the lock held through a kill and a partition of the leader")

	// The holder exits: its file closes, the lock goes.
	holder.Kill()
	c.expectFlock(hostB, mountB, fb, true)
	logf("released when its holder exited")

	// A's mount daemon dies holding a lock (a node lost): after its lease
	// (3 s) lapses, B gets the lock.
	holder = hostA.Start("nsenter", holdOnA...)
	waitFor(t, "the holder on A to lock again", 30*time.Second, func() bool { return strings.Contains(holder.Output(), "locked") })
	c.expectFlock(hostB, mountB, fb, false)
	mountA.Kill()
	c.expectFlock(hostB, mountB, fb, true)
	logf("released when A's mount died and its lease lapsed")
}

// inMount is nsenter's arguments to run a command in the mount namespace
// of the mount daemon p.
func inMount(p *netns.Proc, args ...string) []string {
	return append([]string{"-t", strconv.Itoa(p.Pid()), "-m", "--"}, args...)
}

// mount runs `strata mount` on host h at a new directory and detaches it
// when the test ends.
func (c *cluster) mount(h *netns.Host) (*netns.Proc, string) {
	c.t.Helper()
	dir, err := os.MkdirTemp("", "strata-netns-mnt-")
	if err != nil {
		c.t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	// The mount lives in the daemon's mount namespace and goes with it
	// (the harness kills every process when the test ends).
	c.t.Cleanup(func() { os.Remove(dir) })
	p := h.Start(c.bin, "mount", "--tls-dir", c.tls, "--meta", c.meta, "--cache-dir", "", "--lock-ttl", "3s", dir)
	waitFor(c.t, "the mount on "+h.Name, 30*time.Second, func() bool {
		return strings.Contains(p.Output(), "strata mounted on") || p.Exited()
	})
	if p.Exited() {
		c.t.Fatalf("strata mount on %s: %s\n%s", h.Name, p.Status(), p.Output())
	}
	return p, dir
}

// expectFlock tries `flock -n` on path from host h until it gets the
// lock (want true) or finds it busy (want false), for up to 20 s.
func (c *cluster) expectFlock(h *netns.Host, mount *netns.Proc, path string, want bool) {
	c.t.Helper()
	var last string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		out, err := h.Exec(ctx, "nsenter", inMount(mount, "/usr/bin/flock", "-n", "-E", lockBusy, path, "true")...)
		cancel()
		var ee *exec.ExitError
		switch {
		case err == nil:
			if want {
				return
			}
			c.t.Fatalf("flock on %s got the lock; want it held elsewhere", h.Name)
		case errors.As(err, &ee) && ee.ExitCode() == 75:
			if !want {
				return
			}
			last = "busy"
		default:
			last = err.Error() + ": " + string(out)
		}
	}
	c.t.Fatalf("flock on %s: want locked=%v; last: %s", h.Name, want, last)
}
