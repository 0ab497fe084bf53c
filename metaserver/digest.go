package metaserver

import (
	"encoding/binary"
	"hash/fnv"
	"sort"
)

// digest hashes the namespace (inodes, entries, chunk lists) in a fixed
// order, so tests can check that all voters hold the same state.
func (s *state) digest() uint64 {
	h := fnv.New64a()
	var b [8]byte
	put := func(v uint64) {
		binary.LittleEndian.PutUint64(b[:], v)
		h.Write(b[:])
	}
	inos := make([]uint64, 0, len(s.inodes))
	for ino := range s.inodes {
		inos = append(inos, ino)
	}
	sort.Slice(inos, func(i, j int) bool { return inos[i] < inos[j] })
	for _, ino := range inos {
		n := s.inodes[ino]
		put(n.ino)
		put(uint64(n.typ))
		put(uint64(n.mode))
		put(n.size)
		put(uint64(n.nlink))
		put(uint64(n.mtime))
		put(uint64(n.flags))
		put(uint64(n.rdev))
		h.Write([]byte(n.target))
		for _, c := range n.chunks {
			put(c.index)
			put(c.id)
			put(uint64(c.size))
		}
		names := make([]string, 0, len(n.children))
		for name := range n.children {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			h.Write([]byte(name))
			put(n.children[name])
		}
	}
	put(s.nextIno)
	put(s.nextChunk)
	s.digestSnapState(put, h.Write)
	return h.Sum64()
}

// digestSnapState adds reference counts, content hashes and snapshots.
func (s *state) digestSnapState(put func(uint64), write func([]byte) (int, error)) {
	ids := make([]uint64, 0, len(s.refs))
	for id := range s.refs {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		put(id)
		put(uint64(s.refs[id]))
		if h, ok := s.hashOf[id]; ok {
			write(h[:])
		}
	}
	put(s.stored)
	keys := make([]snapKey, 0, len(s.snaps))
	for k := range s.snaps {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].tenant != keys[j].tenant {
			return keys[i].tenant < keys[j].tenant
		}
		return keys[i].name < keys[j].name
	})
	for _, k := range keys {
		write([]byte(k.tenant + "\x00" + k.name))
		put(s.snaps[k].RootIno)
	}
}
