package main

import (
	"strings"
	"testing"

	"github.com/strata-hpc/strata/internal/testcluster"
)

// TestSnapshotCLI drives strata snapshot, df, freeze and rmtree against an
// in-process cluster.
func TestSnapshotCLI(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{TLSDir: testTLSDir, Meta: 3, Data: 6})
	data := randomBytes(300<<10, 7)
	mustCLI(t, c, "mkdir", "/job")
	putFile(t, c, "/job/ckpt", data)
	out := mustCLI(t, c, "snapshot", "create", "/job", "step1")
	if !strings.Contains(out, "/.snapshots/step1") {
		t.Fatalf("create said %q", out)
	}
	putFile(t, c, "/job/ckpt", []byte("overwritten"))
	checkFile(t, c, "/.snapshots/step1/ckpt", data)
	if out := mustCLI(t, c, "snapshot", "list", "/job"); !strings.Contains(out, "step1") || !strings.Contains(out, "/job") {
		t.Fatalf("list said %q", out)
	}
	mustCLI(t, c, "snapshot", "restore", "step1", "/job-restored")
	checkFile(t, c, "/job-restored/ckpt", data)
	// Bad input exits non-zero with a message naming the problem.
	for _, args := range [][]string{
		{"snapshot", "create", "/missing", "x"},
		{"snapshot", "create", "/job", "step1"},
		{"snapshot", "create", "/job", "a/b"},
		{"snapshot", "restore", "step1", "/job"},
		{"snapshot", "bogus"},
	} {
		code, _, errs := cli(t, c, args...)
		if code == 0 || errs == "" {
			t.Errorf("strata %s: exit %d, stderr %q", strings.Join(args, " "), code, errs)
		}
	}
	out = mustCLI(t, c, "df")
	for _, want := range []string{"/job", "/.snapshots", "total", "LOGICAL", "STORED"} {
		if !strings.Contains(out, want) {
			t.Fatalf("df output lacks %q:\n%s", want, out)
		}
	}
	t.Logf("df:\n%s", out)
	mustCLI(t, c, "snapshot", "rm", "step1")
	if out := mustCLI(t, c, "snapshot", "list"); strings.Contains(out, "step1") {
		t.Fatalf("removed snapshot still listed: %q", out)
	}
	mustCLI(t, c, "freeze", "/job-restored")
	if code, _, _ := cli(t, c, "rm", "/job-restored/ckpt"); code == 0 {
		t.Fatal("rm inside a frozen tree succeeded")
	}
	mustCLI(t, c, "rmtree", "--frozen", "/job-restored")
}
