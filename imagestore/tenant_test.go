package imagestore

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/internal/testcluster"
)

// TestTenantImagesAndOverlays: two tenants on one cluster each have their
// own image and overlay store; neither can name the other's images or
// overlays (the errors are those of a missing one); an image the
// administrator shares reaches only the tenant it was shared with, read-only.
func TestTenantImagesAndOverlays(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("image tests keep owners: they run as root")
	}
	ctx := context.Background()
	c := testcluster.New(t, testcluster.Options{Meta: 1, Data: 6})
	open := func(token string) (*Store, *client.Client) {
		cl, err := client.New(client.Config{MetaAddrs: c.MetaAddrs(), TLS: c.ClientTLS(), TenantToken: token, Logger: slog.New(slog.DiscardHandler)})
		must(t, err)
		t.Cleanup(func() { cl.Close() })
		return New(cl, nil), cl
	}
	admin, adminCl := open("")
	tokA, _, err := adminCl.CreateTenant(ctx, "alpha", client.TenantOptions{})
	must(t, err)
	tokB, _, err := adminCl.CreateTenant(ctx, "beta", client.TenantOptions{})
	must(t, err)
	a, _ := open(tokA)
	b, _ := open(tokB)

	src := t.TempDir()
	must(t, os.WriteFile(filepath.Join(src, "motd"), []byte("beta only\n"), 0o644))
	dir, err := OpenSource(src)
	must(t, err)
	_, err = b.Import(ctx, mustRef(t, "secret:1"), dir, ImportOptions{})
	must(t, err)
	must(t, b.CreateOverlay(ctx, "ov-b", client.Owner{}))

	if imgs, err := a.List(ctx); err != nil || len(imgs) != 0 {
		t.Fatalf("alpha lists images %v (%v)", imgs, err)
	}
	_, errForeign := a.Get(ctx, mustRef(t, "secret:1"))
	_, errMissing := a.Get(ctx, mustRef(t, "secret:2"))
	if !errors.Is(errForeign, ErrNotFound) || !errors.Is(errMissing, ErrNotFound) {
		t.Fatalf("alpha gets beta's image: %v; a missing one: %v", errForeign, errMissing)
	}
	if err := a.Remove(ctx, mustRef(t, "secret:1")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("alpha removes beta's image: %v", err)
	}
	if ovs, err := a.ListOverlays(ctx); err != nil || len(ovs) != 0 {
		t.Fatalf("alpha lists overlays %v (%v)", ovs, err)
	}
	if err := a.RemoveOverlay(ctx, "ov-b"); err == nil {
		t.Fatal("alpha removed beta's overlay")
	}
	if _, err := a.Pull(ctx, "ov-b", "", t.TempDir(), PullOptions{}); err == nil {
		t.Fatal("alpha pulled beta's overlay")
	}
	// A tenant cannot share: it does not see the tenants' trees.
	if err := b.Share(ctx, mustRef(t, "secret:1"), "alpha"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("beta shares with alpha: %v", err)
	}

	// The administrator shares its own image with alpha only.
	dir2, err := OpenSource(src)
	must(t, err)
	_, err = admin.Import(ctx, mustRef(t, "base:1"), dir2, ImportOptions{})
	must(t, err)
	must(t, admin.Share(ctx, mustRef(t, "base:1"), "alpha"))
	img, err := a.Get(ctx, mustRef(t, "base:1"))
	if err != nil || !img.Complete {
		t.Fatalf("alpha's shared image: %+v %v", img, err)
	}
	if _, err := b.Get(ctx, mustRef(t, "base:1")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("beta sees an image shared with alpha: %v", err)
	}
	// Read-only: the shared tree is frozen.
	if _, err := a.cl.Put(ctx, ImagesDir+"/base/1/rootfs/motd", nil, client.PutOptions{}); err == nil {
		t.Fatal("alpha changed a shared image")
	}
	if err := admin.Share(ctx, mustRef(t, "base:1"), "nosuch"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("share with a missing tenant: %v", err)
	}
}
