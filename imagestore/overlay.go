package imagestore

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"syscall"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// Overlays. An overlay is a named, owned, writable layer, independent of
// any image: the upper directory of an image mount, saved into Strata by
// push and restored by pull. It holds one sub-overlay per node plus a
// default one:
//
//	/.strata/overlays/NAME/default/upper    without --node
//	/.strata/overlays/NAME/nodes/N/upper    with --node N
//
// The sub-overlay directory carries the generation of its last push
// (xattrGeneration), which lets a node that pushed it last skip every
// unchanged file on its next push (see push.go).

const (
	defaultSub      = "default"
	nodesDir        = "nodes"
	savedUpper      = "upper"
	xattrGeneration = "user.strata.overlay.generation"
)

// Overlay describes one overlay.
type Overlay struct {
	Name     string
	Uid, Gid uint32
	// Subs are its sub-overlays that were pushed: "default" and
	// "nodes/N".
	Subs []string
}

// subPath is the directory of a sub-overlay; node "" is the default.
func subPath(name, node string) string {
	if node == "" {
		return path.Join(OverlaysDir, name, defaultSub)
	}
	return path.Join(OverlaysDir, name, nodesDir, node)
}

// subName names a sub-overlay in messages.
func subName(name, node string) string {
	if node == "" {
		return "overlay " + name
	}
	return fmt.Sprintf("overlay %s (node %s)", name, node)
}

func checkOverlay(name, node string) error {
	if err := CheckOverlayName(name); err != nil {
		return err
	}
	if node != "" {
		if err := checkPart("node name", node, node); err != nil {
			return err
		}
	}
	return nil
}

// CreateOverlay makes an empty overlay owned by o.
func (s *Store) CreateOverlay(ctx context.Context, name string, o client.Owner) error {
	if err := CheckOverlayName(name); err != nil {
		return err
	}
	dir, err := s.ensureDir(ctx, OverlaysDir)
	if err != nil {
		return err
	}
	_, err = s.cl.MkdirAt(ctx, dir.GetIno(), name, 0o700, o)
	if errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("%w: overlay %s", ErrExists, name)
	}
	if err != nil {
		return fmt.Errorf("imagestore: create overlay %s: %w", name, err)
	}
	return nil
}

// overlayDir returns the attributes of overlay name's directory.
func (s *Store) overlayDir(ctx context.Context, name string) (*stratapb.Attr, error) {
	a, err := s.lstat(ctx, path.Join(OverlaysDir, name))
	if err != nil {
		return nil, err
	}
	if a == nil {
		return nil, fmt.Errorf("%w: overlay %s (make it with 'strata overlay create %s')", ErrNotFound, name, name)
	}
	return a, nil
}

// ListOverlays returns the overlays, sorted by name.
func (s *Store) ListOverlays(ctx context.Context) ([]Overlay, error) {
	ents, err := s.readDir(ctx, OverlaysDir)
	if err != nil {
		return nil, err
	}
	var out []Overlay
	for _, e := range ents {
		if e.GetType() != stratapb.FileType_DIRECTORY {
			continue
		}
		ov := Overlay{Name: e.GetName(), Uid: e.GetAttr().GetUid(), Gid: e.GetAttr().GetGid()}
		subs, err := s.cl.ReadDirAt(ctx, e.GetIno(), false)
		if err != nil {
			return nil, fmt.Errorf("imagestore: list overlay %s: %w", e.GetName(), err)
		}
		for _, sub := range subs {
			switch sub.GetName() {
			case defaultSub:
				ov.Subs = append(ov.Subs, defaultSub)
			case nodesDir:
				nodes, err := s.cl.ReadDirAt(ctx, sub.GetIno(), false)
				if err != nil {
					return nil, fmt.Errorf("imagestore: list overlay %s: %w", e.GetName(), err)
				}
				for _, n := range nodes {
					ov.Subs = append(ov.Subs, nodesDir+"/"+n.GetName())
				}
			}
		}
		sort.Strings(ov.Subs)
		out = append(out, ov)
	}
	return out, nil
}

// RemoveOverlay deletes overlay name with every sub-overlay. Local copies
// on nodes are not touched.
func (s *Store) RemoveOverlay(ctx context.Context, name string) error {
	if err := CheckOverlayName(name); err != nil {
		return err
	}
	if _, err := s.overlayDir(ctx, name); err != nil {
		return err
	}
	dir, err := s.lstat(ctx, OverlaysDir)
	if err != nil {
		return err
	}
	if err := s.removeTree(ctx, dir.GetIno(), name); err != nil {
		return fmt.Errorf("imagestore: remove overlay %s: %w", name, err)
	}
	return nil
}
