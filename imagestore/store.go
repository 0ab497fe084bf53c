// Package imagestore keeps system images and overlays in Strata.
//
// An image NAME:TAG is a frozen tree at /.strata/images/NAME/TAG whose
// rootfs/ subdirectory is the root file system; its import record sits in
// user.strata.* extended attributes of the TAG directory. An import is
// built in /.strata/images/.staging/NAME:TAG and published with one rename
// and then frozen, so that no half image is ever visible under images/.
// Overlays live at /.strata/overlays/NAME (see overlay.go).
//
// The package talks to the cluster only through the client library.
package imagestore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"syscall"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// Where the store keeps its trees in the tenant's namespace.
const (
	Root        = "/.strata"
	ImagesDir   = Root + "/images"
	StagingDir  = ImagesDir + "/.staging"
	OverlaysDir = Root + "/overlays"
	rootfsName  = "rootfs"
)

// Errors a caller may check with errors.Is.
var (
	ErrExists   = errors.New("imagestore: already exists")
	ErrNotFound = errors.New("imagestore: not found")
)

// Store is the image and overlay store of one cluster (one tenant).
type Store struct {
	cl  *client.Client
	log *slog.Logger
}

// New returns a store that works through cl.
func New(cl *client.Client, log *slog.Logger) *Store {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{cl: cl, log: log.With("component", "imagestore")}
}

func imagePath(r Ref) string   { return path.Join(ImagesDir, r.Name, r.Tag) }
func stagingName(r Ref) string { return r.Name + ":" + r.Tag }

// root is the owner of the store's own directories.
var rootOwner = client.Owner{}

// ensureDir makes p (and its parents) if missing and returns its inode.
func (s *Store) ensureDir(ctx context.Context, p string) (*stratapb.Attr, error) {
	if err := s.cl.MkdirAll(ctx, p, 0o755); err != nil {
		return nil, fmt.Errorf("imagestore: make %s: %w", p, err)
	}
	a, err := s.cl.Lstat(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("imagestore: %s: %w", p, err)
	}
	return a, nil
}

// lstat returns the attributes of p, or nil if it does not exist.
func (s *Store) lstat(ctx context.Context, p string) (*stratapb.Attr, error) {
	a, err := s.cl.Lstat(ctx, p)
	if errors.Is(err, syscall.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("imagestore: %s: %w", p, err)
	}
	return a, nil
}

// Resolve returns the attributes of the root file system of image r, for
// mounting it.
func (s *Store) Resolve(ctx context.Context, r Ref) (*stratapb.Attr, error) {
	dir, err := s.lstat(ctx, imagePath(r))
	if err != nil {
		return nil, err
	}
	if dir == nil {
		return nil, fmt.Errorf("%w: image %s", ErrNotFound, r)
	}
	if !dir.GetFrozen() {
		return nil, fmt.Errorf("imagestore: image %s is still being published (re-run its import to finish)", r)
	}
	a, err := s.cl.Lookup(ctx, dir.GetIno(), rootfsName)
	if err != nil {
		return nil, fmt.Errorf("imagestore: image %s: %w", r, err)
	}
	return a, nil
}
