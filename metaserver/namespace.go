package metaserver

import (
	"sort"
	"strings"
	"syscall"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// Limits of the namespace. Names and paths follow Linux (NAME_MAX,
// PATH_MAX); the file size limit keeps chunk arithmetic far from overflow.
const (
	MaxNameLen     = 255
	MaxSymlinkLen  = 4095
	MaxFileSize    = 1 << 50 // 1 PiB
	MaxXattrName   = 255
	MaxXattrValue  = 64 << 10
	maxXattrsTotal = 1 << 20
	maxReadDir     = 4096
	defaultReadDir = 1024
	maxShards      = 32
	rootIno        = 1
	defaultTenant  = "default"
)

// shardRef names one shard of one chunk.
type shardRef struct {
	chunk uint64
	index uint32
}

type badShard struct {
	server uint32
	reason string
}

// garbageChunk is a chunk that no file references any more; its shards are
// deleted from the dataservers by the leader.
type garbageChunk struct {
	id      uint64
	servers []uint32
	at      int64 // when it became garbage (leader time, ns)
}

type dataServer struct {
	id     uint32
	uuid   string
	addr   string
	labels map[string]string
}

// state is everything the FSM holds. Every method that changes it is called
// from Apply only, with the FSM lock held, and must be deterministic: time
// comes from the command (stamped by the leader), never from the clock.
type state struct {
	inodes     map[uint64]*inode
	nextIno    uint64
	nextChunk  uint64
	nextServer uint32
	tenants    map[string]uint64
	servers    map[uint32]*dataServer
	byUUID     map[string]uint32
	members    map[string]string // raft server id -> gRPC address
	badShards  map[shardRef]badShard
	garbage    []garbageChunk
	dedup      *dedupTable
	defPolicy  policy
	logical    uint64 // sum of file sizes
	// refs counts the references (chunk-list entries of inodes) to every
	// live chunk; a chunk becomes garbage when its count drops to zero.
	refs   map[uint64]uint32
	stored uint64 // bytes of all shards of live chunks
	// content-addressed chunks: hash -> the chunk (its layout; index 0),
	// and back.
	byHash map[contentHash]*chunk
	hashOf map[uint64]contentHash
	// snaps are the named snapshots, by tenant and name.
	snaps map[snapKey]*stratapb.SnapshotInfo
	heal  healState
	locks lockTable
	// capKeys are the shard capability keys, oldest first (caps.go);
	// entries are never changed in place.
	capKeys []*stratapb.CapabilityKey
	ten     tenancy // tenants and quotas (tenants.go, quota.go)
}

func newState(def policy) *state {
	s := &state{
		inodes:     make(map[uint64]*inode),
		nextIno:    rootIno + 1,
		nextChunk:  1,
		nextServer: 1,
		tenants:    map[string]uint64{defaultTenant: rootIno},
		servers:    make(map[uint32]*dataServer),
		byUUID:     make(map[string]uint32),
		members:    make(map[string]string),
		badShards:  make(map[shardRef]badShard),
		dedup:      newDedupTable(defaultDedupEntries, defaultDedupAge),
		defPolicy:  def,
		refs:       make(map[uint64]uint32),
		byHash:     make(map[contentHash]*chunk),
		hashOf:     make(map[uint64]contentHash),
		snaps:      make(map[snapKey]*stratapb.SnapshotInfo),
		heal:       newHealState(),
		locks:      newLockTable(),
		ten:        newTenancy(),
	}
	s.inodes[rootIno] = &inode{
		ino: rootIno, parent: rootIno, typ: stratapb.FileType_DIRECTORY, mode: 0o755,
		nlink: 2, pol: def, children: make(map[string]uint64),
	}
	return s
}

// checkTenant refuses a request for a tenant that does not exist, so that
// a misconfigured client never lands in another tenant's tree. Every tenant
// answers with the same error, as a missing object would.
func (s *state) checkTenant(hdr *stratapb.RequestHeader) error {
	t := hdr.GetTenant()
	if t == "" {
		return nil
	}
	if _, ok := s.tenants[t]; !ok {
		return errnof(syscall.ENOENT, "no such tenant")
	}
	return nil
}

// checkName enforces the rules for one path component.
func checkName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return errnof(syscall.EINVAL, "invalid name %q", name)
	case len(name) > MaxNameLen:
		return errnof(syscall.ENAMETOOLONG, "name of %d bytes exceeds %d", len(name), MaxNameLen)
	case strings.ContainsAny(name, "/\x00"):
		return errnof(syscall.EINVAL, "name %q contains '/' or NUL", name)
	}
	return nil
}

func (s *state) get(ino uint64) (*inode, error) {
	n, ok := s.inodes[ino]
	if !ok {
		return nil, errnof(syscall.ENOENT, "inode %d not found", ino)
	}
	return n, nil
}

func (s *state) dir(ino uint64) (*inode, error) {
	n, err := s.get(ino)
	if err != nil {
		return nil, err
	}
	if !n.isDir() {
		return nil, errnof(syscall.ENOTDIR, "inode %d is not a directory", ino)
	}
	return n, nil
}

// entry resolves parent/name to the child inode.
func (s *state) entry(parent uint64, name string) (*inode, *inode, error) {
	if err := checkName(name); err != nil {
		return nil, nil, err
	}
	d, err := s.dir(parent)
	if err != nil {
		return nil, nil, err
	}
	ino, ok := d.children[name]
	if !ok {
		return d, nil, errnof(syscall.ENOENT, "%q not found in directory %d", name, parent)
	}
	n, err := s.get(ino)
	return d, n, err
}

// newChild makes a free name in parent for a new inode, or says why not.
func (s *state) freeName(parent uint64, name string) (*inode, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	d, err := s.dir(parent)
	if err != nil {
		return nil, err
	}
	if d.nlink == 0 {
		return nil, errnof(syscall.ENOENT, "directory %d was removed", parent)
	}
	if err := writable(d); err != nil {
		return nil, err
	}
	if _, ok := d.children[name]; ok {
		return nil, errnof(syscall.EEXIST, "%q exists in directory %d", name, parent)
	}
	return d, nil
}

// alloc makes a new inode for directory d: it belongs to d's tenant and
// is charged to d's quota (the caller checked the room).
func (s *state) alloc(d *inode, typ stratapb.FileType, mode, uid, gid uint32, now int64) *inode {
	n := &inode{
		ino: s.nextIno, typ: typ, mode: mode & 0o7777, uid: uid, gid: gid,
		nlink: 1, atime: now, mtime: now, ctime: now, tenant: d.tenant, quota: d.quota,
	}
	s.nextIno++
	s.inodes[n.ino] = n
	s.charge(n.quota, 1, 0)
	return n
}

// inheritGroup applies setgid-directory semantics (as Linux does): a new
// entry in a directory with the set-group-ID bit belongs to the
// directory's group rather than the creator's, and a new subdirectory
// inherits the bit. (Linux also clears S_ISGID on a new file whose
// creator is not in that group; the FSM does not know group membership,
// so the mode is kept as the kernel passed it.)
func inheritGroup(d *inode, dir bool, mode, gid uint32) (uint32, uint32) {
	if d.mode&syscall.S_ISGID == 0 {
		return mode, gid
	}
	if dir {
		mode |= syscall.S_ISGID
	}
	return mode, d.gid
}

func touch(d *inode, now int64) { d.mtime, d.ctime = now, now }

// effectivePolicy is the policy a new child of d gets: the request's when
// given (and valid), else the directory's.
func (s *state) effectivePolicy(d *inode, p *stratapb.StripePolicy) (policy, error) {
	if p == nil {
		return d.pol, nil
	}
	if err := validatePolicy(p); err != nil {
		return policy{}, err
	}
	return policyFromProto(p), nil
}

func validatePolicy(p *stratapb.StripePolicy) error {
	switch {
	case p.DataShards < 1 || p.ParityShards > 16 || p.DataShards+p.ParityShards > maxShards:
		return errnof(syscall.EINVAL, "stripe %d+%d out of range (k>=1, m<=16, k+m<=%d)", p.DataShards, p.ParityShards, maxShards)
	case p.ChunkSize < 4096 || p.ChunkSize > 64<<20 || p.ChunkSize%4096 != 0:
		return errnof(syscall.EINVAL, "chunk size %d must be a multiple of 4096 between 4 KiB and 64 MiB", p.ChunkSize)
	case p.SmallThreshold > p.ChunkSize:
		return errnof(syscall.EINVAL, "small-file threshold %d exceeds chunk size %d", p.SmallThreshold, p.ChunkSize)
	}
	return nil
}

func (s *state) mkdir(now int64, r *stratapb.MkdirRequest) (*stratapb.MkdirResponse, error) {
	d, err := s.freeName(r.Parent, r.Name)
	if err != nil {
		return nil, err
	}
	pol, err := s.effectivePolicy(d, r.Policy)
	if err != nil {
		return nil, err
	}
	if err := s.quotaRoom(d.quota, 1, 0); err != nil {
		return nil, err
	}
	mode, gid := inheritGroup(d, true, r.Mode, r.Gid)
	n := s.alloc(d, stratapb.FileType_DIRECTORY, mode, r.Uid, gid, now)
	n.nlink, n.parent, n.pol, n.children = 2, d.ino, pol, make(map[string]uint64)
	d.children[r.Name] = n.ino
	d.nlink++
	touch(d, now)
	return &stratapb.MkdirResponse{Attr: n.attr()}, nil
}

func (s *state) create(now int64, r *stratapb.CreateRequest) (*stratapb.CreateResponse, error) {
	if _, n, err := s.entry(r.Parent, r.Name); err == nil {
		switch {
		case r.Exclusive:
			return nil, errnof(syscall.EEXIST, "%q exists", r.Name)
		case n.isDir():
			return nil, errnof(syscall.EISDIR, "%q is a directory", r.Name)
		}
		if r.Truncate && n.typ == stratapb.FileType_REGULAR {
			if err := writable(n); err != nil {
				return nil, err
			}
			s.truncate(n, 0, now)
		}
		return &stratapb.CreateResponse{Attr: n.attr()}, nil
	}
	d, err := s.freeName(r.Parent, r.Name)
	if err != nil {
		return nil, err
	}
	pol, err := s.effectivePolicy(d, r.Policy)
	if err != nil {
		return nil, err
	}
	if err := s.quotaRoom(d.quota, 1, 0); err != nil {
		return nil, err
	}
	mode, gid := inheritGroup(d, false, r.Mode, r.Gid)
	n := s.alloc(d, stratapb.FileType_REGULAR, mode, r.Uid, gid, now)
	n.pol = pol
	d.children[r.Name] = n.ino
	touch(d, now)
	return &stratapb.CreateResponse{Attr: n.attr(), Created: true}, nil
}

func (s *state) symlink(now int64, r *stratapb.SymlinkRequest) (*stratapb.SymlinkResponse, error) {
	if r.Target == "" || len(r.Target) > MaxSymlinkLen || strings.ContainsRune(r.Target, 0) {
		return nil, errnof(syscall.EINVAL, "symlink target must be 1..%d bytes without NUL", MaxSymlinkLen)
	}
	d, err := s.freeName(r.Parent, r.Name)
	if err != nil {
		return nil, err
	}
	if err := s.quotaRoom(d.quota, 1, 0); err != nil {
		return nil, err
	}
	_, gid := inheritGroup(d, false, 0o777, r.Gid)
	n := s.alloc(d, stratapb.FileType_SYMLINK, 0o777, r.Uid, gid, now)
	n.target, n.size = r.Target, uint64(len(r.Target))
	d.children[r.Name] = n.ino
	touch(d, now)
	return &stratapb.SymlinkResponse{Attr: n.attr()}, nil
}

func (s *state) link(now int64, r *stratapb.LinkRequest) (*stratapb.LinkResponse, error) {
	n, err := s.get(r.Ino)
	if err != nil {
		return nil, err
	}
	if n.isDir() {
		return nil, errnof(syscall.EPERM, "cannot hard-link directory %d", r.Ino)
	}
	if n.nlink == 0 {
		return nil, errnof(syscall.ENOENT, "inode %d was removed", r.Ino)
	}
	if err := writable(n); err != nil {
		return nil, err
	}
	d, err := s.freeName(r.NewParent, r.NewName)
	if err != nil {
		return nil, err
	}
	if err := s.crossesBoundary(n, d); err != nil {
		return nil, err
	}
	d.children[r.NewName] = n.ino
	n.nlink++
	n.ctime = now
	touch(d, now)
	return &stratapb.LinkResponse{Attr: n.attr()}, nil
}

// forget deletes inode n from the table and from its quota's usage (its
// bytes went with its truncation to 0).
func (s *state) forget(n *inode) {
	delete(s.inodes, n.ino)
	s.charge(n.quota, -1, 0)
}

// dropLink removes one link to n and frees it when none is left.
func (s *state) dropLink(n *inode, now int64) {
	n.nlink--
	n.ctime = now
	if n.nlink == 0 {
		s.free(n)
	}
}

func (s *state) free(n *inode) {
	s.truncate(n, 0, n.ctime)
	s.forget(n)
}

func (s *state) unlink(now int64, r *stratapb.UnlinkRequest) (*stratapb.UnlinkResponse, error) {
	d, n, err := s.entry(r.Parent, r.Name)
	if err != nil {
		return nil, err
	}
	if n.isDir() {
		return nil, errnof(syscall.EISDIR, "%q is a directory", r.Name)
	}
	if err := writable(d, n); err != nil {
		return nil, err
	}
	delete(d.children, r.Name)
	touch(d, now)
	s.dropLink(n, now)
	return &stratapb.UnlinkResponse{Attr: n.attr()}, nil
}

func (s *state) rmdir(now int64, r *stratapb.RmdirRequest) (*stratapb.RmdirResponse, error) {
	d, n, err := s.entry(r.Parent, r.Name)
	if err != nil {
		return nil, err
	}
	if !n.isDir() {
		return nil, errnof(syscall.ENOTDIR, "%q is not a directory", r.Name)
	}
	if err := writable(d, n); err != nil {
		return nil, err
	}
	if len(n.children) > 0 {
		return nil, errnof(syscall.ENOTEMPTY, "directory %q is not empty", r.Name)
	}
	delete(d.children, r.Name)
	d.nlink--
	touch(d, now)
	n.nlink = 0
	s.forget(n)
	return &stratapb.RmdirResponse{}, nil
}

// isAncestor reports whether dir a is dir b or one of b's ancestors.
func (s *state) isAncestor(a, b uint64) bool {
	for i := 0; i < 1<<20; i++ { // bounded: a corrupt parent chain must not hang Apply
		if b == a {
			return true
		}
		n, ok := s.inodes[b]
		if !ok || n.parent == b {
			return false
		}
		b = n.parent
	}
	return false
}

const (
	renameNoReplace = 1
	renameExchange  = 2
)

func (s *state) rename(now int64, r *stratapb.RenameRequest) (*stratapb.RenameResponse, error) {
	if r.Flags&^(renameNoReplace|renameExchange) != 0 || r.Flags == renameNoReplace|renameExchange {
		return nil, errnof(syscall.EINVAL, "bad rename flags %#x", r.Flags)
	}
	sd, sn, err := s.entry(r.SrcParent, r.SrcName)
	if err != nil {
		return nil, err
	}
	if err := checkName(r.DstName); err != nil {
		return nil, err
	}
	dd, err := s.dir(r.DstParent)
	if err != nil {
		return nil, err
	}
	if err := writable(sd, dd); err != nil {
		return nil, err
	}
	if err := movable(sn); err != nil {
		return nil, err
	}
	if sn.isDir() && s.isAncestor(sn.ino, dd.ino) {
		return nil, errnof(syscall.EINVAL, "cannot move directory %q into itself", r.SrcName)
	}
	if sd != dd {
		if err := s.crossesBoundary(sn, dd); err != nil {
			return nil, err
		}
	}
	dino, exists := dd.children[r.DstName]
	if r.Flags&renameExchange != 0 {
		if !exists {
			return nil, errnof(syscall.ENOENT, "%q not found for exchange", r.DstName)
		}
		return s.exchange(now, sd, sn, dd, s.inodes[dino], r)
	}
	if exists {
		if r.Flags&renameNoReplace != 0 {
			return nil, errnof(syscall.EEXIST, "%q exists", r.DstName)
		}
		if dino == sn.ino {
			return &stratapb.RenameResponse{}, nil // same inode: POSIX says do nothing
		}
		if err := s.replaceTarget(now, dd, r.DstName, sn); err != nil {
			return nil, err
		}
	}
	delete(sd.children, r.SrcName)
	dd.children[r.DstName] = sn.ino
	if sn.isDir() && sd != dd {
		sd.nlink--
		dd.nlink++
		sn.parent = dd.ino
	}
	sn.ctime = now
	touch(sd, now)
	touch(dd, now)
	return &stratapb.RenameResponse{}, nil
}

// replaceTarget removes the existing destination of a rename, after checking
// that the types allow it.
func (s *state) replaceTarget(now int64, dd *inode, name string, src *inode) error {
	dn := s.inodes[dd.children[name]]
	if err := writable(dn); err != nil {
		return err
	}
	if dn.pinned() {
		return errnof(syscall.EPERM, "%q is the snapshot area", name)
	}
	switch {
	case src.isDir() && !dn.isDir():
		return errnof(syscall.ENOTDIR, "cannot replace non-directory %q with a directory", name)
	case !src.isDir() && dn.isDir():
		return errnof(syscall.EISDIR, "cannot replace directory %q with a non-directory", name)
	case dn.isDir() && len(dn.children) > 0:
		return errnof(syscall.ENOTEMPTY, "directory %q is not empty", name)
	}
	delete(dd.children, name)
	if dn.isDir() {
		dd.nlink--
		s.forget(dn)
		return nil
	}
	s.dropLink(dn, now)
	return nil
}

func (s *state) exchange(now int64, sd, sn, dd, dn *inode, r *stratapb.RenameRequest) (*stratapb.RenameResponse, error) {
	if err := movable(dn); err != nil {
		return nil, err
	}
	if dn.isDir() && s.isAncestor(dn.ino, sd.ino) {
		return nil, errnof(syscall.EINVAL, "cannot move directory %q into itself", r.DstName)
	}
	if sd != dd {
		if err := s.crossesBoundary(dn, sd); err != nil {
			return nil, err
		}
	}
	sd.children[r.SrcName], dd.children[r.DstName] = dn.ino, sn.ino
	if sd != dd {
		if sn.isDir() {
			sn.parent = dd.ino
			sd.nlink--
			dd.nlink++
		}
		if dn.isDir() {
			dn.parent = sd.ino
			dd.nlink--
			sd.nlink++
		}
	}
	sn.ctime, dn.ctime = now, now
	touch(sd, now)
	touch(dd, now)
	return &stratapb.RenameResponse{}, nil
}

func (s *state) readDir(r *stratapb.ReadDirRequest) (*stratapb.ReadDirResponse, error) {
	d, err := s.dir(r.Ino)
	if err != nil {
		return nil, err
	}
	limit := int(r.Limit)
	if limit <= 0 {
		limit = defaultReadDir
	}
	limit = min(limit, maxReadDir)
	names := make([]string, 0, len(d.children))
	for name := range d.children {
		if name > r.After {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	eof := len(names) <= limit
	if !eof {
		names = names[:limit]
	}
	resp := &stratapb.ReadDirResponse{Eof: eof, Entries: make([]*stratapb.DirEntry, 0, len(names))}
	for _, name := range names {
		n := s.inodes[d.children[name]]
		e := &stratapb.DirEntry{Name: name, Ino: n.ino, Type: n.typ}
		if r.Plus {
			e.Attr = n.attr()
		}
		resp.Entries = append(resp.Entries, e)
	}
	return resp, nil
}
