package main

import (
	"strings"
	"testing"
	"time"

	"github.com/strata-hpc/strata/internal/testcluster"
)

// TestCapCLI: `strata cap status` shows the signing key, `strata cap
// rotate` adds one that signs after the activation delay, files written
// before and after read back, and bad usage exits 2.
func TestCapCLI(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{TLSDir: testTLSDir, Meta: 1, Data: 6})
	putFile(t, c, "/before", randomBytes(300<<10, 1))
	out := mustCLI(t, c, "cap", "status")
	if !strings.Contains(out, "signing key 1,") || !strings.Contains(out, "1 (signing)") {
		t.Fatalf("cap status:\n%s", out)
	}
	out = mustCLI(t, c, "cap", "rotate")
	if !strings.Contains(out, "new key 2 signs from") {
		t.Fatalf("cap rotate:\n%s", out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out, "signing key 2,") {
		if time.Now().After(deadline) {
			t.Fatalf("key 2 never became the signing key:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
		out = mustCLI(t, c, "cap", "status")
	}
	putFile(t, c, "/after", randomBytes(300<<10, 2))
	checkFile(t, c, "/before", randomBytes(300<<10, 1))
	checkFile(t, c, "/after", randomBytes(300<<10, 2))
	for _, bad := range [][]string{{"cap"}, {"cap", "spin"}, {"cap", "rotate", "extra"}} {
		if code, _, errs := cli(t, c, bad...); code != 2 || errs == "" {
			t.Errorf("strata %s: exit %d (%q), want 2 with a message", strings.Join(bad, " "), code, errs)
		}
	}
}
