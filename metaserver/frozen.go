package metaserver

import (
	"slices"
	"syscall"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// Frozen trees. Freeze marks every inode of a tree (images are frozen
// trees; so are snapshots). The flag is on each inode rather than on the
// tree's root so that the check is one bit, whatever the depth, and holds
// for a file reached by inode number or through a hard link. Every command
// that changes an inode or a directory's entries checks it with writable;
// only the tree commands (CloneTree reads, RemoveTree with allow_frozen,
// the snapshot commands) go past it.
//
// Moving the root of a frozen tree (renaming its entry in a writable
// directory) is allowed: it changes nothing inside the tree, and lets an
// importer publish a finished image under its final name in one step.

// writable fails with EPERM when any of ns is frozen.
func writable(ns ...*inode) error {
	for _, n := range ns {
		if n != nil && n.frozen() {
			return errnof(syscall.EPERM, "inode %d is in a frozen tree", n.ino)
		}
	}
	return nil
}

// movable fails with EPERM when n is in a frozen tree (other than as the
// root of one) or belongs to the snapshot area.
func movable(n *inode) error {
	switch {
	case n.pinned():
		return errnof(syscall.EPERM, "inode %d is a snapshot or the snapshot area; use the snapshot commands", n.ino)
	case n.frozen() && !n.isDir():
		return errnof(syscall.EPERM, "inode %d is in a frozen tree", n.ino)
	}
	return nil
}

// walkTree calls fn for root and every inode below it, parents before
// children and children in name order, so that a command walking a tree
// does the same on every voter. An inode reached by two hard links is
// visited twice. fn returning false skips the inode's children.
func (s *state) walkTree(root *inode, fn func(n, parent *inode, name string) bool) {
	type item struct {
		n, parent *inode
		name      string
	}
	stack := []item{{n: root}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if !fn(it.n, it.parent, it.name) || !it.n.isDir() {
			continue
		}
		names := sortedNames(it.n.children)
		for i := len(names) - 1; i >= 0; i-- { // pushed in reverse: popped in order
			if c, ok := s.inodes[it.n.children[names[i]]]; ok {
				stack = append(stack, item{n: c, parent: it.n, name: names[i]})
			}
		}
	}
}

func sortedNames(m map[string]uint64) []string {
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// freeze marks the tree at r.Ino frozen, for good.
func (s *state) freeze(_ int64, r *stratapb.FreezeRequest) (*stratapb.FreezeResponse, error) {
	root, err := s.get(r.Ino)
	if err != nil {
		return nil, err
	}
	var count uint64
	s.walkTree(root, func(n, _ *inode, _ string) bool {
		if !n.frozen() {
			n.flags |= flagFrozen
			count++
		}
		return true
	})
	return &stratapb.FreezeResponse{Attr: root.attr(), Inodes: count}, nil
}
