package bootctl

import (
	"context"
	"errors"
	"fmt"
)

// CreateGroup stores a new group (its name claimed with O_EXCL).
func (s *Store) CreateGroup(ctx context.Context, g Group) error {
	if err := CheckName("group", g.Name); err != nil {
		return err
	}
	if err := g.Config.Validate(); err != nil {
		return err
	}
	g.Config.Generation = 1
	g.Previous = nil
	ino, err := s.createExcl(ctx, groupsDir+"/"+g.Name)
	if errors.Is(err, ErrExists) {
		return fmt.Errorf("bootctl: group %s: name taken: %w", g.Name, ErrExists)
	}
	if err != nil {
		return err
	}
	if err := s.setJSONIno(ctx, ino, groupsDir+"/"+g.Name, xGroup, g); err != nil {
		_ = s.remove(context.WithoutCancel(ctx), groupsDir+"/"+g.Name)
		return err
	}
	s.log.Info("group created", "group", g.Name, "image", g.Config.Image)
	return nil
}

// GetGroup returns group name.
func (s *Store) GetGroup(ctx context.Context, name string) (Group, error) {
	if err := CheckName("group", name); err != nil {
		return Group{}, err
	}
	var g Group
	if err := s.getJSON(ctx, groupsDir+"/"+name, xGroup, &g); err != nil {
		if errors.Is(err, ErrNotFound) {
			return Group{}, fmt.Errorf("bootctl: group %s: %w", name, ErrNotFound)
		}
		return Group{}, err
	}
	return g, nil
}

// ListGroups returns every group, sorted by name.
func (s *Store) ListGroups(ctx context.Context) ([]Group, error) {
	names, err := s.names(ctx, groupsDir)
	if err != nil {
		return nil, err
	}
	out := make([]Group, 0, len(names))
	for _, name := range names {
		g, err := s.GetGroup(ctx, name)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, nil
}

// UpdateGroup applies fn to group name and stores the result.
func (s *Store) UpdateGroup(ctx context.Context, name string, fn func(*Group) error) (Group, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, err := s.GetGroup(ctx, name)
	if err != nil {
		return Group{}, err
	}
	if err := fn(&g); err != nil {
		return Group{}, err
	}
	g.Name = name
	if err := g.Config.Validate(); err != nil {
		return Group{}, err
	}
	if err := s.setJSON(ctx, groupsDir+"/"+name, xGroup, g); err != nil {
		return Group{}, err
	}
	return g, nil
}

// SetConfig makes cfg the group's configuration, keeping the current one
// as Previous (for rollback), and bumps the generation.
func (s *Store) SetConfig(ctx context.Context, name string, cfg GroupConfig) (Group, error) {
	return s.UpdateGroup(ctx, name, func(g *Group) error {
		prev := g.Config
		cfg.Generation = prev.Generation + 1
		g.Previous, g.Config = &prev, cfg
		return nil
	})
}

// Rollback swaps the group back to its previous configuration (as a new
// generation, so nodes re-check-in), keeping the current one as Previous.
func (s *Store) Rollback(ctx context.Context, name string) (Group, error) {
	return s.UpdateGroup(ctx, name, func(g *Group) error {
		if g.Previous == nil {
			return fmt.Errorf("bootctl: group %s has no previous configuration to roll back to", name)
		}
		cur, prev := g.Config, *g.Previous
		prev.Generation = cur.Generation + 1
		g.Config, g.Previous = prev, &cur
		return nil
	})
}
