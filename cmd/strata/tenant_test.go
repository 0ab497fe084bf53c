package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/strata-hpc/strata/internal/testcluster"
)

// TestTenantCLI drives strata tenant, quota and image share against an
// in-process cluster: the administrator makes a tenant and shares an image
// with it; the tenant (by $STRATA_TENANT_TOKEN) sees only its own tree and
// the shared image, and a write past its quota fails with a clear message.
func TestTenantCLI(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{TLSDir: testTLSDir, Meta: 3, Data: 6})
	t.Setenv("STRATA_TENANT_TOKEN", "")
	out := mustCLI(t, c, "tenant", "create", "acme")
	tok := regexp.MustCompile(`stt_[A-Za-z0-9_-]+`).FindString(out)
	if tok == "" || !strings.Contains(out, "/.tenants/acme") {
		t.Fatalf("create said %q", out)
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "hello"), []byte("hello world\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	meta := strings.Join(c.MetaAddrs(), ",")
	mustCLIRun(t, "image", "import", "--meta", meta, "base:1", src)
	mustCLIRun(t, "image", "share", "--meta", meta, "--to", "acme", "base:1")
	mustCLI(t, c, "mkdir", "/admin-only")
	if out := mustCLI(t, c, "tenant", "list"); !strings.Contains(out, "acme") {
		t.Fatalf("tenant list: %q", out)
	}
	mustCLI(t, c, "quota", "set", "--tenant-quota", "acme", "--bytes", "100K", "--files", "50")

	t.Setenv("STRATA_TENANT_TOKEN", tok)
	if out := mustCLIRun(t, "image", "list", "--meta", meta); !strings.Contains(out, "base") {
		t.Fatalf("tenant image list lacks the shared image: %q", out)
	}
	if out := mustCLI(t, c, "ls", "/"); strings.Contains(out, "admin-only") || strings.Contains(out, ".tenants") {
		t.Fatalf("tenant sees the global tree: %q", out)
	}
	putFile(t, c, "/small", randomBytes(10<<10, 1))
	local := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(local, randomBytes(200<<10, 2), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs := cli(t, c, "put", local, "/big")
	if code == 0 || !strings.Contains(errs, "quota exceeded") {
		t.Fatalf("put past the quota: exit %d, stderr %q", code, errs)
	}
	if out := mustCLI(t, c, "quota", "show"); !strings.Contains(out, "tenant acme") || !strings.Contains(out, "100.0 KiB") {
		t.Fatalf("quota show: %q", out)
	}
	for _, args := range [][]string{{"tenant", "list"}, {"tenant", "create", "evil"}, {"quota", "set", "--tenant-quota", "acme", "--bytes", "0"}} {
		if code, _, _ := cli(t, c, args...); code == 0 {
			t.Errorf("tenant ran strata %s", strings.Join(args, " "))
		}
	}
	checkFile(t, c, "/small", randomBytes(10<<10, 1))

	t.Setenv("STRATA_TENANT_TOKEN", "")
	mustCLI(t, c, "tenant", "rm", "acme")
	if code, _, _ := cli(t, c, "stat", "/.tenants/acme"); code == 0 {
		t.Fatal("removed tenant's tree remains")
	}
}
