package fuse

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/internal/testcluster"
)

// Mounts of a tenant through real FUSE: permissions as the kernel checks
// them for ordinary uids (default_permissions), root squashed to nobody,
// and EDQUOT when the tenant's quota is full.

// tenantMount creates tenant name (root directory owned by uid:gid 0755)
// and mounts it with opts; it returns the mount point.
func tenantMount(t *testing.T, c *testcluster.Cluster, name string, squash bool, quotaBytes uint64) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := newClient(t, c)
	tok, _, err := admin.CreateTenant(ctx, name, client.TenantOptions{UID: 1234, GID: 1234, Mode: 0o755})
	if err != nil {
		t.Fatal(err)
	}
	if quotaBytes > 0 {
		if _, err := admin.SetQuota(ctx, client.QuotaTarget{Tenant: name}, quotaBytes, 0); err != nil {
			t.Fatal(err)
		}
	}
	cl, err := client.New(client.Config{MetaAddrs: c.MetaAddrs(), TLS: c.ClientTLS(), TenantToken: tok, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	mp := mountDir(t)
	o := DefaultOptions()
	o.Logger, o.RootSquash = testLogger(), squash
	fsys, err := Mount(ctx, cl, mp, o)
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	ourMounts.Store(fsys.Mountpoint(), true)
	t.Cleanup(func() { unmount(t, fsys) })
	return mp
}

// asUser runs a shell command as uid:gid (no supplementary groups).
func asUser(t *testing.T, uid, gid int, script string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv (util-linux) not installed")
	}
	cmd := exec.Command("setpriv", "--reuid", strconv.Itoa(uid), "--regid", strconv.Itoa(gid), "--clear-groups", "sh", "-c", script)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestTenantMountPermissions(t *testing.T) {
	c := newCluster(t, smallChunks())
	mp := tenantMount(t, c, "acme", true, 0)

	// The tenant's root belongs to 1234: it may write, others may not.
	if out, err := asUser(t, 1234, 1234, "cd "+mp+" && mkdir private pub && chmod 700 private && chmod 777 pub && echo secret > private/f && echo open > pub/g"); err != nil {
		t.Fatalf("owner writes its tree: %v: %s", err, out)
	}
	for _, script := range []string{"cat " + mp + "/private/f", "touch " + mp + "/new", "ls " + mp + "/private", "chmod 777 " + mp + "/pub"} {
		out, err := asUser(t, 2345, 2345, script)
		if err == nil || !strings.Contains(out, "Permission denied") && !strings.Contains(out, "Operation not permitted") {
			t.Errorf("uid 2345: %q: %v %s, want Permission denied", script, err, out)
		}
	}
	if out, err := asUser(t, 2345, 2345, "cat "+mp+"/pub/g"); err != nil || out != "open\n" {
		t.Errorf("uid 2345 reads a world-readable file: %v %q", err, out)
	}

	// Root is squashed to nobody: what nobody may not do fails with EACCES.
	checks := []struct {
		what string
		do   func() error
	}{
		{"read a file below a 0700 dir", func() error { return readErr(filepath.Join(mp, "private/f")) }},
		{"create in the 0755 root dir", func() error { return os.WriteFile(filepath.Join(mp, "r"), []byte("x"), 0o644) }},
		{"mkdir in the 0755 root dir", func() error { return os.Mkdir(filepath.Join(mp, "rd"), 0o755) }},
		{"chmod another's dir", func() error { return os.Chmod(filepath.Join(mp, "pub"), 0o700) }},
		{"chown another's file", func() error { return os.Chown(filepath.Join(mp, "pub/g"), 0, 0) }},
		{"write another's 0644 file", func() error { return os.WriteFile(filepath.Join(mp, "pub/g"), []byte("x"), 0o644) }},
	}
	for _, c := range checks {
		if err := c.do(); !errors.Is(err, syscall.EACCES) && !errors.Is(err, syscall.EPERM) {
			t.Errorf("squashed root: %s: %v, want EACCES or EPERM", c.what, err)
		}
	}
	// What squashed root makes belongs to nobody.
	p := filepath.Join(mp, "pub/byroot")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatalf("squashed root writes in a 0777 dir: %v", err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil || st.Uid != Nobody || st.Gid != Nobody {
		t.Fatalf("file made by squashed root: uid %d gid %d (%v), want %d", st.Uid, st.Gid, err, Nobody)
	}
	if out, err := asUser(t, 1234, 1234, "cat "+mp+"/private/f"); err != nil || out != "secret\n" {
		t.Fatalf("owner reads its file back: %v %q", err, out)
	}
}

func readErr(p string) error {
	_, err := os.ReadFile(p)
	return err
}

// TestTenantMountNoRootSquash: with squashing off, root is root.
func TestTenantMountNoRootSquash(t *testing.T) {
	c := newCluster(t, smallChunks())
	mp := tenantMount(t, c, "acme", false, 0)
	p := filepath.Join(mp, "byroot")
	if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil || st.Uid != 0 {
		t.Fatalf("uid %d (%v), want 0", st.Uid, err)
	}
}

// TestTenantMountEDQUOT: writes past the tenant's quota fail with EDQUOT
// (at write, or at the latest at fsync/close, as with NFS); what was
// written before reads back.
func TestTenantMountEDQUOT(t *testing.T) {
	c := newCluster(t, smallChunks())
	mp := tenantMount(t, c, "acme", false, 1<<20)
	first := bytes.Repeat([]byte("a"), 512<<10)
	if err := os.WriteFile(filepath.Join(mp, "first"), first, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(mp, "big"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("b"), 64<<10)
	var werr error
	for i := 0; i < 32 && werr == nil; i++ {
		_, werr = f.Write(chunk)
	}
	if werr == nil {
		werr = f.Sync()
	}
	cerr := f.Close()
	if werr == nil {
		werr = cerr
	}
	if !errors.Is(werr, syscall.EDQUOT) {
		t.Fatalf("2 MiB into a 1 MiB quota: %v, want EDQUOT", werr)
	}
	out, err := exec.Command("dd", "if=/dev/zero", "of="+filepath.Join(mp, "dd"), "bs=64k", "count=32", "conv=fsync").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "quota") {
		t.Fatalf("dd past the quota: %v: %s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(mp, "first"))
	if err != nil || !bytes.Equal(got, first) {
		t.Fatalf("file written before the quota filled: %v", err)
	}
}
