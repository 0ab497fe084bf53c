package bootctl

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// AddNode stores a new node. Its name and each of its MACs are claimed by
// exclusive creates, so a duplicate name or MAC is refused even when two
// operators add at once; on any failure the claims made so far are undone.
func (s *Store) AddNode(ctx context.Context, n Node) (err error) {
	defer func() { s.Audit.node(ctx, "node.add", n, err) }()
	if err := n.Validate(); err != nil {
		return err
	}
	if err := s.sealPassword(&n, nil); err != nil {
		return err
	}
	if n.Group != "" {
		if _, err := s.GetGroup(ctx, n.Group); err != nil {
			return fmt.Errorf("node %s: group %s: %w", n.Name, n.Group, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ino, err := s.createExcl(ctx, nodesDir+"/"+n.Name)
	if errors.Is(err, ErrExists) {
		return fmt.Errorf("bootctl: node %s: name taken: %w", n.Name, ErrExists)
	}
	if err != nil {
		return err
	}
	if err := s.claimMACs(ctx, n.Name, n.MACs); err != nil {
		_ = s.remove(context.WithoutCancel(ctx), nodesDir+"/"+n.Name)
		return err
	}
	if err := s.setJSONIno(ctx, ino, nodesDir+"/"+n.Name, xNode, n); err != nil {
		s.releaseMACs(context.WithoutCancel(ctx), n.MACs)
		_ = s.remove(context.WithoutCancel(ctx), nodesDir+"/"+n.Name)
		return err
	}
	s.log.Info("node added", "node", n)
	return nil
}

// claimMACs creates the index entry of each MAC for node; all or none.
func (s *Store) claimMACs(ctx context.Context, node string, macs []string) error {
	var done []string
	for _, m := range macs {
		if err := s.claimMAC(ctx, node, m); err != nil {
			s.releaseMACs(context.WithoutCancel(ctx), done)
			return err
		}
		done = append(done, m)
	}
	return nil
}

func (s *Store) claimMAC(ctx context.Context, node, mac string) error {
	p := macsDir + "/" + macEntryName(mac)
	ino, err := s.createExcl(ctx, p)
	if errors.Is(err, ErrExists) {
		owner, _ := s.macOwner(ctx, mac)
		if owner == "" {
			owner = "another node"
		}
		return fmt.Errorf("bootctl: MAC %s already belongs to %s: %w", mac, owner, ErrExists)
	}
	if err != nil {
		return err
	}
	if err := s.setJSONIno(ctx, ino, p, xOwner, node); err != nil {
		_ = s.remove(context.WithoutCancel(ctx), p)
		return err
	}
	_ = s.remove(ctx, unknownDir+"/"+macEntryName(mac)) // adopted
	return nil
}

func (s *Store) releaseMACs(ctx context.Context, macs []string) {
	for _, m := range macs {
		if err := s.remove(ctx, macsDir+"/"+macEntryName(m)); err != nil {
			s.log.Warn("could not release MAC", "mac", m, "err", err)
		}
	}
}

func (s *Store) macOwner(ctx context.Context, mac string) (string, error) {
	var owner string
	err := s.getJSON(ctx, macsDir+"/"+macEntryName(mac), xOwner, &owner)
	return owner, err
}

// GetNode returns node name.
func (s *Store) GetNode(ctx context.Context, name string) (Node, error) {
	if err := CheckName("node", name); err != nil {
		return Node{}, err
	}
	var n Node
	if err := s.getJSON(ctx, nodesDir+"/"+name, xNode, &n); err != nil {
		if errors.Is(err, ErrNotFound) {
			return Node{}, fmt.Errorf("bootctl: node %s: %w", name, ErrNotFound)
		}
		return Node{}, err
	}
	unseal(&n, s.key)
	return n, nil
}

// sealPassword encrypts n's password for storage when it is new (no old
// record, or a password other than old's); an unchanged one keeps its
// stored form. Setting a password needs the key.
func (s *Store) sealPassword(n *Node, old *Node) error {
	b := &n.BMC
	if b.Password == "" || (old != nil && b.Password == old.BMC.Password) {
		return nil
	}
	if s.key == nil {
		return fmt.Errorf("node %s: cannot store the BMC password: %w", n.Name, errNoKeyToSeal)
	}
	sealed, err := s.key.seal(n.Name, b.Password)
	if err != nil {
		return err
	}
	b.Sealed, b.Plain, b.keyErr = sealed, "", nil
	return nil
}

var errNoKeyToSeal = errors.New("bootctl: BMC passwords are stored encrypted and no key was given (--bmc-key-file or STRATA_BMC_KEY_FILE; strata bootctl keygen makes one)")

// NodeByMAC returns the node that owns mac (normalised).
func (s *Store) NodeByMAC(ctx context.Context, mac string) (Node, error) {
	owner, err := s.macOwner(ctx, mac)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return Node{}, fmt.Errorf("bootctl: MAC %s is not registered: %w", mac, ErrNotFound)
		}
		return Node{}, err
	}
	n, err := s.GetNode(ctx, owner)
	if err != nil {
		return Node{}, err
	}
	if !slices.Contains(n.MACs, mac) {
		// A leftover of an interrupted add or rm: the node does not claim it.
		return Node{}, fmt.Errorf("bootctl: MAC %s is not registered (stale index entry for %s): %w", mac, owner, ErrNotFound)
	}
	return n, nil
}

// ListNodes returns every node, sorted by name. A node whose record is
// still being written (an add in progress) is skipped.
func (s *Store) ListNodes(ctx context.Context) ([]Node, error) {
	names, err := s.names(ctx, nodesDir)
	if err != nil {
		return nil, err
	}
	out := make([]Node, 0, len(names))
	for _, name := range names {
		n, err := s.GetNode(ctx, name)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// RemoveNode deletes a node and frees its MACs.
func (s *Store) RemoveNode(ctx context.Context, name string) (err error) {
	n := Node{Name: name}
	defer func() { s.Audit.node(ctx, "node.rm", n, err) }()
	if n, err = s.GetNode(ctx, name); err != nil {
		n.Name = name
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.releaseMACs(ctx, n.MACs)
	if err := s.remove(ctx, nodesDir+"/"+name); err != nil {
		return err
	}
	s.log.Info("node removed", "node", name)
	return nil
}

// UpdateNode applies fn to node name and stores the result. New MACs are
// claimed before the record changes and dropped ones freed after, so a MAC
// is never owned by two nodes. The name cannot change.
func (s *Store) UpdateNode(ctx context.Context, name string, fn func(*Node) error) (out Node, err error) {
	defer func() {
		if out.Name == "" {
			out.Name = name
		}
		s.Audit.node(ctx, "node.set", out, err)
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	old, err := s.GetNode(ctx, name)
	if err != nil {
		return Node{}, err
	}
	n := old
	n.MACs = slices.Clone(old.MACs)
	if err := fn(&n); err != nil {
		return Node{}, err
	}
	n.Name = name
	if err := n.Validate(); err != nil {
		return Node{}, err
	}
	if err := s.sealPassword(&n, &old); err != nil {
		return Node{}, err
	}
	if n.Group != "" && n.Group != old.Group {
		if _, err := s.GetGroup(ctx, n.Group); err != nil {
			return Node{}, fmt.Errorf("node %s: group %s: %w", name, n.Group, err)
		}
	}
	added, dropped := diff(n.MACs, old.MACs), diff(old.MACs, n.MACs)
	if err := s.claimMACs(ctx, name, added); err != nil {
		return Node{}, err
	}
	if err := s.setJSON(ctx, nodesDir+"/"+name, xNode, n); err != nil {
		s.releaseMACs(context.WithoutCancel(ctx), added)
		return Node{}, err
	}
	s.releaseMACs(ctx, dropped)
	return n, nil
}

// diff returns the items of a not in b.
func diff(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// NodesOfGroup returns the nodes whose group is g.
func (s *Store) NodesOfGroup(ctx context.Context, g string) ([]Node, error) {
	all, err := s.ListNodes(ctx)
	if err != nil {
		return nil, err
	}
	var out []Node
	for _, n := range all {
		if n.Group == g {
			out = append(out, n)
		}
	}
	return out, nil
}
