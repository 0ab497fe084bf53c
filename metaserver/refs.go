package metaserver

import (
	"slices"
	"syscall"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// Chunk reference counts and content-addressed chunks.
//
// A chunk may be held by several chunk-list entries: copies made by
// CloneTree and snapshots, and files that share content (dedup). s.refs
// counts them; only when the last goes does the chunk become garbage, and
// only garbage has its shards deleted (after GCGrace, gc.go). Every inode
// keeps its own copy of a shared chunk's layout (servers), so a repair that
// moves a shard must update every copy (and s.byHash).

// contentHash is the sha256 of a chunk's data.
type contentHash [32]byte

// maxLookupHashes bounds one LookupChunks call.
const maxLookupHashes = 1024

// storedBytes is what a chunk occupies on the dataservers: every shard,
// parity included, as laid out when written.
func storedBytes(c *chunk) uint64 {
	return uint64(c.shardSize) * uint64(int(c.k)+int(c.m))
}

// addRef records one more reference to c.
func (s *state) addRef(c chunk) {
	if s.refs[c.id] == 0 {
		s.stored += storedBytes(&c)
	}
	s.refs[c.id]++
}

// discard drops one reference to c; when it was the last, c becomes garbage
// as of now (leader time, from the log, so every voter records the same)
// and its content hash is forgotten, so that no new file can take it.
func (s *state) discard(c chunk, now int64) {
	if s.refs[c.id] > 1 {
		s.refs[c.id]--
		return
	}
	delete(s.refs, c.id)
	s.stored -= min(s.stored, storedBytes(&c))
	s.garbage = append(s.garbage, garbageChunk{id: c.id, servers: c.servers, at: now})
	for i := range c.servers {
		delete(s.badShards, shardRef{c.id, uint32(i)})
	}
	if h, ok := s.hashOf[c.id]; ok {
		delete(s.byHash, h)
		delete(s.hashOf, c.id)
	}
	delete(s.ten.contentOwner, c.id)
}

// commitCheck is what the validation pass of one commit has seen so far:
// content chunks the commit itself brings (so that a later entry of the
// same commit may share them) and the indexes it sets.
type commitCheck struct {
	newHashed map[contentHash]uint64
	indexes   map[uint64]bool
	strict    bool // an entry is shared or hashed: indexes must be distinct
}

func (s *state) newCommitCheck() *commitCheck {
	return &commitCheck{newHashed: map[contentHash]uint64{}, indexes: map[uint64]bool{}}
}

// index refuses a commit that sets one index twice when content chunks
// take part (a later entry could otherwise drop what an earlier one
// shares).
func (cv *commitCheck) index(i uint64, content bool) error {
	cv.strict = cv.strict || content
	if cv.indexes[i] && cv.strict {
		return errnof(syscall.EINVAL, "chunk index %d twice in one commit", i)
	}
	cv.indexes[i] = true
	return nil
}

func hashOf(b []byte) (contentHash, error) {
	var h contentHash
	if len(b) != len(h) {
		return h, errnof(syscall.EINVAL, "content hash of %d bytes, want %d (sha256)", len(b), len(h))
	}
	copy(h[:], b)
	return h, nil
}

// checkNew validates a newly written chunk. Its id must not be a live chunk
// held elsewhere (that would need a shared commit, or the count would be
// wrong); recommitting the chunk already at that index is allowed (a retry,
// or a repair updating the layout).
func (s *state) checkNew(n *inode, c *stratapb.Chunk, cv *commitCheck) error {
	if err := s.checkChunk(n, c); err != nil {
		return err
	}
	if !s.mayCommitNew(n, c) {
		// The same answer as for an id never allocated: a tenant learns
		// nothing about the chunks of others.
		return errnof(syscall.EINVAL, "chunk id %d was never allocated", c.Id)
	}
	if s.refs[c.Id] > 0 {
		if i, ok := n.findChunk(c.Index); !ok || n.chunks[i].id != c.Id {
			return errnof(syscall.EINVAL, "chunk %d is in use elsewhere; commit it as shared", c.Id)
		}
	}
	if len(c.Hash) > 0 {
		h, err := hashOf(c.Hash)
		if err != nil {
			return err
		}
		if _, known := s.byHash[h]; !known {
			if _, dup := cv.newHashed[h]; !dup {
				cv.newHashed[h] = c.Id
			}
		}
	}
	return nil
}

// checkShared validates a reference to a stored content chunk: the hash
// must still name that chunk id (it may have been freed since the client
// looked it up: ESTALE, write the data again), and it must fit the file.
func (s *state) checkShared(n *inode, c *stratapb.Chunk, cv *commitCheck) error {
	h, err := hashOf(c.Hash)
	if err != nil {
		return err
	}
	size := c.Size
	if e, ok := s.byHash[h]; ok && e.id == c.Id && s.contentVisible(e.id, n.tenant) {
		size = e.size
	} else if cv.newHashed[h] != c.Id || c.Id == 0 {
		return errnof(syscall.ESTALE, "content chunk %d is no longer stored; write it again", c.Id)
	}
	cs := uint64(n.pol.chunkSize)
	switch {
	case uint64(size) > cs:
		return errnof(syscall.EINVAL, "shared chunk of %d bytes exceeds chunk size %d", size, cs)
	case c.Index > MaxFileSize/cs || c.Index*cs+uint64(size) > MaxFileSize:
		return errnof(syscall.EFBIG, "chunk %d lies past the maximum file size", c.Index)
	}
	return nil
}

// applyCommit puts one checked chunk commit into n. A shared entry takes
// the stored layout (never the client's); a new hashed chunk registers its
// content unless another chunk already has it.
func (s *state) applyCommit(n *inode, cc *stratapb.ChunkCommit, now int64) {
	if cc.Shared {
		h, _ := hashOf(cc.Chunk.Hash)
		e, ok := s.byHash[h] // checked: present (registered earlier in this commit at worst)
		if !ok {
			return
		}
		c := *e
		c.index = cc.Chunk.Index
		c.servers = slices.Clone(c.servers)
		s.putChunk(n, c, now)
		return
	}
	c := chunkFromProto(cc.Chunk)
	s.putChunk(n, c, now)
	delete(s.ten.pending, c.id)
	if len(cc.Chunk.Hash) == 0 {
		return
	}
	h, _ := hashOf(cc.Chunk.Hash)
	if _, known := s.byHash[h]; known || s.refs[c.id] == 0 {
		return
	}
	if _, hashed := s.hashOf[c.id]; hashed {
		return
	}
	e := c
	e.index, e.servers = 0, slices.Clone(c.servers)
	s.byHash[h] = &e
	s.hashOf[c.id] = h
	if n.tenant != 0 {
		s.ten.contentOwner[c.id] = n.tenant
	}
}

// lookupChunks answers which contents are stored.
func (s *state) lookupChunks(r *stratapb.LookupChunksRequest) (*stratapb.LookupChunksResponse, error) {
	if len(r.Hashes) > maxLookupHashes {
		return nil, errnof(syscall.EINVAL, "%d hashes in one lookup, at most %d", len(r.Hashes), maxLookupHashes)
	}
	resp := &stratapb.LookupChunksResponse{ServerAddrs: map[uint32]string{}}
	tenant := s.tenantID(r.Header)
	for _, b := range r.Hashes {
		h, err := hashOf(b)
		if err != nil {
			return nil, err
		}
		e, ok := s.byHash[h]
		if !ok || !s.contentVisible(e.id, tenant) {
			resp.Chunks = append(resp.Chunks, &stratapb.Chunk{})
			continue
		}
		pc := e.proto()
		pc.Hash = append([]byte(nil), h[:]...)
		resp.Chunks = append(resp.Chunks, pc)
		for _, id := range e.servers {
			if ds, ok := s.servers[id]; ok {
				resp.ServerAddrs[id] = ds.addr
			}
		}
	}
	return resp, nil
}

// relocateShard records that shard `shard` of chunk id moved from server
// `from` to server `to`, in every copy of the chunk's layout: each holder
// (files, clones, snapshots) and the content table. A repair or a
// rebalance must use it for a shared chunk (refs > 1), or the holders it
// misses would keep pointing at the old place, whose copy is then deleted
// as garbage. An unshared chunk's one holder is the caller's to move (only
// the content table is updated here). It scans every inode when the chunk
// is shared (no chunk -> holders index yet), so it costs O(inodes) for
// those; the order of the scan does not matter, the result is the same on
// every voter. It returns how many copies it changed.
func (s *state) relocateShard(id uint64, shard int, from, to uint32) int {
	changed := 0
	move := func(c *chunk) {
		if c.id == id && shard < len(c.servers) && c.servers[shard] == from {
			c.servers = slices.Clone(c.servers) // snapshots and responses may share the slice
			c.servers[shard] = to
			changed++
		}
	}
	if e, ok := s.byHash[s.hashOf[id]]; ok && e.id == id {
		cp := *e
		move(&cp)
		s.byHash[s.hashOf[id]] = &cp // entries are shared with FSM snapshots: replace, never edit
	}
	if s.refs[id] <= 1 {
		return changed // unshared, the common case: no other holder to find
	}
	for _, n := range s.inodes {
		for i := range n.chunks {
			move(&n.chunks[i])
		}
	}
	return changed
}
