package client

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sort"
	"sync"
	"syscall"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/strata-hpc/strata/internal/rpcerr"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// fakeMeta is a single-node, in-memory metadata service with the semantics
// the client codes against (errnos, request-id deduplication, chunk
// commits with expected ids). It lets the client's tests run without
// Raft; the integration tests run against the real metaserver.
type fakeMeta struct {
	stratapb.UnimplementedMetaServer
	addr string

	mu        sync.Mutex
	inodes    map[uint64]*fakeInode
	nextIno   uint64
	nextChunk uint64
	data      []*fakeData
	seen      map[string]fakeReply
	// drop[method] makes the next n calls of method apply but answer
	// Unavailable, as if the reply were lost in a failover; the client
	// must retry with the same header and get the recorded answer.
	drop    map[string]int
	calls   map[string]int
	reports []*stratapb.ReportBadShardRequest
	// commitHook runs (under the lock) before each CommitChunks applies,
	// to simulate a concurrent writer.
	commitHook func(n *fakeInode)
}

type fakeInode struct {
	attr    *stratapb.Attr
	entries map[string]uint64
	chunks  map[uint64]*stratapb.Chunk
}

type fakeReply struct {
	msg proto.Message
	err error
}

func startFakeMeta(t testing.TB, pol *stratapb.StripePolicy, data []*fakeData) *fakeMeta {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &fakeMeta{
		addr: lis.Addr().String(), inodes: make(map[uint64]*fakeInode), nextIno: 2, nextChunk: 1,
		data: data, seen: make(map[string]fakeReply), calls: make(map[string]int), drop: make(map[string]int),
	}
	m.inodes[rootIno] = &fakeInode{
		attr:    &stratapb.Attr{Ino: rootIno, Type: stratapb.FileType_DIRECTORY, Mode: 0o755, Nlink: 2, Policy: pol},
		entries: make(map[string]uint64),
	}
	srv := grpc.NewServer()
	stratapb.RegisterMetaServer(srv, m)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return m
}

func errno(e syscall.Errno) error { return rpcerr.Errno(e, "fake: %v", e) }

// do runs one request under the lock, deduplicated by its header.
func do[T proto.Message](m *fakeMeta, name string, h *stratapb.RequestHeader, fn func() (T, error)) (T, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls[name]++
	key := fmt.Sprintf("%s/%d", h.GetClientId(), h.GetRequestId())
	r, ok := m.seen[key]
	if !ok {
		msg, err := fn()
		r = fakeReply{msg: msg, err: err}
		m.seen[key] = r
	}
	if m.drop[name] > 0 {
		m.drop[name]--
		var zero T
		return zero, status.Error(codes.Unavailable, "fake: reply lost")
	}
	if r.err != nil {
		var zero T
		return zero, r.err
	}
	return r.msg.(T), nil
}

func (m *fakeMeta) get(ino uint64) (*fakeInode, error) {
	n, ok := m.inodes[ino]
	if !ok {
		return nil, errno(syscall.ENOENT)
	}
	return n, nil
}

func (m *fakeMeta) dir(ino uint64) (*fakeInode, error) {
	n, err := m.get(ino)
	if err == nil && n.attr.Type != stratapb.FileType_DIRECTORY {
		err = errno(syscall.ENOTDIR)
	}
	return n, err
}

func (m *fakeMeta) child(parent uint64, name string) (*fakeInode, *fakeInode, error) {
	d, err := m.dir(parent)
	if err != nil {
		return nil, nil, err
	}
	ino, ok := d.entries[name]
	if !ok {
		return d, nil, errno(syscall.ENOENT)
	}
	return d, m.inodes[ino], nil
}

func (m *fakeMeta) newInode(d *fakeInode, name string, typ stratapb.FileType, mode uint32, pol *stratapb.StripePolicy) (*fakeInode, error) {
	if _, ok := d.entries[name]; ok {
		return nil, errno(syscall.EEXIST)
	}
	if pol == nil {
		pol = d.attr.Policy
	}
	n := &fakeInode{attr: &stratapb.Attr{Ino: m.nextIno, Type: typ, Mode: mode, Nlink: 1, Policy: proto.Clone(pol).(*stratapb.StripePolicy)}}
	switch typ {
	case stratapb.FileType_DIRECTORY:
		n.entries = make(map[string]uint64)
		n.attr.Nlink = 2
	case stratapb.FileType_REGULAR:
		n.chunks = make(map[uint64]*stratapb.Chunk)
	}
	m.nextIno++
	m.inodes[n.attr.Ino] = n
	d.entries[name] = n.attr.Ino
	return n, nil
}

func clone(a *stratapb.Attr) *stratapb.Attr { return proto.Clone(a).(*stratapb.Attr) }

func (m *fakeMeta) Lookup(_ context.Context, r *stratapb.LookupRequest) (*stratapb.LookupResponse, error) {
	return do(m, "Lookup", r.Header, func() (*stratapb.LookupResponse, error) {
		_, n, err := m.child(r.Parent, r.Name)
		if err != nil {
			return nil, err
		}
		return &stratapb.LookupResponse{Attr: clone(n.attr)}, nil
	})
}

func (m *fakeMeta) GetAttr(_ context.Context, r *stratapb.GetAttrRequest) (*stratapb.GetAttrResponse, error) {
	return do(m, "GetAttr", r.Header, func() (*stratapb.GetAttrResponse, error) {
		n, err := m.get(r.Ino)
		if err != nil {
			return nil, err
		}
		return &stratapb.GetAttrResponse{Attr: clone(n.attr)}, nil
	})
}

func (m *fakeMeta) SetAttr(_ context.Context, r *stratapb.SetAttrRequest) (*stratapb.SetAttrResponse, error) {
	return do(m, "SetAttr", r.Header, func() (*stratapb.SetAttrResponse, error) {
		n, err := m.get(r.Ino)
		if err != nil {
			return nil, err
		}
		if r.Valid&uint32(stratapb.SetAttrMask_SETATTR_SIZE) != 0 {
			m.truncate(n, r.Size)
		}
		if r.Valid&uint32(stratapb.SetAttrMask_SETATTR_POLICY) != 0 {
			n.attr.Policy = r.Policy
		}
		if r.Valid&uint32(stratapb.SetAttrMask_SETATTR_MODE) != 0 {
			n.attr.Mode = r.Mode
		}
		return &stratapb.SetAttrResponse{Attr: clone(n.attr)}, nil
	})
}

// truncate mirrors the metaserver: chunks past the end go, a chunk cut in
// the middle keeps its shards but reads only to the new end (its checksum
// no longer covers its size, so it is zeroed).
func (m *fakeMeta) truncate(n *fakeInode, size uint64) {
	cs := uint64(n.attr.Policy.ChunkSize)
	for idx, c := range n.chunks {
		switch start := idx * cs; {
		case start >= size:
			delete(n.chunks, idx)
		case start+uint64(c.Size) > size:
			c = proto.Clone(c).(*stratapb.Chunk)
			c.Size, c.Crc32C = uint32(size-start), 0
			n.chunks[idx] = c
		}
	}
	n.attr.Size = size
}

func (m *fakeMeta) Mkdir(_ context.Context, r *stratapb.MkdirRequest) (*stratapb.MkdirResponse, error) {
	return do(m, "Mkdir", r.Header, func() (*stratapb.MkdirResponse, error) {
		d, err := m.dir(r.Parent)
		if err != nil {
			return nil, err
		}
		n, err := m.newInode(d, r.Name, stratapb.FileType_DIRECTORY, r.Mode, r.Policy)
		if err != nil {
			return nil, err
		}
		return &stratapb.MkdirResponse{Attr: clone(n.attr)}, nil
	})
}

func (m *fakeMeta) Create(_ context.Context, r *stratapb.CreateRequest) (*stratapb.CreateResponse, error) {
	return do(m, "Create", r.Header, func() (*stratapb.CreateResponse, error) {
		d, n, err := m.child(r.Parent, r.Name)
		switch {
		case d == nil:
			return nil, err
		case n != nil && r.Exclusive:
			return nil, errno(syscall.EEXIST)
		case n != nil && n.attr.Type == stratapb.FileType_DIRECTORY:
			return nil, errno(syscall.EISDIR)
		case n != nil:
			if r.Truncate {
				m.truncate(n, 0)
			}
			return &stratapb.CreateResponse{Attr: clone(n.attr)}, nil
		}
		n, err = m.newInode(d, r.Name, stratapb.FileType_REGULAR, r.Mode, r.Policy)
		if err != nil {
			return nil, err
		}
		return &stratapb.CreateResponse{Attr: clone(n.attr), Created: true}, nil
	})
}

func (m *fakeMeta) Unlink(_ context.Context, r *stratapb.UnlinkRequest) (*stratapb.UnlinkResponse, error) {
	return do(m, "Unlink", r.Header, func() (*stratapb.UnlinkResponse, error) {
		d, n, err := m.child(r.Parent, r.Name)
		if err != nil {
			return nil, err
		}
		if n.attr.Type == stratapb.FileType_DIRECTORY {
			return nil, errno(syscall.EISDIR)
		}
		delete(d.entries, r.Name)
		if n.attr.Nlink--; n.attr.Nlink == 0 {
			delete(m.inodes, n.attr.Ino)
		}
		return &stratapb.UnlinkResponse{Attr: clone(n.attr)}, nil
	})
}

func (m *fakeMeta) Rmdir(_ context.Context, r *stratapb.RmdirRequest) (*stratapb.RmdirResponse, error) {
	return do(m, "Rmdir", r.Header, func() (*stratapb.RmdirResponse, error) {
		d, n, err := m.child(r.Parent, r.Name)
		switch {
		case err != nil:
			return nil, err
		case n.attr.Type != stratapb.FileType_DIRECTORY:
			return nil, errno(syscall.ENOTDIR)
		case len(n.entries) > 0:
			return nil, errno(syscall.ENOTEMPTY)
		}
		delete(d.entries, r.Name)
		delete(m.inodes, n.attr.Ino)
		return &stratapb.RmdirResponse{}, nil
	})
}

func (m *fakeMeta) Rename(_ context.Context, r *stratapb.RenameRequest) (*stratapb.RenameResponse, error) {
	return do(m, "Rename", r.Header, func() (*stratapb.RenameResponse, error) {
		sd, n, err := m.child(r.SrcParent, r.SrcName)
		if err != nil {
			return nil, err
		}
		dd, err := m.dir(r.DstParent)
		if err != nil {
			return nil, err
		}
		if old, ok := dd.entries[r.DstName]; ok && len(m.inodes[old].entries) > 0 {
			return nil, errno(syscall.ENOTEMPTY)
		}
		delete(sd.entries, r.SrcName)
		dd.entries[r.DstName] = n.attr.Ino
		return &stratapb.RenameResponse{}, nil
	})
}

func (m *fakeMeta) ReadDir(_ context.Context, r *stratapb.ReadDirRequest) (*stratapb.ReadDirResponse, error) {
	return do(m, "ReadDir", r.Header, func() (*stratapb.ReadDirResponse, error) {
		d, err := m.dir(r.Ino)
		if err != nil {
			return nil, err
		}
		var names []string
		for name := range d.entries {
			if name > r.After {
				names = append(names, name)
			}
		}
		sort.Strings(names)
		limit := int(r.Limit)
		if limit == 0 || limit > 3 {
			limit = 3 // tiny pages, so that the client's paging is exercised
		}
		resp := &stratapb.ReadDirResponse{Eof: len(names) <= limit}
		for _, name := range names[:min(limit, len(names))] {
			n := m.inodes[d.entries[name]]
			e := &stratapb.DirEntry{Name: name, Ino: n.attr.Ino, Type: n.attr.Type}
			if r.Plus {
				e.Attr = clone(n.attr)
			}
			resp.Entries = append(resp.Entries, e)
		}
		return resp, nil
	})
}

func (m *fakeMeta) Symlink(_ context.Context, r *stratapb.SymlinkRequest) (*stratapb.SymlinkResponse, error) {
	return do(m, "Symlink", r.Header, func() (*stratapb.SymlinkResponse, error) {
		d, err := m.dir(r.Parent)
		if err != nil {
			return nil, err
		}
		n, err := m.newInode(d, r.Name, stratapb.FileType_SYMLINK, 0o777, nil)
		if err != nil {
			return nil, err
		}
		n.attr.SymlinkTarget = r.Target
		n.attr.Size = uint64(len(r.Target))
		return &stratapb.SymlinkResponse{Attr: clone(n.attr)}, nil
	})
}

func (m *fakeMeta) Link(_ context.Context, r *stratapb.LinkRequest) (*stratapb.LinkResponse, error) {
	return do(m, "Link", r.Header, func() (*stratapb.LinkResponse, error) {
		n, err := m.get(r.Ino)
		if err != nil {
			return nil, err
		}
		d, err := m.dir(r.NewParent)
		if err != nil {
			return nil, err
		}
		if _, ok := d.entries[r.NewName]; ok {
			return nil, errno(syscall.EEXIST)
		}
		d.entries[r.NewName] = n.attr.Ino
		n.attr.Nlink++
		return &stratapb.LinkResponse{Attr: clone(n.attr)}, nil
	})
}

func (m *fakeMeta) addrs() map[uint32]string {
	out := make(map[uint32]string)
	for _, d := range m.data {
		out[d.id] = d.addr
	}
	return out
}

func (m *fakeMeta) AllocateChunks(_ context.Context, r *stratapb.AllocateChunksRequest) (*stratapb.AllocateChunksResponse, error) {
	return do(m, "AllocateChunks", r.Header, func() (*stratapb.AllocateChunksResponse, error) {
		n, err := m.get(r.Ino)
		if err != nil {
			return nil, err
		}
		pol := n.attr.Policy
		resp := &stratapb.AllocateChunksResponse{ServerAddrs: m.addrs()}
		for _, size := range r.Sizes {
			a := &stratapb.Allocation{ChunkId: m.nextChunk, Scheme: stratapb.Scheme_ERASURE, DataShards: pol.DataShards, ParityShards: pol.ParityShards}
			m.nextChunk++
			if size < pol.SmallThreshold {
				a.Scheme, a.DataShards = stratapb.Scheme_REPLICATED, 1
			}
			ids := make([]uint32, len(m.data))
			for i, d := range m.data {
				ids[i] = d.id
			}
			rand.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
			width := int(a.DataShards + a.ParityShards)
			if width > len(ids) {
				return nil, errno(syscall.ENOSPC)
			}
			a.Servers, a.Spares = ids[:width], ids[width:]
			resp.Allocations = append(resp.Allocations, a)
		}
		return resp, nil
	})
}

func (m *fakeMeta) CommitChunks(_ context.Context, r *stratapb.CommitChunksRequest) (*stratapb.CommitChunksResponse, error) {
	return do(m, "CommitChunks", r.Header, func() (*stratapb.CommitChunksResponse, error) {
		n, err := m.get(r.Ino)
		if err != nil {
			return nil, err
		}
		if m.commitHook != nil {
			m.commitHook(n)
		}
		for _, cc := range r.Chunks {
			if cc.CheckExpected && n.chunks[cc.Chunk.Index].GetId() != cc.ExpectedId {
				return nil, errno(syscall.ESTALE)
			}
		}
		for _, cc := range r.Chunks {
			n.chunks[cc.Chunk.Index] = proto.Clone(cc.Chunk).(*stratapb.Chunk)
		}
		n.attr.Size = max(n.attr.Size, r.MinSize)
		return &stratapb.CommitChunksResponse{Attr: clone(n.attr)}, nil
	})
}

func (m *fakeMeta) GetChunks(_ context.Context, r *stratapb.GetChunksRequest) (*stratapb.GetChunksResponse, error) {
	return do(m, "GetChunks", r.Header, func() (*stratapb.GetChunksResponse, error) {
		n, err := m.get(r.Ino)
		if err != nil {
			return nil, err
		}
		if n.attr.Type != stratapb.FileType_REGULAR {
			return nil, errno(syscall.EISDIR)
		}
		resp := &stratapb.GetChunksResponse{Attr: clone(n.attr), ServerAddrs: m.addrs()}
		for idx, c := range n.chunks {
			if idx >= r.FirstIndex && (r.Count == 0 || idx < r.FirstIndex+r.Count) {
				resp.Chunks = append(resp.Chunks, proto.Clone(c).(*stratapb.Chunk))
			}
		}
		slices.SortFunc(resp.Chunks, func(a, b *stratapb.Chunk) int { return int(a.Index) - int(b.Index) })
		return resp, nil
	})
}

func (m *fakeMeta) ReportBadShard(_ context.Context, r *stratapb.ReportBadShardRequest) (*stratapb.ReportBadShardResponse, error) {
	return do(m, "ReportBadShard", r.Header, func() (*stratapb.ReportBadShardResponse, error) {
		m.reports = append(m.reports, r)
		return &stratapb.ReportBadShardResponse{}, nil
	})
}

// chunk returns the chunk at index idx of ino.
func (m *fakeMeta) chunk(ino, idx uint64) *stratapb.Chunk {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.inodes[ino].chunks[idx]
}

func (m *fakeMeta) reportCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.reports)
}

func (m *fakeMeta) callCount(name string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls[name]
}
