package bootctl

import (
	"context"
	"fmt"
)

// Rekey re-encrypts every stored BMC password with next: each is opened
// with the store's key (or read as a legacy plain password) and sealed
// again. It stops at the first node whose password cannot be opened, so
// no password is ever lost; nodes done before that keep the new key, and
// running Rekey again (with the old key as the store's) resumes, since
// nodes already sealed with next are skipped. It returns how many nodes
// it re-encrypted.
func (s *Store) Rekey(ctx context.Context, next *Key) (int, error) {
	names, err := s.names(ctx, nodesDir)
	if err != nil {
		return 0, err
	}
	done := 0
	for _, name := range names {
		changed, err := s.rekeyNode(ctx, name, next)
		if err != nil {
			return done, err
		}
		if changed {
			done++
		}
	}
	return done, nil
}

func (s *Store) rekeyNode(ctx context.Context, name string, next *Key) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n Node
	if err := s.getJSON(ctx, nodesDir+"/"+name, xNode, &n); err != nil {
		return false, nil // removed, or an add in progress
	}
	if n.BMC.Sealed != "" {
		if _, err := next.open(n.Name, n.BMC.Sealed); err == nil {
			return false, nil // already under the new key
		}
	}
	unseal(&n, s.key)
	if err := n.BMC.ready(); err != nil {
		return false, fmt.Errorf("rekey node %s: %w", name, err)
	}
	if n.BMC.Password == "" {
		return false, nil // no password at all
	}
	sealed, err := next.seal(n.Name, n.BMC.Password)
	if err != nil {
		return false, err
	}
	n.BMC.Sealed, n.BMC.Plain = sealed, ""
	if err := s.setJSON(ctx, nodesDir+"/"+name, xNode, n); err != nil {
		return false, err
	}
	s.log.Info("BMC password re-encrypted", "node", name, "key", next.ID())
	return true, nil
}

// CheckKey opens every stored BMC password with the store's key, so that
// a daemon given a missing or wrong key says so at start rather than at
// the first power action. Nodes without a password pass.
func (s *Store) CheckKey(ctx context.Context) error {
	nodes, err := s.ListNodes(ctx)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		if err := n.BMC.ready(); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	return nil
}
