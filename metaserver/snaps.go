package metaserver

import (
	"slices"
	"strings"
	"syscall"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// Named snapshots. A snapshot is a frozen copy of a directory tree (made by
// cloneTree, chunks shared) kept at /.snapshots/NAME under the tenant's
// root, so that it can be read with every ordinary tool; the FSM keeps a
// table of them (source, time, size) for list, and pins the area and each
// snapshot's root so that only these commands move or remove them. Names
// are unique per tenant.

// SnapshotDir is the name of the snapshot area in each tenant's root.
const SnapshotDir = ".snapshots"

// snapKey names a snapshot: tenant and name.
type snapKey struct{ tenant, name string }

func tenantName(hdr *stratapb.RequestHeader) string {
	if t := hdr.GetTenant(); t != "" {
		return t
	}
	return defaultTenant
}

// tenantRoot is the root directory of the request's tenant.
func (s *state) tenantRoot(hdr *stratapb.RequestHeader) (*inode, error) {
	ino, ok := s.tenants[tenantName(hdr)]
	if !ok {
		return nil, errnof(syscall.ENOENT, "no such tenant")
	}
	return s.dir(ino)
}

// snapArea returns the tenant's snapshot area, or nil when none exists yet.
// A directory of that name that the user made is not the area: an error.
func (s *state) snapArea(root *inode) (*inode, error) {
	ino, ok := root.children[SnapshotDir]
	if !ok {
		return nil, nil
	}
	n, err := s.get(ino)
	if err != nil {
		return nil, err
	}
	if !n.pinned() || !n.isDir() {
		return nil, errnof(syscall.EEXIST, "/%s exists and is not the snapshot area; rename it to use snapshots", SnapshotDir)
	}
	return n, nil
}

// makeSnapArea adds the area to root: a pinned, frozen, empty directory.
func (s *state) makeSnapArea(root *inode, now int64) *inode {
	n := s.alloc(root, stratapb.FileType_DIRECTORY, 0o755, root.uid, root.gid, now)
	n.nlink, n.parent, n.pol, n.children = 2, root.ino, root.pol, make(map[string]uint64)
	n.flags = flagFrozen | flagPinned
	root.children[SnapshotDir] = n.ino
	root.nlink++
	touch(root, now)
	return n
}

// pathOf is the path of directory n from root ("/" for root itself), found
// through the parent pointers.
func (s *state) pathOf(n, root *inode) string {
	var parts []string
	for i := 0; n.ino != root.ino && i < 4096; i++ {
		p, ok := s.inodes[n.parent]
		if !ok || p.ino == n.ino {
			break
		}
		for name, ino := range p.children {
			if ino == n.ino {
				parts = append(parts, name)
				break
			}
		}
		n = p
	}
	slices.Reverse(parts)
	return "/" + strings.Join(parts, "/")
}

// createSnapshot copies directory r.Src to /.snapshots/NAME, frozen.
func (s *state) createSnapshot(now int64, r *stratapb.CreateSnapshotRequest) (*stratapb.CreateSnapshotResponse, error) {
	if err := checkName(r.Name); err != nil {
		return nil, err
	}
	root, err := s.tenantRoot(r.Header)
	if err != nil {
		return nil, err
	}
	key := snapKey{tenantName(r.Header), r.Name}
	if _, dup := s.snaps[key]; dup {
		return nil, errnof(syscall.EEXIST, "snapshot %q exists", r.Name)
	}
	src, err := s.dir(r.Src)
	if err != nil {
		return nil, err
	}
	if src.pinned() && !s.isTenantRoot(src) {
		return nil, errnof(syscall.EINVAL, "inode %d is a snapshot or the snapshot area", r.Src)
	}
	area, err := s.snapArea(root)
	if err != nil {
		return nil, err
	}
	// Check the room before anything changes (the area itself is one
	// more inode when it is made now).
	if err := s.cloneRoomPlus(src, root, area == nil); err != nil {
		return nil, err
	}
	if area == nil {
		area = s.makeSnapArea(root, now)
	} else if _, taken := area.children[r.Name]; taken {
		return nil, errnof(syscall.EEXIST, "/%s/%s exists", SnapshotDir, r.Name)
	}
	res := s.cloneTree(src, area, r.Name, true)
	res.root.flags |= flagPinned
	touch(area, now)
	info := &stratapb.SnapshotInfo{
		Name: r.Name, SourcePath: s.pathOf(src, root), SourceIno: src.ino, RootIno: res.root.ino,
		CreatedNs: now, Inodes: res.inodes, LogicalBytes: res.logical,
	}
	s.snaps[key] = info
	return &stratapb.CreateSnapshotResponse{Snapshot: info}, nil
}

// snapshot finds a snapshot of the request's tenant.
func (s *state) snapshot(hdr *stratapb.RequestHeader, name string) (*stratapb.SnapshotInfo, *inode, error) {
	if err := checkName(name); err != nil {
		return nil, nil, err
	}
	info, ok := s.snaps[snapKey{tenantName(hdr), name}]
	if !ok {
		return nil, nil, errnof(syscall.ENOENT, "no snapshot %q", name)
	}
	n, err := s.get(info.RootIno)
	if err != nil {
		return nil, nil, err
	}
	return info, n, nil
}

// deleteSnapshot removes a snapshot's tree; chunks nothing else holds
// become garbage.
func (s *state) deleteSnapshot(now int64, r *stratapb.DeleteSnapshotRequest) (*stratapb.DeleteSnapshotResponse, error) {
	_, n, err := s.snapshot(r.Header, r.Name)
	if err != nil {
		return nil, err
	}
	area, err := s.dir(n.parent)
	if err != nil {
		return nil, err
	}
	if area.children[r.Name] != n.ino {
		return nil, errnof(syscall.EIO, "snapshot %q is not at /%s/%s", r.Name, SnapshotDir, r.Name)
	}
	res := s.removeTree(area, r.Name, now)
	delete(s.snaps, snapKey{tenantName(r.Header), r.Name})
	return &stratapb.DeleteSnapshotResponse{Inodes: res.inodes, FreedChunks: res.freed}, nil
}

// restoreSnapshot makes a writable copy of a snapshot at a new name.
func (s *state) restoreSnapshot(now int64, r *stratapb.RestoreSnapshotRequest) (*stratapb.RestoreSnapshotResponse, error) {
	_, n, err := s.snapshot(r.Header, r.Name)
	if err != nil {
		return nil, err
	}
	d, err := s.freeName(r.DstParent, r.DstName)
	if err != nil {
		return nil, err
	}
	if d.pinned() {
		return nil, errnof(syscall.EPERM, "cannot restore into the snapshot area")
	}
	if err := s.cloneRoom(n, d); err != nil {
		return nil, err
	}
	res := s.cloneTree(n, d, r.DstName, false)
	touch(d, now)
	return &stratapb.RestoreSnapshotResponse{Attr: res.root.attr()}, nil
}

// listSnapshots lists the tenant's snapshots, oldest first, optionally
// only those of one source directory.
func (s *state) listSnapshots(r *stratapb.ListSnapshotsRequest) *stratapb.ListSnapshotsResponse {
	t := tenantName(r.Header)
	resp := &stratapb.ListSnapshotsResponse{}
	for k, info := range s.snaps {
		if k.tenant == t && (r.SourceIno == 0 || info.SourceIno == r.SourceIno) {
			resp.Snapshots = append(resp.Snapshots, info)
		}
	}
	slices.SortFunc(resp.Snapshots, func(a, b *stratapb.SnapshotInfo) int {
		if a.CreatedNs != b.CreatedNs {
			return cmpI64(a.CreatedNs, b.CreatedNs)
		}
		return strings.Compare(a.Name, b.Name)
	})
	return resp
}

func cmpI64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
