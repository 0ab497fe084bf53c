package metaserver

import (
	"fmt"
	"slices"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// Snapshot records of the snap state: chunk reference counts, content
// chunks and named snapshots (see snapshot.go for the format).

const refsPerRecord = 4096

func (s *state) writeSnapState(put func(*stratapb.SnapshotRecord) error) error {
	ids := make([]uint64, 0, len(s.refs))
	for id := range s.refs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for len(ids) > 0 {
		run := ids[:min(len(ids), refsPerRecord)]
		ids = ids[len(run):]
		r := &stratapb.SnapshotChunkRefs{Ids: run, Refs: make([]uint32, len(run))}
		for i, id := range run {
			r.Refs[i] = s.refs[id]
		}
		if err := put(&stratapb.SnapshotRecord{Rec: &stratapb.SnapshotRecord_ChunkRefs{ChunkRefs: r}}); err != nil {
			return err
		}
	}
	for h, c := range s.byHash {
		pc := c.proto()
		pc.Hash = append([]byte(nil), h[:]...)
		if err := put(&stratapb.SnapshotRecord{Rec: &stratapb.SnapshotRecord_ContentChunk{ContentChunk: &stratapb.SnapshotContentChunk{Chunk: pc, TenantId: s.ten.contentOwner[c.id]}}}); err != nil {
			return err
		}
	}
	for k, info := range s.snaps {
		r := &stratapb.SnapshotSnap{Tenant: k.tenant, Info: info}
		if err := put(&stratapb.SnapshotRecord{Rec: &stratapb.SnapshotRecord_Snap{Snap: r}}); err != nil {
			return err
		}
	}
	return nil
}

func (s *state) restoreSnapRecord(rec *stratapb.SnapshotRecord) error {
	switch r := rec.Rec.(type) {
	case *stratapb.SnapshotRecord_ChunkRefs:
		if len(r.ChunkRefs.Ids) != len(r.ChunkRefs.Refs) {
			return fmt.Errorf("%w: chunk refs: %d ids, %d counts", ErrBadSnapshot, len(r.ChunkRefs.Ids), len(r.ChunkRefs.Refs))
		}
		for i, id := range r.ChunkRefs.Ids {
			s.refs[id] = r.ChunkRefs.Refs[i]
		}
	case *stratapb.SnapshotRecord_ContentChunk:
		pc := r.ContentChunk.GetChunk()
		h, err := hashOf(pc.GetHash())
		if err != nil {
			return fmt.Errorf("%w: content chunk: %v", ErrBadSnapshot, err)
		}
		c := chunkFromProto(pc)
		s.byHash[h] = &c
		s.hashOf[c.id] = h
		if t := r.ContentChunk.GetTenantId(); t != 0 {
			s.ten.contentOwner[c.id] = t
		}
	case *stratapb.SnapshotRecord_Snap:
		info := r.Snap.GetInfo()
		if info == nil || info.Name == "" {
			return fmt.Errorf("%w: snapshot record without a name", ErrBadSnapshot)
		}
		s.snaps[snapKey{r.Snap.Tenant, info.Name}] = info
	}
	return nil
}

// checkSnapState checks the restored counts against the chunk lists (a
// snapshot written before counts existed gets them computed), and that
// content chunks and snapshots point at live things; it recomputes the
// stored bytes.
func (s *state) checkSnapState() error {
	counted := map[uint64]uint32{}
	layout := map[uint64]*chunk{}
	for _, n := range s.inodes {
		for i := range n.chunks {
			counted[n.chunks[i].id]++
			layout[n.chunks[i].id] = &n.chunks[i]
		}
	}
	if len(s.refs) == 0 {
		s.refs = counted
	}
	if len(s.refs) != len(counted) {
		return fmt.Errorf("%w: %d chunks counted, %d referenced", ErrBadSnapshot, len(s.refs), len(counted))
	}
	s.stored = 0
	for id, want := range counted {
		if s.refs[id] != want {
			return fmt.Errorf("%w: chunk %d has %d references, count says %d", ErrBadSnapshot, id, want, s.refs[id])
		}
		s.stored += storedBytes(layout[id])
	}
	for id := range s.hashOf {
		if s.refs[id] == 0 {
			return fmt.Errorf("%w: content chunk %d is not referenced", ErrBadSnapshot, id)
		}
	}
	for k, info := range s.snaps {
		if n, ok := s.inodes[info.RootIno]; !ok || !n.pinned() {
			return fmt.Errorf("%w: snapshot %q of tenant %q has no pinned root %d", ErrBadSnapshot, k.name, k.tenant, info.RootIno)
		}
	}
	return nil
}
