package metaserver

import (
	"github.com/strata-hpc/strata/proto/stratapb"
)

// policy is a compact StripePolicy: every file carries one, so it is kept
// inline and small (memory per file is a stated target).
type policy struct {
	k, m      uint8
	chunkSize uint32
	small     uint32 // chunks below this many bytes are replicated
}

func policyFromProto(p *stratapb.StripePolicy) policy {
	return policy{k: uint8(p.DataShards), m: uint8(p.ParityShards), chunkSize: p.ChunkSize, small: p.SmallThreshold}
}

func (p policy) proto() *stratapb.StripePolicy {
	return &stratapb.StripePolicy{DataShards: uint32(p.k), ParityShards: uint32(p.m), ChunkSize: p.chunkSize, SmallThreshold: p.small}
}

// chunk is the in-memory form of stratapb.Chunk. servers[i] == 0 means
// shard i has no place (written degraded, or lost) and waits for repair.
type chunk struct {
	index     uint64
	id        uint64
	size      uint32
	shardSize uint32
	crc       uint32
	scheme    uint8
	k, m      uint8
	servers   []uint32
}

func chunkFromProto(c *stratapb.Chunk) chunk {
	return chunk{
		index: c.Index, id: c.Id, size: c.Size, shardSize: c.ShardSize, crc: c.Crc32C,
		scheme: uint8(c.Scheme), k: uint8(c.DataShards), m: uint8(c.ParityShards),
		servers: append([]uint32(nil), c.Servers...),
	}
}

func (c *chunk) proto() *stratapb.Chunk {
	return &stratapb.Chunk{
		Index: c.index, Id: c.id, Size: c.size, ShardSize: c.shardSize, Crc32C: c.crc,
		Scheme: stratapb.Scheme(c.scheme), DataShards: uint32(c.k), ParityShards: uint32(c.m),
		Servers: append([]uint32(nil), c.servers...),
	}
}

// inode is one file, directory or symlink. Fields are ordered for packing;
// a regular file with one chunk costs a few hundred bytes in all.
type inode struct {
	ino      uint64
	size     uint64
	parent   uint64 // directories only: the parent directory (root: itself)
	atime    int64
	mtime    int64
	ctime    int64
	mode     uint32
	uid, gid uint32
	nlink    uint32
	rdev     uint32 // devices: Linux's device number
	flags    inodeFlag
	tenant   uint32 // owning tenant (0: none); fixed at creation
	quota    uint32 // innermost quota charged for it (0: none)
	typ      stratapb.FileType
	pol      policy
	target   string            // symlinks
	chunks   []chunk           // regular files, sorted by index
	children map[string]uint64 // directories
	xattrs   map[string][]byte
}

func (n *inode) isDir() bool { return n.typ == stratapb.FileType_DIRECTORY }

// inodeFlag marks inodes of frozen trees and the snapshot area.
type inodeFlag uint8

const (
	// flagFrozen: the inode lies in a frozen tree; no mutation may touch
	// it (see frozen.go).
	flagFrozen inodeFlag = 1 << iota
	// flagPinned: the inode is the snapshot area or a snapshot's root; only
	// the snapshot commands may move or remove it.
	flagPinned
)

func (n *inode) frozen() bool { return n.flags&flagFrozen != 0 }
func (n *inode) pinned() bool { return n.flags&flagPinned != 0 }

func (n *inode) attr() *stratapb.Attr {
	a := &stratapb.Attr{
		Ino: n.ino, Type: n.typ, Mode: n.mode, Uid: n.uid, Gid: n.gid, Size: n.size,
		AtimeNs: n.atime, MtimeNs: n.mtime, CtimeNs: n.ctime, Nlink: n.nlink,
		SymlinkTarget: n.target, Rdev: n.rdev, Frozen: n.frozen(),
	}
	if n.typ != stratapb.FileType_SYMLINK {
		a.Policy = n.pol.proto()
	}
	return a
}

// findChunk returns the position of the chunk with the given index, and
// whether it is present (binary search over the sorted chunk list).
func (n *inode) findChunk(index uint64) (int, bool) {
	lo, hi := 0, len(n.chunks)
	for lo < hi {
		mid := (lo + hi) / 2
		if n.chunks[mid].index < index {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo, lo < len(n.chunks) && n.chunks[lo].index == index
}
