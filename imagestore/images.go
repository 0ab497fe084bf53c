package imagestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"syscall"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// Image is one image of the store.
type Image struct {
	Ref    Ref
	Ino    uint64 // of the image's directory
	Record Record
	// Complete is false for an image whose import was cut off between
	// publishing and freezing it (re-running the import finishes it).
	Complete bool
}

// List returns the images, sorted by name and tag.
func (s *Store) List(ctx context.Context) ([]Image, error) {
	names, err := s.readDir(ctx, ImagesDir)
	if err != nil {
		return nil, err
	}
	var out []Image
	for _, n := range names {
		if n.GetType() != stratapb.FileType_DIRECTORY || checkPart("image name", n.GetName(), n.GetName()) != nil {
			continue // .staging, or something not ours
		}
		tags, err := s.cl.ReadDirAt(ctx, n.GetIno(), true)
		if err != nil {
			return nil, fmt.Errorf("imagestore: list %s: %w", n.GetName(), err)
		}
		for _, t := range tags {
			out = append(out, s.image(ctx, Ref{Name: n.GetName(), Tag: t.GetName()}, t.GetAttr()))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref.String() < out[j].Ref.String() })
	return out, nil
}

// readDir lists directory p, or nothing if it does not exist yet.
func (s *Store) readDir(ctx context.Context, p string) ([]*stratapb.DirEntry, error) {
	a, err := s.lstat(ctx, p)
	if err != nil || a == nil {
		return nil, err
	}
	ents, err := s.cl.ReadDirAt(ctx, a.GetIno(), true)
	if err != nil {
		return nil, fmt.Errorf("imagestore: list %s: %w", p, err)
	}
	return ents, nil
}

// image reads the record of one image directory; a missing or damaged
// record leaves Record empty rather than hiding the image.
func (s *Store) image(ctx context.Context, r Ref, a *stratapb.Attr) Image {
	img := Image{Ref: r, Ino: a.GetIno(), Complete: a.GetFrozen()}
	if b, err := s.cl.GetXattr(ctx, a.GetIno(), xattrRecord); err == nil {
		json.Unmarshal(b, &img.Record)
	}
	return img
}

// Get returns image r.
func (s *Store) Get(ctx context.Context, r Ref) (Image, error) {
	a, err := s.lstat(ctx, imagePath(r))
	if err != nil {
		return Image{}, err
	}
	if a == nil {
		return Image{}, fmt.Errorf("%w: image %s", ErrNotFound, r)
	}
	return s.image(ctx, r, a), nil
}

// Remove deletes image r. Chunks that no other image, file or snapshot
// holds are freed; mounts of the image that are in use keep working on
// what they have cached only, so unmount them first.
func (s *Store) Remove(ctx context.Context, r Ref) error {
	dir, err := s.lstat(ctx, ImagesDir+"/"+r.Name)
	if err != nil {
		return err
	}
	if dir == nil {
		return fmt.Errorf("%w: image %s", ErrNotFound, r)
	}
	err = s.removeTree(ctx, dir.GetIno(), r.Tag)
	if errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("%w: image %s", ErrNotFound, r)
	}
	if err != nil {
		return fmt.Errorf("imagestore: remove %s: %w", r, err)
	}
	// The last tag of a name takes the name with it; another import
	// adding a tag meanwhile makes this fail, which is fine.
	if images, err := s.lstat(ctx, ImagesDir); err == nil && images != nil {
		err := s.cl.RmdirAt(ctx, images.GetIno(), r.Name)
		if err != nil && !errors.Is(err, syscall.ENOTEMPTY) && !errors.Is(err, syscall.ENOENT) {
			s.log.Warn("remove empty image name", "name", r.Name, "err", err)
		}
	}
	return nil
}

// Tag makes dst another name of image src: a frozen copy made in one
// metadata command, sharing every chunk (it costs metadata only).
func (s *Store) Tag(ctx context.Context, src, dst Ref) error {
	img, err := s.Get(ctx, src)
	if err != nil {
		return err
	}
	if !img.Complete {
		return fmt.Errorf("imagestore: image %s is not completely imported", src)
	}
	if a, err := s.lstat(ctx, imagePath(dst)); err != nil {
		return err
	} else if a != nil {
		return fmt.Errorf("%w: image %s", ErrExists, dst)
	}
	dir, err := s.ensureDir(ctx, ImagesDir+"/"+dst.Name)
	if err != nil {
		return err
	}
	_, err = s.cl.CloneTree(ctx, img.Ino, dir.GetIno(), dst.Tag, true)
	if errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("%w: image %s", ErrExists, dst)
	}
	if err != nil {
		return fmt.Errorf("imagestore: tag %s as %s: %w", src, dst, err)
	}
	return nil
}

// Usage is what image show reports about space.
type Usage struct {
	Files        uint64 // inodes
	LogicalBytes uint64 // file sizes (hard links once)
	StoredBytes  uint64 // distinct chunks, all shards
	// Shared*: the part held by chunks that something outside the image
	// (another image, an overlay, a snapshot, a file) also references.
	SharedLogicalBytes uint64
	SharedStoredBytes  uint64
}

// Usage answers for image r in one metadata call, however many files it
// has.
func (s *Store) Usage(ctx context.Context, r Ref) (Usage, error) {
	img, err := s.Get(ctx, r)
	if err != nil {
		return Usage{}, err
	}
	u, err := s.cl.TreeUsage(ctx, img.Ino)
	if err != nil {
		return Usage{}, fmt.Errorf("imagestore: usage of %s: %w", r, err)
	}
	return Usage{
		Files: u.GetUsage().GetInodes(), LogicalBytes: u.GetUsage().GetLogicalBytes(),
		StoredBytes: u.GetUsage().GetStoredBytes(), SharedLogicalBytes: u.GetSharedLogicalBytes(),
		SharedStoredBytes: u.GetSharedStoredBytes(),
	}, nil
}
