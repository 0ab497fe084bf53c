package metaserver

import (
	"context"
	"strings"
	"syscall"

	"google.golang.org/protobuf/proto"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// The batched import command (imgperf range 80-87): many entries of an
// image being imported, with attributes, extended attributes and chunks,
// made in one raft entry. An import of small files was bound by metadata
// commits (a create, a chunk commit, a set-attributes and one command per
// xattr for every file); a batch of a thousand entries costs one. The
// batch is checked whole before anything changes, so it applies entirely
// or not at all, and a retry with the same request id gets the first
// answer from the dedup table (nothing is made twice).

// CmdImportBatch creates the entries of an ImportBatchRequest.
const CmdImportBatch CommandType = 80

const (
	// maxImportEntries bounds the entries of one batch, and
	// maxImportBatchBytes its encoded size: a raft entry is replicated and
	// fsynced whole, and a big one stalls the log for everyone.
	maxImportEntries    = 4096
	maxImportBatchBytes = 4 << 20
)

func init() {
	registerCommand(CmdImportBatch, "import-batch", newMsg[stratapb.ImportBatchRequest], newMsg[stratapb.ImportBatchResponse], (*state).importBatch)
}

// importService serves the Import gRPC service (proto/stratapb/imgperf.proto).
type importService struct {
	stratapb.UnimplementedImportServer
	s *Server
}

func (x *importService) ImportBatch(ctx context.Context, r *stratapb.ImportBatchRequest) (*stratapb.ImportBatchResponse, error) {
	if err := checkImportSize(r); err != nil {
		return nil, toStatus(err)
	}
	return mutate[*stratapb.ImportBatchResponse](ctx, x.s, CmdImportBatch, r.Header, r)
}

func checkImportSize(r *stratapb.ImportBatchRequest) error {
	switch {
	case len(r.Entries) == 0:
		return errnof(syscall.EINVAL, "import batch without entries")
	case len(r.Entries) > maxImportEntries:
		return errnof(syscall.E2BIG, "import batch of %d entries exceeds %d", len(r.Entries), maxImportEntries)
	case proto.Size(r) > maxImportBatchBytes:
		return errnof(syscall.E2BIG, "import batch of %d bytes exceeds %d", proto.Size(r), maxImportBatchBytes)
	}
	return nil
}

// importCheck is what the check of a batch knows of the entries before
// the current one.
type importCheck struct {
	pols   map[int]policy       // batch directories: their policy
	dirs   map[int]*inode       // batch directories: tenant and quota they inherit
	cost   map[uint32][2]uint64 // files and bytes the batch adds, by quota
	kinds  []stratapb.FileType
	names  map[importName]bool
	newIDs map[uint64]bool
	hashed map[contentHash]uint64 // content chunks new in this batch
}

// importName is a name the batch makes: in an existing directory (ino) or
// in one the batch makes (index+1).
type importName struct {
	ino   uint64
	index uint32
	name  string
}

func (s *state) importBatch(now int64, r *stratapb.ImportBatchRequest) (*stratapb.ImportBatchResponse, error) {
	if err := checkImportSize(r); err != nil {
		return nil, err
	}
	ic := &importCheck{
		pols: map[int]policy{}, dirs: map[int]*inode{}, cost: map[uint32][2]uint64{}, names: map[importName]bool{},
		newIDs: map[uint64]bool{}, hashed: map[contentHash]uint64{},
	}
	for i, e := range r.Entries {
		if err := s.checkImportEntry(ic, i, e); err != nil {
			return nil, errnof(errnoCode(err), "import entry %d (%q): %v", i, e.Name, err)
		}
		kind := e.Type
		if e.SetAttrIno != 0 {
			kind = stratapb.FileType_DIRECTORY // not a link target
		}
		ic.kinds = append(ic.kinds, kind)
	}
	if err := s.quotaRoomMany(ic.cost); err != nil {
		return nil, err
	}
	resp := &stratapb.ImportBatchResponse{Inos: make([]uint64, len(r.Entries))}
	for i, e := range r.Entries {
		resp.Inos[i] = s.applyImportEntry(now, e, resp.Inos)
	}
	return resp, nil
}

// errnoCode is the errno an error of the namespace carries (EINVAL for
// any other).
func errnoCode(err error) syscall.Errno {
	if e, ok := errnoOf(err); ok {
		return e.errno
	}
	return syscall.EINVAL
}

func (s *state) checkImportEntry(ic *importCheck, i int, e *stratapb.ImportEntry) error {
	if err := checkImportXattrs(e.Xattrs); err != nil {
		return err
	}
	if e.SetAttrIno != 0 {
		if e.Type != 0 || e.Name != "" || e.LinkIno != 0 || e.LinkIndex != 0 || len(e.Chunks) > 0 {
			return errnof(syscall.EINVAL, "an attributes entry carries only attributes")
		}
		n, err := s.get(e.SetAttrIno)
		if err != nil {
			return err
		}
		return writable(n)
	}
	pol, d, err := s.checkImportName(ic, i, e)
	if err != nil {
		return err
	}
	ic.chargeImport(d, e)
	switch e.Type {
	case 0:
		return s.checkImportLink(ic, i, e)
	case stratapb.FileType_DIRECTORY:
		ic.pols[i] = pol
		ic.dirs[i] = &inode{tenant: d.tenant, quota: d.quota}
	case stratapb.FileType_REGULAR:
		return s.checkImportChunks(ic, pol, d, e)
	case stratapb.FileType_SYMLINK:
		if e.SymlinkTarget == "" || len(e.SymlinkTarget) > MaxSymlinkLen || strings.ContainsRune(e.SymlinkTarget, 0) {
			return errnof(syscall.EINVAL, "symlink target must be 1..%d bytes without NUL", MaxSymlinkLen)
		}
	case stratapb.FileType_CHARDEV, stratapb.FileType_BLOCKDEV:
	case stratapb.FileType_FIFO, stratapb.FileType_SOCKET:
		if e.Rdev != 0 {
			return errnof(syscall.EINVAL, "a %v has no device number", e.Type)
		}
	default:
		return errnof(syscall.EINVAL, "unknown file type %v", e.Type)
	}
	if e.Type != stratapb.FileType_REGULAR && (e.Size != 0 || len(e.Chunks) > 0) {
		return errnof(syscall.EINVAL, "a %v has no data", e.Type)
	}
	return nil
}

// checkImportName checks that the entry's name is free in its directory
// (an existing one, or one made earlier in the batch) and returns the
// directory's policy, which a new inode inherits.
func (s *state) checkImportName(ic *importCheck, i int, e *stratapb.ImportEntry) (policy, *inode, error) {
	if err := checkName(e.Name); err != nil {
		return policy{}, nil, err
	}
	key := importName{name: e.Name}
	var pol policy
	var parent *inode
	if e.ParentIndex > 0 {
		p := int(e.ParentIndex) - 1
		dp, ok := ic.pols[p]
		if p >= i || !ok {
			return policy{}, nil, errnof(syscall.EINVAL, "parent entry %d is not an earlier directory of the batch", p)
		}
		key.index, pol, parent = e.ParentIndex, dp, ic.dirs[p]
	} else {
		d, err := s.freeName(e.Parent, e.Name)
		if err != nil {
			return policy{}, nil, err
		}
		key.ino, pol, parent = d.ino, d.pol, d
	}
	if ic.names[key] {
		return policy{}, nil, errnof(syscall.EEXIST, "%q twice in one directory of the batch", e.Name)
	}
	ic.names[key] = true
	return pol, parent, nil
}

// chargeImport adds what entry e costs to the batch's quota total: a new
// inode (not a hard link) and a regular file's size.
func (ic *importCheck) chargeImport(d *inode, e *stratapb.ImportEntry) {
	if e.Type == 0 || d.quota == 0 {
		return
	}
	c := ic.cost[d.quota]
	c[0]++
	if e.Type == stratapb.FileType_REGULAR {
		c[1] += e.Size
	}
	ic.cost[d.quota] = c
}

func (s *state) checkImportLink(ic *importCheck, i int, e *stratapb.ImportEntry) error {
	if len(e.Chunks) > 0 || e.Size != 0 || len(e.Xattrs) > 0 {
		return errnof(syscall.EINVAL, "a hard link carries no data or attributes")
	}
	if e.LinkIndex > 0 {
		t := int(e.LinkIndex) - 1
		if t >= i {
			return errnof(syscall.EINVAL, "link target entry %d is not an earlier entry", t)
		}
		if ic.kinds[t] == stratapb.FileType_DIRECTORY {
			return errnof(syscall.EPERM, "link target entry %d is not a file", t)
		}
		return nil
	}
	n, err := s.get(e.LinkIno)
	switch {
	case err != nil:
		return err
	case n.isDir():
		return errnof(syscall.EPERM, "cannot hard-link directory %d", e.LinkIno)
	case n.nlink == 0:
		return errnof(syscall.ENOENT, "inode %d was removed", e.LinkIno)
	}
	return writable(n)
}

// checkImportChunks checks a regular file's chunks as a commit to a new
// file of policy pol would be; content chunks new in the batch may be
// shared by later entries, and no new chunk id may come twice.
func (s *state) checkImportChunks(ic *importCheck, pol policy, d *inode, e *stratapb.ImportEntry) error {
	if e.Size > MaxFileSize {
		return errnof(syscall.EFBIG, "size %d exceeds the maximum file size", e.Size)
	}
	// The new file belongs to the directory's tenant: it may commit only
	// that tenant's pending ids and share only its contents.
	tmp := &inode{typ: stratapb.FileType_REGULAR, pol: pol, tenant: d.tenant, quota: d.quota}
	cv := &commitCheck{newHashed: ic.hashed, indexes: map[uint64]bool{}}
	for _, cc := range e.Chunks {
		if cc.GetCheckExpected() {
			return errnof(syscall.EINVAL, "an imported chunk has no expected predecessor")
		}
		if err := s.checkCommit(tmp, cc, cv); err != nil {
			return err
		}
		if cc.Shared {
			continue
		}
		if ic.newIDs[cc.Chunk.Id] || s.refs[cc.Chunk.Id] > 0 {
			return errnof(syscall.EINVAL, "chunk %d is committed twice", cc.Chunk.Id)
		}
		ic.newIDs[cc.Chunk.Id] = true
	}
	return nil
}

func checkImportXattrs(x map[string][]byte) error {
	total := 0
	for k, v := range x {
		switch {
		case k == "" || len(k) > MaxXattrName:
			return errnof(syscall.ERANGE, "xattr name must be 1..%d bytes", MaxXattrName)
		case len(v) > MaxXattrValue:
			return errnof(syscall.E2BIG, "xattr value of %d bytes exceeds %d", len(v), MaxXattrValue)
		}
		total += len(k) + len(v)
	}
	if total > maxXattrsTotal {
		return errnof(syscall.ENOSPC, "xattrs would exceed %d bytes", maxXattrsTotal)
	}
	return nil
}

// applyImportEntry makes one checked entry and returns its inode number.
// Owner, mode and times are the entry's exactly (no umask, no setgid
// inheritance): an image keeps what its source says.
func (s *state) applyImportEntry(now int64, e *stratapb.ImportEntry, inos []uint64) uint64 {
	if e.SetAttrIno != 0 {
		n := s.inodes[e.SetAttrIno]
		setImportAttrs(n, e, now)
		return n.ino
	}
	parent := e.Parent
	if e.ParentIndex > 0 {
		parent = inos[e.ParentIndex-1]
	}
	d := s.inodes[parent]
	if e.Type == 0 {
		target := e.LinkIno
		if e.LinkIndex > 0 {
			target = inos[e.LinkIndex-1]
		}
		n := s.inodes[target]
		d.children[e.Name] = n.ino
		n.nlink++
		n.ctime = now
		touch(d, now)
		return n.ino
	}
	n := s.alloc(d, e.Type, e.Mode, e.Uid, e.Gid, now)
	n.pol = d.pol
	switch e.Type {
	case stratapb.FileType_DIRECTORY:
		n.nlink, n.parent, n.children = 2, d.ino, make(map[string]uint64)
		d.nlink++
	case stratapb.FileType_SYMLINK:
		n.mode, n.target, n.size = 0o777, e.SymlinkTarget, uint64(len(e.SymlinkTarget))
	case stratapb.FileType_REGULAR:
		for _, cc := range e.Chunks {
			s.applyCommit(n, cc, now)
		}
		n.size = e.Size
		s.logical += e.Size
		s.charge(n.quota, 0, int64(e.Size))
	default:
		n.rdev = e.Rdev
	}
	d.children[e.Name] = n.ino
	touch(d, now)
	setImportAttrs(n, e, now)
	return n.ino
}

func setImportAttrs(n *inode, e *stratapb.ImportEntry, now int64) {
	if n.typ != stratapb.FileType_SYMLINK {
		n.mode = e.Mode & 0o7777
	}
	n.uid, n.gid = e.Uid, e.Gid
	n.atime, n.mtime, n.ctime = e.MtimeNs, e.MtimeNs, now
	if len(e.Xattrs) > 0 {
		n.xattrs = make(map[string][]byte, len(e.Xattrs))
		for k, v := range e.Xattrs {
			n.xattrs[k] = append([]byte(nil), v...)
		}
	}
}
