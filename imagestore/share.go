package imagestore

import (
	"context"
	"errors"
	"fmt"
	"path"
	"syscall"

	"github.com/strata-hpc/strata/client"
)

// Share gives tenant a read-only copy of image r: a frozen clone of its
// tree in the tenant's own image store (TenantsDir/TENANT/.strata/images),
// made in one metadata command and sharing every chunk. The tenant sees
// it as one of its images and may remove its copy; it cannot change it.
// Only the administrator (a client without a tenant token) reaches the
// tenants' trees, so only it can share.
func (s *Store) Share(ctx context.Context, r Ref, tenant string) error {
	img, err := s.Get(ctx, r)
	if err != nil {
		return err
	}
	if !img.Complete {
		return fmt.Errorf("imagestore: image %s is not completely imported", r)
	}
	root := path.Join(client.TenantsDir, tenant)
	if a, err := s.lstat(ctx, root); err != nil {
		return err
	} else if a == nil || tenant == "" {
		return fmt.Errorf("%w: tenant %q", ErrNotFound, tenant)
	}
	if a, err := s.lstat(ctx, root+imagePath(r)); err != nil {
		return err
	} else if a != nil {
		return fmt.Errorf("%w: image %s of tenant %s", ErrExists, r, tenant)
	}
	dir, err := s.ensureDir(ctx, root+ImagesDir+"/"+r.Name)
	if err != nil {
		return err
	}
	_, err = s.cl.CloneTree(ctx, img.Ino, dir.GetIno(), r.Tag, true)
	if errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("%w: image %s of tenant %s", ErrExists, r, tenant)
	}
	if err != nil {
		return fmt.Errorf("imagestore: share %s with %s: %w", r, tenant, err)
	}
	return nil
}
