package metaserver

import (
	"maps"
	"slices"
	"syscall"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// Whole-tree commands: a copy (sharing chunks) and a removal, each one raft
// command whatever the tree's size. Apply walks the tree in memory: about
// a microsecond per inode, so a 10,000-file tree costs the FSM goroutine
// some 10 ms; a tree of millions would stall Apply for seconds (the price
// of the "one transaction" guarantee; see NOTES.md).

// cloneResult is what a clone made.
type cloneResult struct {
	root    *inode
	inodes  uint64
	refs    uint64 // chunk references added
	logical uint64 // bytes of the files made
}

// cloneTree copies the tree at src into a new entry name of directory d
// (already checked free). Hard links inside the tree stay links; links from
// outside it are not followed. Pinned inodes (the snapshot area, when the
// tenant's root is cloned) are left out. Times, owners, modes and xattrs
// are kept; freeze makes the copy a frozen tree, otherwise it is writable
// whatever the source was. Nothing can fail once it starts changing state.
func (s *state) cloneTree(src, d *inode, name string, freeze bool) cloneResult {
	var res cloneResult
	made := map[uint64]*inode{} // source ino -> copy
	s.walkTree(src, func(n, parent *inode, entry string) bool {
		if parent != nil && n.pinned() {
			return false
		}
		if c, seen := made[n.ino]; seen { // another hard link to a file
			made[parent.ino].children[entry] = c.ino
			c.nlink++
			return false
		}
		c := s.copyInode(n, d, freeze, &res)
		made[n.ino] = c
		if parent == nil {
			res.root = c
			return true
		}
		pc := made[parent.ino]
		pc.children[entry] = c.ino
		if c.isDir() {
			c.parent = pc.ino
			pc.nlink++
		}
		return true
	})
	d.children[name] = res.root.ino
	if res.root.isDir() {
		res.root.parent = d.ino
		d.nlink++
	}
	return res
}

// copyInode makes a new inode like n, with no entries and one link (two
// for a directory); its chunks gain a reference each.
// The copy belongs to the tenant and quota of d, the directory the tree
// is copied into.
func (s *state) copyInode(n, d *inode, freeze bool, res *cloneResult) *inode {
	c := &inode{
		ino: s.nextIno, size: n.size, atime: n.atime, mtime: n.mtime, ctime: n.ctime,
		mode: n.mode, uid: n.uid, gid: n.gid, nlink: 1, rdev: n.rdev, typ: n.typ,
		pol: n.pol, target: n.target, xattrs: maps.Clone(n.xattrs),
		tenant: d.tenant, quota: d.quota,
	}
	s.nextIno++
	if freeze {
		c.flags = flagFrozen
	}
	if n.isDir() {
		c.nlink, c.children = 2, make(map[string]uint64, len(n.children))
	}
	if len(n.chunks) > 0 {
		c.chunks = make([]chunk, len(n.chunks))
		for i, ch := range n.chunks {
			ch.servers = slices.Clone(ch.servers)
			c.chunks[i] = ch
			s.addRef(ch)
		}
		res.refs += uint64(len(n.chunks))
	}
	var bytes int64
	if n.typ == stratapb.FileType_REGULAR {
		s.logical += n.size
		res.logical += n.size
		bytes = int64(n.size)
	}
	s.inodes[c.ino] = c
	s.charge(c.quota, 1, bytes)
	res.inodes++
	return c
}

// cloneTreeCmd is CloneTree: a copy into a writable directory.
func (s *state) cloneTreeCmd(now int64, r *stratapb.CloneTreeRequest) (*stratapb.CloneTreeResponse, error) {
	src, err := s.get(r.Src)
	if err != nil {
		return nil, err
	}
	d, err := s.freeName(r.DstParent, r.DstName)
	if err != nil {
		return nil, err
	}
	if src.isDir() && s.isAncestor(src.ino, d.ino) {
		return nil, errnof(syscall.EINVAL, "cannot copy directory %d into itself", src.ino)
	}
	if err := s.cloneRoom(src, d); err != nil {
		return nil, err
	}
	res := s.cloneTree(src, d, r.DstName, r.Freeze)
	touch(d, now)
	return &stratapb.CloneTreeResponse{Attr: res.root.attr(), Inodes: res.inodes, Chunks: res.refs}, nil
}

// treeRemoval is what a removal did.
type treeRemoval struct {
	inodes, freed uint64
}

// checkRemovable walks the tree at n before anything is removed: a tree
// holding snapshots (pinned) is refused, and one holding frozen inodes
// unless allowFrozen.
func (s *state) checkRemovable(n *inode, allowFrozen bool) error {
	var err error
	s.walkTree(n, func(x, _ *inode, _ string) bool {
		switch {
		case err != nil:
		case x.pinned():
			err = errnof(syscall.EPERM, "the tree holds snapshots (inode %d); delete them with the snapshot commands", x.ino)
		case x.frozen() && !allowFrozen:
			err = errnof(syscall.EPERM, "the tree holds frozen inode %d", x.ino)
		}
		return err == nil
	})
	return err
}

// removeTree removes entry name of d and everything below it (checked
// beforehand). A file also linked from outside the tree survives with one
// link less. Chunks whose last reference goes become garbage.
func (s *state) removeTree(d *inode, name string, now int64) treeRemoval {
	var res treeRemoval
	garbage := len(s.garbage)
	root := s.inodes[d.children[name]]
	var dirs []*inode
	s.walkTree(root, func(n, _ *inode, _ string) bool {
		if n.isDir() {
			dirs = append(dirs, n)
			return true
		}
		n.nlink--
		n.ctime = now // free stamps its garbage with ctime
		if n.nlink == 0 {
			s.free(n)
			res.inodes++
		}
		return true
	})
	for _, n := range dirs {
		n.nlink, n.children = 0, nil
		s.forget(n)
		res.inodes++
	}
	delete(d.children, name)
	if root.isDir() {
		d.nlink--
	}
	touch(d, now)
	res.freed = uint64(len(s.garbage) - garbage)
	return res
}

// removeTreeCmd is RemoveTree.
func (s *state) removeTreeCmd(now int64, r *stratapb.RemoveTreeRequest) (*stratapb.RemoveTreeResponse, error) {
	d, n, err := s.entry(r.Parent, r.Name)
	if err != nil {
		return nil, err
	}
	if err := writable(d); err != nil {
		return nil, err
	}
	if err := s.checkRemovable(n, r.AllowFrozen); err != nil {
		return nil, err
	}
	res := s.removeTree(d, r.Name, now)
	return &stratapb.RemoveTreeResponse{Inodes: res.inodes, FreedChunks: res.freed}, nil
}
