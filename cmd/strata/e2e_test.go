package main

// End-to-end tests of the strata command line against a real in-process
// cluster (3 raft metaservers with stores on disk, 6 dataservers with shard
// files, gRPC over loopback): the "done when" list of the foundation.

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-hpc/strata/internal/testcluster"
)

// cli runs one strata command against cluster c and returns its exit code,
// stdout and stderr.
func cli(t *testing.T, c *testcluster.Cluster, args ...string) (int, string, string) {
	t.Helper()
	t.Setenv("STRATA_LOG_LEVEL", "error") // degraded-read warnings are expected here
	full := append([]string{args[0], "--meta", strings.Join(c.MetaAddrs(), ",")}, args[1:]...)
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	code := run(ctx, full, &out, &errb)
	return code, out.String(), errb.String()
}

func mustCLI(t *testing.T, c *testcluster.Cluster, args ...string) string {
	t.Helper()
	code, out, errs := cli(t, c, args...)
	if code != 0 {
		t.Fatalf("strata %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed*7+1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// putFile writes data to a local temp file and puts it at remote.
func putFile(t *testing.T, c *testcluster.Cluster, remote string, data []byte) {
	t.Helper()
	local := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(local, data, 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, c, "put", local, remote)
}

// getFile gets remote into a local file and returns its bytes.
func getFile(t *testing.T, c *testcluster.Cluster, remote string) ([]byte, error) {
	t.Helper()
	local := filepath.Join(t.TempDir(), "dst")
	code, _, errs := cli(t, c, "get", remote, local)
	if code != 0 {
		if _, err := os.Stat(local); err == nil {
			t.Fatalf("failed get of %s left a file behind", remote)
		}
		return nil, fmt.Errorf("exit %d: %s", code, errs)
	}
	return os.ReadFile(local)
}

func checkFile(t *testing.T, c *testcluster.Cluster, remote string, want []byte) {
	t.Helper()
	got, err := getFile(t, c, remote)
	if err != nil {
		t.Fatalf("get %s: %v", remote, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("get %s: %d bytes differ from the %d put", remote, len(got), len(want))
	}
}

const mib = 1 << 20

var sizes = []int{0, 1, 4*mib - 1, 4 * mib, 4*mib + 1, 100 * mib}

func TestPutGetSizes(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{TLSDir: testTLSDir, Meta: 3, Data: 6})
	for _, n := range sizes {
		data := randomBytes(n, uint64(n))
		putFile(t, c, fmt.Sprintf("/f%d", n), data)
		checkFile(t, c, fmt.Sprintf("/f%d", n), data)
	}
	out := mustCLI(t, c, "ls", "-l", "/")
	for _, n := range sizes {
		if !strings.Contains(out, fmt.Sprintf(" f%d\n", n)) {
			t.Errorf("ls -l / lacks f%d:\n%s", n, out)
		}
	}
	if st := mustCLI(t, c, "stat", "/f1"); !strings.Contains(st, "Size: 1\n") {
		t.Errorf("stat /f1:\n%s", st)
	}
}

// writeSet puts files of several sizes (replicated and erasure coded,
// partial and whole chunks) and returns their contents by path.
func writeSet(t *testing.T, c *testcluster.Cluster) map[string][]byte {
	files := map[string][]byte{}
	for i, n := range []int{1, 5000, 200 << 10, 4*mib + 3, 9 * mib} {
		p := fmt.Sprintf("/set/f%d", i)
		files[p] = randomBytes(n, uint64(i+100))
	}
	mustCLI(t, c, "mkdir", "-p", "/set")
	for p, d := range files {
		putFile(t, c, p, d)
	}
	return files
}

// TestReadsSurviveTwoLostServers: with 4+2 any two dataservers may be down;
// with three down reads fail with an error naming what is missing, and
// never hand out wrong bytes.
func TestReadsSurviveTwoLostServers(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{TLSDir: testTLSDir, Meta: 3, Data: 6})
	files := writeSet(t, c)
	for _, pair := range [][2]int{{0, 1}, {2, 5}, {3, 4}} {
		c.KillData(pair[0])
		c.KillData(pair[1])
		for p, d := range files {
			checkFile(t, c, p, d)
		}
		c.RestartData(pair[0])
		c.RestartData(pair[1])
	}
	c.KillData(0)
	c.KillData(1)
	c.KillData(2)
	_, err := getFile(t, c, "/set/f4")
	if err == nil {
		t.Fatal("read with 3 of 6 shards lost succeeded")
	}
	msg := err.Error()
	if !strings.Contains(msg, "need 4") && !strings.Contains(msg, "shards") {
		t.Errorf("error does not say what is missing: %s", msg)
	}
}

// shardFiles lists the shard files under a dataserver's directories.
func shardFiles(t *testing.T, d *testcluster.Data) []string {
	var out []string
	for _, dir := range d.Cfg.Dirs {
		filepath.WalkDir(filepath.Join(dir, "shards"), func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.Type().IsRegular() {
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}

// TestFlippedByteInShard: a corrupt shard on disk is detected by its
// checksum, the read rebuilds the data from other shards, and the bad
// shard is reported to the metadata service.
func TestFlippedByteInShard(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{TLSDir: testTLSDir, Meta: 3, Data: 6})
	data := randomBytes(4*mib, 42)
	putFile(t, c, "/x", data)
	flipped := 0
	for _, d := range c.Data {
		for _, f := range shardFiles(t, d) {
			// A data shard (index < k=4): a plain read touches it. Parity
			// shards are checked by the scrubber, not by reads.
			b, err := os.ReadFile(f)
			if err != nil || len(b) < 4096 || !dataShard(f) {
				continue
			}
			b[len(b)-100] ^= 0x5a // inside the data, far from the header
			if err := os.WriteFile(f, b, 0o644); err != nil {
				t.Fatal(err)
			}
			flipped++
			break
		}
		if flipped == 1 {
			break
		}
	}
	if flipped != 1 {
		t.Fatal("found no shard file to corrupt")
	}
	for i := 0; i < 3; i++ {
		checkFile(t, c, "/x", data)
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.Meta[c.WaitLeader()].Srv.Stats().BadShards == 0 {
		if time.Now().After(deadline) {
			t.Fatal("bad shard never reported to the metadata service")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func dataShard(path string) bool {
	i := strings.LastIndexByte(path, '.')
	return i > 0 && len(path)-i == 2 && path[i+1] >= '0' && path[i+1] <= '3'
}

// TestRestartAll: every process stopped and started again; the namespace
// and every byte are still there.
func TestRestartAll(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{TLSDir: testTLSDir, Meta: 3, Data: 6})
	files := writeSet(t, c)
	mustCLI(t, c, "mkdir", "-p", "/a/b/c")
	mustCLI(t, c, "mv", "/set/f0", "/a/b/moved")
	files["/a/b/moved"] = files["/set/f0"]
	delete(files, "/set/f0")
	before := mustCLI(t, c, "ls", "-l", "/set", "/a/b")
	c.Close()
	for i := range c.Meta {
		c.RestartMeta(i)
	}
	c.WaitLeader()
	for i := range c.Data {
		c.RestartData(i)
	}
	c.WaitDataServers(len(c.Data))
	if after := mustCLI(t, c, "ls", "-l", "/set", "/a/b"); after != before {
		t.Fatalf("listing changed across restart:\n%s\nvs\n%s", before, after)
	}
	for p, d := range files {
		checkFile(t, c, p, d)
	}
}

func TestBadPaths(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{TLSDir: testTLSDir, Meta: 1, Data: 6})
	putFile(t, c, "/keep", []byte("precious"))
	local := filepath.Join(t.TempDir(), "f")
	os.WriteFile(local, []byte("x"), 0o644)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"put", local, "/a\x00b"}, "invalid argument"},
		{[]string{"put", local, "/../../etc/passwd"}, "invalid argument"},
		{[]string{"put", local, "/" + strings.Repeat("n", 10000)}, "file name too long"},
		{[]string{"mkdir", "/" + strings.Repeat("d", 256)}, "file name too long"},
		{[]string{"get", "/missing", filepath.Join(t.TempDir(), "o")}, "no such file"},
		{[]string{"rm", "/"}, ""},
		{[]string{"put", local}, "usage"},
		{[]string{"status", "--bogus"}, "flag provided but not defined"},
	}
	for _, tc := range cases {
		code, _, errs := cli(t, c, tc.args...)
		if code == 0 {
			t.Errorf("strata %q succeeded", tc.args)
		}
		if !strings.Contains(errs, tc.want) {
			t.Errorf("strata %q: error %q does not mention %q", tc.args, errs, tc.want)
		}
	}
	checkFile(t, c, "/keep", []byte("precious"))
	if out := mustCLI(t, c, "ls", "/"); out != "keep\n" {
		t.Errorf("bad input left something behind: %q", out)
	}
}

// TestFullDiskOnOneDataserver: one dataserver's disk is a tiny tmpfs that
// fills up; writes go to the other servers, and every file reads back.
func TestFullDiskOnOneDataserver(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	c := testcluster.New(t, testcluster.Options{TLSDir: testTLSDir, Meta: 1, Data: 7})
	tiny := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", tiny).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs: %v: %s", err, out)
	}
	c.KillData(0)
	t.Cleanup(func() {
		c.KillData(0)
		exec.Command("umount", tiny).Run()
	})
	c.Data[0].Cfg.Dirs = []string{tiny}
	c.Data[0].Cfg.ReserveBytes = 0
	c.RestartData(0)
	files := map[string][]byte{}
	for i := 0; i < 12; i++ {
		p := fmt.Sprintf("/full%d", i)
		files[p] = randomBytes(4*mib, uint64(i))
		putFile(t, c, p, files[p])
	}
	var st syscall.Statfs_t
	syscall.Statfs(tiny, &st)
	if free := st.Bavail * uint64(st.Bsize); free > 1*mib {
		t.Fatalf("the tiny disk never filled (%d bytes free)", free)
	}
	for p, d := range files {
		checkFile(t, c, p, d)
	}
}

// TestPartitionedDataservers: with one dataserver cut off, new files are
// still written (degraded, on the 5 reachable servers); with two cut off,
// everything written before still reads back; after healing, all of it is
// byte-identical.
func TestPartitionedDataservers(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{TLSDir: testTLSDir, Meta: 3, Data: 6})
	files := writeSet(t, c)
	c.PartitionData(4)
	late := randomBytes(6*mib+17, 9)
	putFile(t, c, "/late", late)
	files["/late"] = late
	c.PartitionData(1)
	for p, d := range files {
		checkFile(t, c, p, d)
	}
	c.HealData(1)
	c.HealData(4)
	for p, d := range files {
		checkFile(t, c, p, d)
	}
}

// TestOverwrittenChunksCollectedAfterGrace: the shards of a replaced
// file stay on the dataservers for the GC grace (1 s in the harness), so a
// reader holding the old chunk list can still read them, then go.
func TestOverwrittenChunksCollectedAfterGrace(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{TLSDir: testTLSDir, Meta: 3, Data: 6})
	count := func() int {
		n := 0
		for _, d := range c.Data {
			n += len(shardFiles(t, d))
		}
		return n
	}
	putFile(t, c, "/g", randomBytes(4*mib, 1))
	one := count()
	if one != 6 {
		t.Fatalf("%d shard files for one 4+2 chunk", one)
	}
	second := randomBytes(4*mib, 2)
	putFile(t, c, "/g", second)
	if n := count(); n != 2*one {
		t.Fatalf("right after the overwrite: %d shard files, want %d (old ones kept for the grace)", n, 2*one)
	}
	deadline := time.Now().Add(10 * time.Second)
	for count() != one {
		if time.Now().After(deadline) {
			t.Fatalf("old shards never collected: %d files", count())
		}
		time.Sleep(100 * time.Millisecond)
	}
	checkFile(t, c, "/g", second)
}
