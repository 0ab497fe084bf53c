package metaserver

import (
	"syscall"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// truncate sets a regular file's size: chunks wholly past the new end are
// dropped (and become garbage); a chunk cut in the middle keeps its shards
// but reads only up to its new size, so bytes past the end read as zeros if
// the file grows again.
func (s *state) truncate(n *inode, size uint64, now int64) {
	cs := uint64(n.pol.chunkSize)
	keep := n.chunks[:0]
	for _, c := range n.chunks {
		start := c.index * cs
		switch {
		case start >= size:
			s.discard(c, now)
		case start+uint64(c.size) > size:
			// The chunk's checksum covered the old size; it no longer
			// describes the bytes that remain (0 = "no checksum").
			c.size, c.crc = uint32(size-start), 0
			keep = append(keep, c)
		default:
			keep = append(keep, c)
		}
	}
	clear(n.chunks[len(keep):]) // let dropped server slices go
	n.chunks = keep
	s.logical = s.logical - n.size + size
	if n.typ == stratapb.FileType_REGULAR { // free truncates every kind
		s.charge(n.quota, 0, int64(size)-int64(n.size))
	}
	n.size = size
	n.mtime, n.ctime = now, now
}

func (s *state) setAttr(now int64, r *stratapb.SetAttrRequest) (*stratapb.SetAttrResponse, error) {
	n, err := s.get(r.Ino)
	if err != nil {
		return nil, err
	}
	if err := writable(n); err != nil {
		return nil, err
	}
	v := r.Valid
	if v&uint32(stratapb.SetAttrMask_SETATTR_SIZE) != 0 {
		if err := checkTruncate(n, r.Size); err != nil {
			return nil, err
		}
		if r.Size > n.size {
			if err := s.quotaRoom(n.quota, 0, r.Size-n.size); err != nil {
				return nil, err
			}
		}
	}
	if v&uint32(stratapb.SetAttrMask_SETATTR_POLICY) != 0 {
		if r.Policy == nil || n.typ != stratapb.FileType_DIRECTORY && len(n.chunks) > 0 {
			return nil, errnof(syscall.EINVAL, "a stripe policy can be set on a directory or an empty file only")
		}
		if err := validatePolicy(r.Policy); err != nil {
			return nil, err
		}
		n.pol = policyFromProto(r.Policy)
	}
	if v&uint32(stratapb.SetAttrMask_SETATTR_MODE) != 0 {
		n.mode = r.Mode & 0o7777
	}
	if v&uint32(stratapb.SetAttrMask_SETATTR_UID) != 0 {
		n.uid = r.Uid
	}
	if v&uint32(stratapb.SetAttrMask_SETATTR_GID) != 0 {
		n.gid = r.Gid
	}
	if v&uint32(stratapb.SetAttrMask_SETATTR_SIZE) != 0 {
		s.truncate(n, r.Size, now)
	}
	if v&uint32(stratapb.SetAttrMask_SETATTR_ATIME) != 0 {
		n.atime = r.AtimeNs
	}
	if v&uint32(stratapb.SetAttrMask_SETATTR_MTIME) != 0 {
		n.mtime = r.MtimeNs
	}
	n.ctime = now
	return &stratapb.SetAttrResponse{Attr: n.attr()}, nil
}

func checkTruncate(n *inode, size uint64) error {
	switch {
	case n.isDir():
		return errnof(syscall.EISDIR, "inode %d is a directory", n.ino)
	case n.typ != stratapb.FileType_REGULAR:
		return errnof(syscall.EINVAL, "inode %d is not a regular file", n.ino)
	case size > MaxFileSize:
		return errnof(syscall.EFBIG, "size %d exceeds the maximum file size %d", size, uint64(MaxFileSize))
	}
	return nil
}

// allocateChunks reserves count chunk ids. Where the shards go is chosen by
// the leader outside the FSM (placement depends on live load, which is not
// replicated); only the id counter must be agreed on.
func (s *state) allocateChunks(count uint32) (uint64, error) {
	if count == 0 || count > 1024 {
		return 0, errnof(syscall.EINVAL, "chunk count %d out of range 1..1024", count)
	}
	first := s.nextChunk
	s.nextChunk += uint64(count)
	return first, nil
}

func (s *state) commitChunks(now int64, r *stratapb.CommitChunksRequest) (*stratapb.CommitChunksResponse, error) {
	n, err := s.get(r.Ino)
	if err != nil {
		return nil, err
	}
	if n.typ != stratapb.FileType_REGULAR {
		return nil, errnof(syscall.EISDIR, "inode %d is not a regular file", r.Ino)
	}
	if err := writable(n); err != nil {
		return nil, err
	}
	if r.MinSize > MaxFileSize {
		return nil, errnof(syscall.EFBIG, "size %d exceeds the maximum file size", r.MinSize)
	}
	if r.MinSize > n.size {
		if err := s.quotaRoom(n.quota, 0, r.MinSize-n.size); err != nil {
			return nil, err
		}
	}
	// Check every chunk before changing anything: a commit is all or nothing.
	cv := s.newCommitCheck()
	for _, cc := range r.Chunks {
		if err := s.checkCommit(n, cc, cv); err != nil {
			return nil, err
		}
	}
	for _, cc := range r.Chunks {
		s.applyCommit(n, cc, now)
	}
	if r.MinSize > n.size {
		s.charge(n.quota, 0, int64(r.MinSize-n.size))
		s.logical += r.MinSize - n.size
		n.size = r.MinSize
	}
	n.mtime = now
	if r.MtimeNs != 0 {
		n.mtime = r.MtimeNs
	}
	n.ctime = now
	return &stratapb.CommitChunksResponse{Attr: n.attr()}, nil
}

func (s *state) checkCommit(n *inode, cc *stratapb.ChunkCommit, cv *commitCheck) error {
	c := cc.Chunk
	if c == nil {
		return errnof(syscall.EINVAL, "commit without a chunk")
	}
	if err := cv.index(c.Index, cc.Shared || len(c.Hash) > 0); err != nil {
		return err
	}
	if cc.Shared {
		if err := s.checkShared(n, c, cv); err != nil {
			return err
		}
	} else if err := s.checkNew(n, c, cv); err != nil {
		return err
	}
	if cc.CheckExpected {
		var cur uint64
		if i, ok := n.findChunk(c.Index); ok {
			cur = n.chunks[i].id
		}
		if cur != cc.ExpectedId {
			return errnof(syscall.ESTALE, "chunk %d of inode %d changed (now id %d, expected %d)", c.Index, n.ino, cur, cc.ExpectedId)
		}
	}
	return nil
}

// checkChunk validates a chunk description sent by a client: it must fit the
// file's chunk size, name allocated ids and known servers, and have a
// coherent stripe shape.
func (s *state) checkChunk(n *inode, c *stratapb.Chunk) error {
	cs := uint64(n.pol.chunkSize)
	width := c.DataShards + c.ParityShards
	switch {
	case c.Id == 0 || c.Id >= s.nextChunk:
		return errnof(syscall.EINVAL, "chunk id %d was never allocated", c.Id)
	case uint64(c.Size) > cs:
		return errnof(syscall.EINVAL, "chunk of %d bytes exceeds chunk size %d", c.Size, cs)
	case c.Index > MaxFileSize/cs || c.Index*cs+uint64(c.Size) > MaxFileSize:
		return errnof(syscall.EFBIG, "chunk %d lies past the maximum file size", c.Index)
	case c.DataShards < 1 || width > maxShards || int(width) != len(c.Servers):
		return errnof(syscall.EINVAL, "chunk %d: stripe %d+%d with %d servers", c.Id, c.DataShards, c.ParityShards, len(c.Servers))
	case c.Scheme == stratapb.Scheme_ERASURE && uint64(c.ShardSize)*uint64(c.DataShards) < uint64(c.Size):
		return errnof(syscall.EINVAL, "chunk %d: %d shards of %d bytes cannot hold %d bytes", c.Id, c.DataShards, c.ShardSize, c.Size)
	case c.Scheme == stratapb.Scheme_REPLICATED && (c.DataShards != 1 || c.ShardSize < c.Size):
		return errnof(syscall.EINVAL, "chunk %d: bad replicated layout", c.Id)
	case c.Scheme != stratapb.Scheme_ERASURE && c.Scheme != stratapb.Scheme_REPLICATED:
		return errnof(syscall.EINVAL, "chunk %d: unknown scheme %d", c.Id, c.Scheme)
	}
	placed := 0
	for _, id := range c.Servers {
		if id == 0 {
			continue
		}
		if _, ok := s.servers[id]; !ok {
			return errnof(syscall.EINVAL, "chunk %d: unknown dataserver %d", c.Id, id)
		}
		placed++
	}
	if placed < int(c.DataShards) {
		return errnof(syscall.EINVAL, "chunk %d: only %d of %d shards placed, need at least %d", c.Id, placed, width, c.DataShards)
	}
	return nil
}

// putChunk sets the chunk at its index, taking a reference to it; the one
// it replaces loses one (and becomes garbage if that was the last).
func (s *state) putChunk(n *inode, c chunk, now int64) {
	i, ok := n.findChunk(c.index)
	if ok {
		if n.chunks[i].id != c.id {
			s.discard(n.chunks[i], now)
			s.addRef(c)
		}
		n.chunks[i] = c
		return
	}
	s.addRef(c)
	n.chunks = append(n.chunks, chunk{})
	copy(n.chunks[i+1:], n.chunks[i:])
	n.chunks[i] = c
}

func (s *state) getChunks(r *stratapb.GetChunksRequest) (*stratapb.GetChunksResponse, error) {
	n, err := s.get(r.Ino)
	if err != nil {
		return nil, err
	}
	if n.typ != stratapb.FileType_REGULAR {
		return nil, errnof(syscall.EISDIR, "inode %d is not a regular file", r.Ino)
	}
	resp := &stratapb.GetChunksResponse{Attr: n.attr(), ServerAddrs: make(map[uint32]string)}
	i, _ := n.findChunk(r.FirstIndex)
	for ; i < len(n.chunks); i++ {
		c := &n.chunks[i]
		if r.Count > 0 && c.index >= r.FirstIndex+r.Count {
			break
		}
		pc := c.proto()
		if h, ok := s.hashOf[c.id]; ok {
			pc.Hash = h[:]
		}
		resp.Chunks = append(resp.Chunks, pc)
		for _, id := range c.servers {
			if ds, ok := s.servers[id]; ok {
				resp.ServerAddrs[id] = ds.addr
			}
		}
	}
	return resp, nil
}

// Extended attributes, with Linux's flags and limits.
const (
	xattrCreate  = 1
	xattrReplace = 2
)

func (s *state) setXattr(now int64, r *stratapb.SetXattrRequest) (*stratapb.SetXattrResponse, error) {
	n, err := s.get(r.Ino)
	if err != nil {
		return nil, err
	}
	if err := writable(n); err != nil {
		return nil, err
	}
	if r.Name == "" || len(r.Name) > MaxXattrName {
		return nil, errnof(syscall.ERANGE, "xattr name must be 1..%d bytes", MaxXattrName)
	}
	if len(r.Value) > MaxXattrValue {
		return nil, errnof(syscall.E2BIG, "xattr value of %d bytes exceeds %d", len(r.Value), MaxXattrValue)
	}
	_, exists := n.xattrs[r.Name]
	switch {
	case r.Flags&xattrCreate != 0 && exists:
		return nil, errnof(syscall.EEXIST, "xattr %q exists", r.Name)
	case r.Flags&xattrReplace != 0 && !exists:
		return nil, errnof(syscall.ENODATA, "xattr %q not set", r.Name)
	}
	total := len(r.Name) + len(r.Value)
	for k, v := range n.xattrs {
		if k != r.Name {
			total += len(k) + len(v)
		}
	}
	if total > maxXattrsTotal {
		return nil, errnof(syscall.ENOSPC, "xattrs of inode %d would exceed %d bytes", r.Ino, maxXattrsTotal)
	}
	if n.xattrs == nil {
		n.xattrs = make(map[string][]byte)
	}
	n.xattrs[r.Name] = append([]byte(nil), r.Value...)
	n.ctime = now
	return &stratapb.SetXattrResponse{}, nil
}

func (s *state) removeXattr(now int64, r *stratapb.RemoveXattrRequest) (*stratapb.RemoveXattrResponse, error) {
	n, err := s.get(r.Ino)
	if err != nil {
		return nil, err
	}
	if err := writable(n); err != nil {
		return nil, err
	}
	if _, ok := n.xattrs[r.Name]; !ok {
		return nil, errnof(syscall.ENODATA, "xattr %q not set", r.Name)
	}
	delete(n.xattrs, r.Name)
	n.ctime = now
	return &stratapb.RemoveXattrResponse{}, nil
}

func (s *state) getXattr(r *stratapb.GetXattrRequest) (*stratapb.GetXattrResponse, error) {
	n, err := s.get(r.Ino)
	if err != nil {
		return nil, err
	}
	v, ok := n.xattrs[r.Name]
	if !ok {
		return nil, errnof(syscall.ENODATA, "xattr %q not set", r.Name)
	}
	return &stratapb.GetXattrResponse{Value: append([]byte(nil), v...)}, nil
}

func (s *state) listXattr(r *stratapb.ListXattrRequest) (*stratapb.ListXattrResponse, error) {
	n, err := s.get(r.Ino)
	if err != nil {
		return nil, err
	}
	resp := &stratapb.ListXattrResponse{}
	for k := range n.xattrs {
		resp.Names = append(resp.Names, k)
	}
	sortStrings(resp.Names)
	return resp, nil
}
