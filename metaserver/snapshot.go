package metaserver

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"syscall"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// Snapshot format: a sequence of records, each a uvarint length followed by
// a marshalled stratapb.SnapshotRecord. The first record is the header; the
// rest come in any order. Restore checks the result is a coherent tree
// before it replaces anything.
const (
	snapshotVersion  = 1
	maxSnapshotEntry = 64 << 20
)

// clone deep-copies the state, so that Persist can write it out while Apply
// goes on changing the original. (A persistent data structure would make
// this O(1); a copy costs about a second per few million files, paid on the
// FSM goroutine once per snapshot interval.)
func (s *state) clone() *state {
	c := *s
	c.inodes = make(map[uint64]*inode, len(s.inodes))
	for k, n := range s.inodes {
		cn := *n
		cn.chunks = slices.Clone(n.chunks)
		cn.children = maps.Clone(n.children)
		cn.xattrs = maps.Clone(n.xattrs)
		c.inodes[k] = &cn
	}
	c.tenants = maps.Clone(s.tenants)
	c.servers = make(map[uint32]*dataServer, len(s.servers))
	for k, ds := range s.servers {
		d := *ds
		c.servers[k] = &d
	}
	c.byUUID = maps.Clone(s.byUUID)
	c.members = maps.Clone(s.members)
	c.badShards = maps.Clone(s.badShards)
	c.garbage = slices.Clone(s.garbage)
	c.refs = maps.Clone(s.refs)
	c.byHash = maps.Clone(s.byHash) // entries are never changed in place
	c.hashOf = maps.Clone(s.hashOf)
	c.snaps = maps.Clone(s.snaps) // infos are never changed in place
	c.heal = s.heal.clone()
	c.locks = s.locks.clone()
	c.capKeys = slices.Clone(s.capKeys)
	c.ten = s.ten.clone()
	d := *s.dedup
	d.fifo = s.dedup.live()
	d.head = 0
	d.entries = nil // not needed for writing
	c.dedup = &d
	return &c
}

type fsmSnapshot struct {
	st  *state
	log *slog.Logger
}

func (fs *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	w := bufio.NewWriterSize(sink, 1<<20)
	err := fs.st.writeSnapshot(w)
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		sink.Cancel()
		return fmt.Errorf("metaserver: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (fs *fsmSnapshot) Release() {}

func writeRecord(w io.Writer, rec *stratapb.SnapshotRecord, buf *[]byte) error {
	b, err := proto.MarshalOptions{}.MarshalAppend((*buf)[:0], rec)
	if err != nil {
		return err
	}
	*buf = b
	var hdr [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], uint64(len(b)))
	if _, err := w.Write(hdr[:n]); err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func (s *state) writeSnapshot(w io.Writer) error {
	var buf []byte
	put := func(rec *stratapb.SnapshotRecord) error { return writeRecord(w, rec, &buf) }
	hdr := &stratapb.SnapshotHeader{
		Version: snapshotVersion, NextIno: s.nextIno, NextChunkId: s.nextChunk,
		NextServerId: s.nextServer, TenantRoots: s.tenants, InodeCount: uint64(len(s.inodes)),
		DefaultPolicy: s.defPolicy.proto(),
	}
	if err := put(&stratapb.SnapshotRecord{Rec: &stratapb.SnapshotRecord_Header{Header: hdr}}); err != nil {
		return err
	}
	for _, n := range s.inodes {
		if err := put(&stratapb.SnapshotRecord{Rec: &stratapb.SnapshotRecord_Inode{Inode: inodeRecord(n)}}); err != nil {
			return err
		}
	}
	for _, ds := range s.servers {
		r := &stratapb.SnapshotDataServer{Id: ds.id, Uuid: ds.uuid, Addr: ds.addr, Labels: ds.labels}
		if err := put(&stratapb.SnapshotRecord{Rec: &stratapb.SnapshotRecord_Dataserver{Dataserver: r}}); err != nil {
			return err
		}
	}
	for id, addr := range s.members {
		r := &stratapb.SnapshotMetaMember{ServerId: id, GrpcAddr: addr}
		if err := put(&stratapb.SnapshotRecord{Rec: &stratapb.SnapshotRecord_MetaMember{MetaMember: r}}); err != nil {
			return err
		}
	}
	for ref, b := range s.badShards {
		r := &stratapb.SnapshotBadShard{ChunkId: ref.chunk, ShardIndex: ref.index, ServerId: b.server, Reason: b.reason}
		if err := put(&stratapb.SnapshotRecord{Rec: &stratapb.SnapshotRecord_BadShard{BadShard: r}}); err != nil {
			return err
		}
	}
	for _, g := range s.garbage {
		r := &stratapb.SnapshotGarbage{ChunkId: g.id, Servers: g.servers, AtNs: g.at}
		if err := put(&stratapb.SnapshotRecord{Rec: &stratapb.SnapshotRecord_Garbage{Garbage: r}}); err != nil {
			return err
		}
	}
	if err := s.writeSnapState(put); err != nil {
		return err
	}
	if err := put(&stratapb.SnapshotRecord{Rec: &stratapb.SnapshotRecord_Heal{Heal: s.heal.snapshot()}}); err != nil {
		return err
	}
	if len(s.capKeys) > 0 {
		r := &stratapb.SnapshotCapKeys{Keys: s.capKeys}
		if err := put(&stratapb.SnapshotRecord{Rec: &stratapb.SnapshotRecord_CapKeys{CapKeys: r}}); err != nil {
			return err
		}
	}
	if err := s.writeTenancy(put); err != nil {
		return err
	}
	for _, rec := range s.locks.records() {
		if err := put(rec); err != nil {
			return err
		}
	}
	for _, e := range s.dedup.live() {
		r, err := dedupRecord(e)
		if err != nil {
			return err
		}
		if err := put(&stratapb.SnapshotRecord{Rec: &stratapb.SnapshotRecord_Dedup{Dedup: r}}); err != nil {
			return err
		}
	}
	return nil
}

func inodeRecord(n *inode) *stratapb.SnapshotInode {
	r := &stratapb.SnapshotInode{Attr: n.attr(), Parent: n.parent, Xattrs: n.xattrs, Flags: uint32(n.flags), TenantId: n.tenant, QuotaId: n.quota}
	r.Attr.Policy = n.pol.proto()
	for i := range n.chunks {
		r.Chunks = append(r.Chunks, n.chunks[i].proto())
	}
	for name, ino := range n.children {
		r.Entries = append(r.Entries, &stratapb.DirEntry{Name: name, Ino: ino})
	}
	return r
}

func dedupRecord(e *dedupEntry) (*stratapb.SnapshotDedup, error) {
	r := &stratapb.SnapshotDedup{ClientId: e.key.client, RequestId: e.key.req, AppliedNs: e.applied, Type: uint32(e.typ)}
	if e.err != nil {
		r.Error = e.err.Error()
		if ne, ok := errnoOf(e.err); ok {
			r.Errno = int32(ne.errno)
			r.Error = ne.msg
		}
	}
	if e.resp != nil {
		b, err := proto.Marshal(e.resp)
		if err != nil {
			return nil, err
		}
		r.Response = b
	}
	return r, nil
}

// readSnapshot decodes and checks a snapshot. Bad input gives an error
// wrapping ErrBadSnapshot, never a panic.
func readSnapshot(r io.Reader, def policy) (*state, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	st := newState(def)
	delete(st.inodes, rootIno)
	first := true
	for {
		rec, err := readRecord(br)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if first != (rec.GetHeader() != nil) {
			return nil, fmt.Errorf("%w: header must come first, once", ErrBadSnapshot)
		}
		first = false
		if err := st.restoreRecord(rec); err != nil {
			return nil, err
		}
	}
	if first {
		return nil, fmt.Errorf("%w: empty", ErrBadSnapshot)
	}
	if err := st.check(); err != nil {
		return nil, err
	}
	if err := st.checkSnapState(); err != nil {
		return nil, err
	}
	if err := st.checkTenancy(); err != nil {
		return nil, err
	}
	st.recomputeQuotaUsage()
	return st, nil
}

func readRecord(br *bufio.Reader) (*stratapb.SnapshotRecord, error) {
	size, err := binary.ReadUvarint(br)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("%w: record length: %v", ErrBadSnapshot, err)
	}
	if size > maxSnapshotEntry {
		return nil, fmt.Errorf("%w: record of %d bytes", ErrBadSnapshot, size)
	}
	buf := make([]byte, size)
	if _, err := io.ReadFull(br, buf); err != nil {
		return nil, fmt.Errorf("%w: truncated record: %v", ErrBadSnapshot, err)
	}
	rec := &stratapb.SnapshotRecord{}
	if err := proto.Unmarshal(buf, rec); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	return rec, nil
}

func (s *state) restoreRecord(rec *stratapb.SnapshotRecord) error {
	switch r := rec.Rec.(type) {
	case *stratapb.SnapshotRecord_Header:
		return s.restoreHeader(r.Header)
	case *stratapb.SnapshotRecord_Inode:
		return s.restoreInode(r.Inode)
	case *stratapb.SnapshotRecord_Dataserver:
		d := r.Dataserver
		s.servers[d.Id] = &dataServer{id: d.Id, uuid: d.Uuid, addr: d.Addr, labels: d.Labels}
		s.byUUID[d.Uuid] = d.Id
	case *stratapb.SnapshotRecord_MetaMember:
		s.members[r.MetaMember.ServerId] = r.MetaMember.GrpcAddr
	case *stratapb.SnapshotRecord_BadShard:
		b := r.BadShard
		s.badShards[shardRef{b.ChunkId, b.ShardIndex}] = badShard{server: b.ServerId, reason: b.Reason}
	case *stratapb.SnapshotRecord_Garbage:
		s.garbage = append(s.garbage, garbageChunk{id: r.Garbage.ChunkId, servers: r.Garbage.Servers, at: r.Garbage.AtNs})
	case *stratapb.SnapshotRecord_Dedup:
		return s.restoreDedup(r.Dedup)
	case *stratapb.SnapshotRecord_ChunkRefs, *stratapb.SnapshotRecord_ContentChunk, *stratapb.SnapshotRecord_Snap:
		return s.restoreSnapRecord(rec)
	case *stratapb.SnapshotRecord_Tenant, *stratapb.SnapshotRecord_Quota,
		*stratapb.SnapshotRecord_PendingChunk, *stratapb.SnapshotRecord_TenantCounters:
		return s.restoreTenancy(rec)
	case *stratapb.SnapshotRecord_Heal:
		s.restoreHeal(r.Heal)
	case *stratapb.SnapshotRecord_CapKeys:
		s.capKeys = r.CapKeys.Keys
	case *stratapb.SnapshotRecord_LockSession:
		s.locks.sessions[r.LockSession.Session] = r.LockSession.ExpiresNs
	case *stratapb.SnapshotRecord_Lock:
		if r.Lock.Lock == nil {
			return fmt.Errorf("%w: lock record without a lock", ErrBadSnapshot)
		}
		s.locks.byIno[r.Lock.Ino] = append(s.locks.byIno[r.Lock.Ino], r.Lock.Lock)
	default:
		return fmt.Errorf("%w: unknown record", ErrBadSnapshot)
	}
	return nil
}

func (s *state) restoreHeader(h *stratapb.SnapshotHeader) error {
	if h.Version != snapshotVersion {
		return fmt.Errorf("%w: %d", ErrUnsupportedVersion, h.Version)
	}
	s.nextIno, s.nextChunk, s.nextServer = h.NextIno, h.NextChunkId, h.NextServerId
	s.tenants = h.TenantRoots
	if s.tenants == nil {
		s.tenants = map[string]uint64{}
	}
	if h.DefaultPolicy != nil {
		if err := validatePolicy(h.DefaultPolicy); err != nil {
			return fmt.Errorf("%w: default policy: %v", ErrBadSnapshot, err)
		}
		s.defPolicy = policyFromProto(h.DefaultPolicy)
	}
	return nil
}

func (s *state) restoreInode(r *stratapb.SnapshotInode) error {
	a := r.Attr
	if a == nil || a.Ino == 0 || a.Ino >= s.nextIno {
		return fmt.Errorf("%w: inode record with bad number", ErrBadSnapshot)
	}
	if _, dup := s.inodes[a.Ino]; dup {
		return fmt.Errorf("%w: inode %d twice", ErrBadSnapshot, a.Ino)
	}
	n := &inode{
		ino: a.Ino, typ: a.Type, mode: a.Mode, uid: a.Uid, gid: a.Gid, size: a.Size,
		atime: a.AtimeNs, mtime: a.MtimeNs, ctime: a.CtimeNs, nlink: a.Nlink,
		target: a.SymlinkTarget, parent: r.Parent, xattrs: r.Xattrs,
		rdev: a.Rdev, flags: inodeFlag(r.Flags), tenant: r.TenantId, quota: r.QuotaId,
	}
	if a.Policy != nil {
		n.pol = policyFromProto(a.Policy)
	}
	for _, c := range r.Chunks {
		n.chunks = append(n.chunks, chunkFromProto(c))
	}
	if !slices.IsSortedFunc(n.chunks, func(x, y chunk) int { return cmpU64(x.index, y.index) }) {
		return fmt.Errorf("%w: inode %d chunks out of order", ErrBadSnapshot, a.Ino)
	}
	if n.isDir() {
		n.children = make(map[string]uint64, len(r.Entries))
		for _, e := range r.Entries {
			n.children[e.Name] = e.Ino
		}
	}
	if n.typ <= stratapb.FileType_FILE_TYPE_UNSPECIFIED || n.typ > stratapb.FileType_SOCKET {
		return fmt.Errorf("%w: inode %d of unknown type %d", ErrBadSnapshot, a.Ino, a.Type)
	}
	s.logical += n.size
	s.inodes[n.ino] = n
	return nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *state) restoreDedup(r *stratapb.SnapshotDedup) error {
	h, ok := handlers[CommandType(r.Type)]
	if !ok {
		return fmt.Errorf("%w: dedup entry of unknown command %d", ErrBadSnapshot, r.Type)
	}
	e := &dedupEntry{key: dedupKey{r.ClientId, r.RequestId}, typ: CommandType(r.Type), applied: r.AppliedNs}
	switch {
	case r.Errno != 0:
		e.err = errnof(syscall.Errno(r.Errno), "%s", r.Error)
	case r.Error != "":
		e.err = errors.New(r.Error)
	default:
		resp := h.newResp()
		if err := proto.Unmarshal(r.Response, resp); err != nil {
			return fmt.Errorf("%w: dedup response: %v", ErrBadSnapshot, err)
		}
		e.resp = resp
	}
	s.dedup.add(e)
	return nil
}

// check verifies that the restored namespace is a tree whose entries all
// point at inodes that exist, so that no later Apply can trip over it.
func (s *state) check() error {
	root, ok := s.inodes[rootIno]
	if !ok || !root.isDir() {
		return fmt.Errorf("%w: no root directory", ErrBadSnapshot)
	}
	for _, n := range s.inodes {
		for name, child := range n.children {
			c, ok := s.inodes[child]
			if !ok {
				return fmt.Errorf("%w: %q in directory %d points at missing inode %d", ErrBadSnapshot, name, n.ino, child)
			}
			if c.isDir() && c.parent != n.ino {
				return fmt.Errorf("%w: directory %d has parent %d but is listed in %d", ErrBadSnapshot, c.ino, c.parent, n.ino)
			}
		}
		if n.isDir() {
			if _, ok := s.inodes[n.parent]; !ok {
				return fmt.Errorf("%w: directory %d has missing parent %d", ErrBadSnapshot, n.ino, n.parent)
			}
		}
	}
	return nil
}
