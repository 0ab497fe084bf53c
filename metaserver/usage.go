package metaserver

import (
	"syscall"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// Special files and space accounting.

// mknod creates a device, FIFO or socket.
func (s *state) mknod(now int64, r *stratapb.MknodRequest) (*stratapb.MknodResponse, error) {
	switch r.Type {
	case stratapb.FileType_CHARDEV, stratapb.FileType_BLOCKDEV:
	case stratapb.FileType_FIFO, stratapb.FileType_SOCKET:
		if r.Rdev != 0 {
			return nil, errnof(syscall.EINVAL, "a %v has no device number", r.Type)
		}
	default:
		return nil, errnof(syscall.EINVAL, "mknod makes devices, FIFOs and sockets, not %v", r.Type)
	}
	d, err := s.freeName(r.Parent, r.Name)
	if err != nil {
		return nil, err
	}
	if err := s.quotaRoom(d.quota, 1, 0); err != nil {
		return nil, err
	}
	n := s.alloc(d, r.Type, r.Mode, r.Uid, r.Gid, now)
	n.rdev, n.pol = r.Rdev, d.pol
	d.children[r.Name] = n.ino
	touch(d, now)
	return &stratapb.MknodResponse{Attr: n.attr()}, nil
}

// usageOf adds up the tree at root: every inode once (hard links too),
// every distinct chunk once. It runs under the read lock and walks the
// whole tree: a du, not a counter.
func (s *state) usageOf(root *inode, name string) *stratapb.Usage {
	u := &stratapb.Usage{Name: name, Ino: root.ino}
	seen := map[uint64]bool{}
	chunks := map[uint64]uint32{} // references from inside the tree
	layout := map[uint64]*chunk{}
	s.walkTree(root, func(n, _ *inode, _ string) bool {
		if seen[n.ino] {
			return false
		}
		seen[n.ino] = true
		u.Inodes++
		if n.typ != stratapb.FileType_REGULAR {
			return true
		}
		u.LogicalBytes += n.size
		for i := range n.chunks {
			c := &n.chunks[i]
			u.ChunkRefs++
			if chunks[c.id] == 0 {
				u.StoredBytes += storedBytes(c)
				layout[c.id] = c
			}
			chunks[c.id]++
		}
		return true
	})
	u.Chunks = uint64(len(chunks))
	for id, n := range chunks {
		if s.refs[id] > n {
			u.SharedBytes += storedBytes(layout[id])
		}
	}
	return u
}

// usage answers Usage for the request's tenant.
func (s *state) usage(r *stratapb.UsageRequest) (*stratapb.UsageResponse, error) {
	root, err := s.tenantRoot(r.Header)
	if err != nil {
		return nil, err
	}
	resp := &stratapb.UsageResponse{Total: s.usageOf(root, "")}
	if r.PerDir {
		for _, name := range sortedNames(root.children) {
			if n, ok := s.inodes[root.children[name]]; ok {
				resp.Dirs = append(resp.Dirs, s.usageOf(n, name))
			}
		}
	}
	return resp, nil
}
