package metaserver

import (
	"fmt"
	"slices"
	"syscall"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// Quotas, in the manner of XFS project quotas. A quota covers a directory
// tree: every inode carries the id of the innermost quota it lies in
// (inode.quota, inherited from the parent directory at creation), and
// quotas nest through their parent: a tenant's quota covers its root, a
// directory quota inside it names the tenant's as parent. A change is
// charged to the inode's quota and every enclosing one, and refused with
// EDQUOT when one of them has no room. All of it runs in Apply, so usage
// is the same on every voter; on restore it is recomputed from the
// inodes, never read from the snapshot, so it cannot drift.
//
// What counts: bytes are the logical sizes of regular files (st_size, a
// hard-linked file once); files are inodes of every type. Copies made by
// CloneTree, snapshots and images under a quota count in full there (a
// copy is a tree of inodes with sizes, whatever chunks it shares). A
// rename or hard link across quota boundaries fails with EXDEV, as on XFS,
// so usage never has to be moved (mv falls back to copy and delete).

type quotaNode struct {
	id, parent   uint32
	root         uint64
	tenant       uint32
	maxBytes     uint64
	maxFiles     uint64
	bytes, files uint64
}

func (s *state) newQuota(parent uint32, root uint64, tenant uint32) *quotaNode {
	q := &quotaNode{id: s.ten.nextQuota, parent: parent, root: root, tenant: tenant}
	s.ten.nextQuota++
	s.ten.quotas[q.id] = q
	return q
}

// chain calls fn for quota q and every enclosing one (bounded, so that a
// corrupt chain cannot hang Apply).
func (s *state) chain(q uint32, fn func(*quotaNode)) {
	for i := 0; q != 0 && i < 64; i++ {
		n, ok := s.ten.quotas[q]
		if !ok {
			return
		}
		fn(n)
		q = n.parent
	}
}

// charge adds files and bytes (either may be negative) to quota q and the
// ones enclosing it.
func (s *state) charge(q uint32, files, bytes int64) {
	s.chain(q, func(n *quotaNode) {
		n.files = addClamped(n.files, files)
		n.bytes = addClamped(n.bytes, bytes)
	})
}

func addClamped(v uint64, d int64) uint64 {
	if d < 0 && uint64(-d) > v {
		return 0
	}
	return uint64(int64(v) + d)
}

// quotaRoom refuses, with EDQUOT, a change that would take quota q or an
// enclosing one past its limit. Shrinking is always allowed.
func (s *state) quotaRoom(q uint32, files, bytes uint64) error {
	var err error
	s.chain(q, func(n *quotaNode) {
		switch {
		case err != nil:
		case n.maxFiles > 0 && files > 0 && n.files+files > n.maxFiles:
			err = errnof(syscall.EDQUOT, "quota exceeded: %s allows %d files, %d in use", s.quotaName(n), n.maxFiles, n.files)
		case n.maxBytes > 0 && bytes > 0 && n.bytes+bytes > n.maxBytes:
			err = errnof(syscall.EDQUOT, "quota exceeded: %s allows %d bytes, %d in use, %d more asked", s.quotaName(n), n.maxBytes, n.bytes, bytes)
		}
	})
	return err
}

// quotaRoomMany is quotaRoom for changes to several quotas at once (an
// import batch): what each adds is summed on every enclosing quota before
// any limit is checked.
func (s *state) quotaRoomMany(cost map[uint32][2]uint64) error {
	sum := map[*quotaNode][2]uint64{}
	for q, c := range cost {
		s.chain(q, func(n *quotaNode) {
			t := sum[n]
			t[0] += c[0]
			t[1] += c[1]
			sum[n] = t
		})
	}
	for n, t := range sum {
		switch {
		case n.maxFiles > 0 && t[0] > 0 && n.files+t[0] > n.maxFiles:
			return errnof(syscall.EDQUOT, "quota exceeded: %s allows %d files, %d in use, %d more asked", s.quotaName(n), n.maxFiles, n.files, t[0])
		case n.maxBytes > 0 && t[1] > 0 && n.bytes+t[1] > n.maxBytes:
			return errnof(syscall.EDQUOT, "quota exceeded: %s allows %d bytes, %d in use, %d more asked", s.quotaName(n), n.maxBytes, n.bytes, t[1])
		}
	}
	return nil
}

func (s *state) quotaName(n *quotaNode) string {
	if rec, ok := s.ten.byID[n.tenant]; ok && rec.quota == n.id {
		return fmt.Sprintf("tenant %q", rec.name)
	}
	return fmt.Sprintf("the directory quota of inode %d", n.root)
}

// isQuotaRoot reports whether n is the directory a quota covers.
func (s *state) isQuotaRoot(n *inode) bool {
	q, ok := s.ten.quotas[n.quota]
	return ok && q.root == n.ino
}

// outerQuota is the quota whose usage holds n as seen from its parent:
// its own, unless n is a quota's directory, whose parent quota holds it.
func (s *state) outerQuota(n *inode) uint32 {
	if s.isQuotaRoot(n) {
		return s.ten.quotas[n.quota].parent
	}
	return n.quota
}

// crossesBoundary refuses (EXDEV) moving or linking n into directory d
// when that crosses a quota or tenant boundary.
func (s *state) crossesBoundary(n, d *inode) error {
	if n.tenant != d.tenant || s.outerQuota(n) != d.quota {
		return errnof(syscall.EXDEV, "inode %d and directory %d lie under different quotas", n.ino, d.ino)
	}
	return nil
}

// treeCost is what copying the tree at src would add: inodes and bytes,
// counted as cloneTree copies them (hard links once, pinned entries
// below the top left out).
func (s *state) treeCost(src *inode) (files, bytes uint64) {
	seen := map[uint64]bool{}
	s.walkTree(src, func(n, parent *inode, _ string) bool {
		if parent != nil && n.pinned() || seen[n.ino] {
			return false
		}
		seen[n.ino] = true
		files++
		if n.typ == stratapb.FileType_REGULAR {
			bytes += n.size
		}
		return true
	})
	return files, bytes
}

// cloneRoom checks that copying src into d fits d's quotas.
func (s *state) cloneRoom(src, d *inode) error { return s.cloneRoomPlus(src, d, false) }

// cloneRoomPlus is cloneRoom with one more directory to make first.
func (s *state) cloneRoomPlus(src, d *inode, extraDir bool) error {
	if d.quota == 0 {
		return nil
	}
	files, bytes := s.treeCost(src)
	if extraDir {
		files++
	}
	return s.quotaRoom(d.quota, files, bytes)
}

// setQuota sets the limits of a tenant or of a directory tree.
func (s *state) setQuota(_ int64, r *stratapb.SetQuotaRequest) (*stratapb.SetQuotaResponse, error) {
	caller := s.tenantID(r.Header)
	var q *quotaNode
	switch {
	case r.Tenant != "" && r.Ino != 0:
		return nil, errnof(syscall.EINVAL, "a quota is of a tenant or of a directory, not both")
	case r.Tenant != "":
		if caller != 0 {
			return nil, errnof(syscall.EPERM, "only the administrator sets a tenant's quota")
		}
		rec, ok := s.ten.byName[r.Tenant]
		if !ok {
			return nil, errnof(syscall.ENOENT, "no tenant %q", r.Tenant)
		}
		q = s.ten.quotas[rec.quota]
	default:
		d, err := s.dir(r.Ino)
		if err != nil {
			return nil, err
		}
		if d.pinned() || d.frozen() {
			return nil, errnof(syscall.EPERM, "directory %d is a snapshot, an image or a tenant area", r.Ino)
		}
		if s.isQuotaRoot(d) {
			q = s.ten.quotas[d.quota]
		} else {
			q = s.newDirQuota(d)
		}
	}
	if q == nil {
		return nil, errnof(syscall.ENOENT, "quota not found")
	}
	q.maxBytes, q.maxFiles = r.MaxBytes, r.MaxFiles
	root := s.inodes[rootIno]
	if rec, ok := s.ten.byID[caller]; ok {
		root = s.inodes[rec.root]
	}
	return &stratapb.SetQuotaResponse{Quota: s.quotaInfo(q, root)}, nil
}

// newDirQuota makes a quota for directory d: the inodes of its tree that
// were charged to d's quota move to the new one, and quotas nested in the
// tree get it as parent. Usage is then recomputed from scratch (a quota
// is set rarely; O(inodes) once).
func (s *state) newDirQuota(d *inode) *quotaNode {
	outer := d.quota
	q := s.newQuota(outer, d.ino, d.tenant)
	s.walkTree(d, func(n, _ *inode, _ string) bool {
		if n.quota == outer {
			n.quota = q.id
		}
		return true
	})
	for _, o := range s.ten.quotas {
		if o.id != q.id && o.parent == outer && o.root != d.ino && s.isAncestor(d.ino, o.root) {
			o.parent = q.id
		}
	}
	s.recomputeQuotaUsage()
	return q
}

// recomputeQuotaUsage sets every quota's usage from the inodes.
func (s *state) recomputeQuotaUsage() {
	for _, q := range s.ten.quotas {
		q.bytes, q.files = 0, 0
	}
	for _, n := range s.inodes {
		if n.quota == 0 {
			continue
		}
		var b int64
		if n.typ == stratapb.FileType_REGULAR {
			b = int64(n.size)
		}
		s.charge(n.quota, 1, b)
	}
}

func (s *state) quotaInfo(q *quotaNode, root *inode) *stratapb.Quota {
	out := &stratapb.Quota{
		Id: q.id, Ino: q.root, MaxBytes: q.maxBytes, MaxFiles: q.maxFiles,
		UsedBytes: q.bytes, UsedFiles: q.files,
	}
	if rec, ok := s.ten.byID[q.tenant]; ok {
		out.Tenant = rec.name
		out.TenantQuota = rec.quota == q.id
	}
	if n, ok := s.inodes[q.root]; ok && root != nil {
		out.Path = s.pathOf(n, root)
	}
	return out
}

// listQuotas lists the quotas the caller may see: a tenant its own, the
// administrator all; paths as the caller sees them.
func (s *state) listQuotas(hdr *stratapb.RequestHeader) *stratapb.ListQuotasResponse {
	caller := s.tenantID(hdr)
	root := s.inodes[rootIno]
	if rec, ok := s.ten.byID[caller]; ok {
		root = s.inodes[rec.root]
	}
	resp := &stratapb.ListQuotasResponse{}
	for _, q := range s.ten.quotas {
		if caller == 0 || q.tenant == caller {
			resp.Quotas = append(resp.Quotas, s.quotaInfo(q, root))
		}
	}
	slices.SortFunc(resp.Quotas, func(a, b *stratapb.Quota) int { return int(a.Id) - int(b.Id) })
	return resp
}
