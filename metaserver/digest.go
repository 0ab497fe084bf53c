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
	return h.Sum64()
}
