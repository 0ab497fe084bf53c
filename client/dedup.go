package client

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"syscall"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// Content-addressed (deduplicated) writes. A chunk written this way carries
// the sha256 of its data; the metadata service keeps hash -> chunk, so a
// later writer of the same bytes commits a reference to the stored chunk
// instead of storing it again. The hash is the client's word: a tenant
// that lies about it spoils only what it dedups against (see NOTES.md).

const (
	// dedupBatch is how many chunks one WriteFileDedup step reads, looks
	// up, writes and commits together.
	dedupBatch = 8
	// lookupBatch is the most hashes one LookupChunks call carries.
	lookupBatch = 1024
	// maxStaleRetries bounds how often a step starts over because a chunk
	// it meant to share was freed between lookup and commit.
	maxStaleRetries = 5
)

// DedupStats says what WriteFileDedup did.
type DedupStats struct {
	Logical int64 // bytes of the file
	Written int64 // bytes of chunk data actually written to dataservers
	Chunks  int   // chunks of the file (holes excluded)
	Shared  int   // of which already stored, now shared
	Holes   int   // all-zero chunks left as holes
}

// LookupChunks asks which of these contents (sha256 of chunk data) are
// stored. out[i] answers hashes[i]: the stored chunk (with its id, layout
// and hash; the index field is meaningless) or nil.
func (c *Client) LookupChunks(ctx context.Context, hashes [][]byte) ([]*stratapb.Chunk, error) {
	out := make([]*stratapb.Chunk, 0, len(hashes))
	for len(hashes) > 0 {
		part := hashes[:min(len(hashes), lookupBatch)]
		hashes = hashes[len(part):]
		req := &stratapb.LookupChunksRequest{Header: c.NewHeader(), Hashes: part}
		var resp *stratapb.LookupChunksResponse
		err := c.callSnap(ctx, func(ctx context.Context, sc stratapb.SnapClient) error {
			var err error
			resp, err = sc.LookupChunks(ctx, req)
			return err
		})
		if err != nil {
			return nil, opErr(ctx, "lookup chunks", "", err)
		}
		if len(resp.GetChunks()) != len(part) {
			return nil, fmt.Errorf("client: lookup chunks: %d answers for %d hashes: %w", len(resp.GetChunks()), len(part), syscall.EIO)
		}
		for _, ch := range resp.GetChunks() {
			if ch.GetId() == 0 {
				ch = nil
			}
			out = append(out, ch)
		}
	}
	return out, nil
}

// WriteFileDedup makes the content of regular file ino exactly what r
// yields, deduplicated: the stream is cut into chunks of the file's chunk
// size, each is hashed (sha256), the hashes are looked up in one call per
// batch, and only chunks not stored yet are written; each batch is
// committed in one transaction of new and shared chunks. All-zero chunks
// become holes. A file with data is emptied first. On error the file holds
// a prefix of the data.
func (c *Client) WriteFileDedup(ctx context.Context, ino uint64, r io.Reader) (DedupStats, error) {
	var st DedupStats
	attr, err := c.getAttr(ctx, ino)
	if err != nil {
		return st, opErr(ctx, "dedup write", inodeTarget(ino), err)
	}
	cs, err := fileChunkSize("dedup write", attr)
	if err != nil {
		return st, err
	}
	if attr.GetSize() > 0 {
		if err := c.Truncate(ctx, ino, 0); err != nil {
			return st, err
		}
	}
	pol := attr.GetPolicy()
	bufLen := max(int(cs), stripeLen(int(pol.GetDataShards()), int(pol.GetParityShards()), int(cs)))
	st, err = c.newDedupPipe(ctx, ino, cs, bufLen).run(r)
	if err != nil {
		return st, fmt.Errorf("client: dedup write inode %d: %w", ino, err)
	}
	return st, nil
}

// dedupChunk is one chunk of a dedup write.
type dedupChunk struct {
	index uint64
	buf   *[]byte
	size  int
	hash  []byte
	zero  bool
}

var zeroBlock [64 << 10]byte

func isZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroBlock))
		if !bytes.Equal(b[:n], zeroBlock[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// retryStale redoes step while its commit fails because a chunk it shared
// was freed meanwhile (ESTALE).
func (c *Client) retryStale(ctx context.Context, step func() error) error {
	for i := 0; ; i++ {
		err := step()
		if err == nil || !isErrno(err, syscall.ESTALE) || i == maxStaleRetries || ctx.Err() != nil {
			return err
		}
	}
}

// dedupStep looks up a batch, writes what is missing (each distinct
// content once) and commits the batch.
func (c *Client) dedupStep(ctx context.Context, ino uint64, cs int64, batch []*dedupChunk, st *DedupStats) error {
	var todo []*dedupChunk
	var hashes [][]byte
	for _, dc := range batch {
		if !dc.zero {
			todo = append(todo, dc)
			hashes = append(hashes, dc.hash)
		}
	}
	found, err := c.LookupChunks(ctx, hashes)
	if err != nil {
		return err
	}
	write, shared := classify(todo, found)
	written, err := c.writeDedupChunks(ctx, ino, write)
	if err != nil {
		return err
	}
	fresh := fillShared(shared, written)
	last := batch[len(batch)-1]
	end := last.index*uint64(cs) + uint64(last.size)
	// New chunks first: a shared entry may name one of them.
	if _, err := c.commit(ctx, ino, append(fresh, shared...), end); err != nil {
		return opErr(ctx, "dedup write", inodeTarget(ino), err)
	}
	st.add(batch, written, len(shared))
	return nil
}

// add counts a committed batch.
func (st *DedupStats) add(batch []*dedupChunk, written []*stratapb.Chunk, shared int) {
	for _, dc := range batch {
		st.Logical += int64(dc.size)
		if dc.zero {
			st.Holes++
		} else {
			st.Chunks++
		}
	}
	for _, ch := range written {
		st.Written += int64(ch.GetSize())
	}
	st.Shared += shared
}

// classify splits the non-zero chunks of a batch (todo, with found[i] the
// stored chunk of todo[i]'s content or nil) into chunks to write (each
// distinct content once) and shared commits (to stored chunks, or to a
// chunk this batch writes: id 0 until fillShared).
func classify(todo []*dedupChunk, found []*stratapb.Chunk) ([]*dedupChunk, []*stratapb.ChunkCommit) {
	var write []*dedupChunk
	var shared []*stratapb.ChunkCommit
	first := map[string]bool{}
	for i, dc := range todo {
		switch {
		case found[i] != nil:
			shared = append(shared, sharedCommit(dc, found[i].GetId()))
		case first[string(dc.hash)]:
			shared = append(shared, sharedCommit(dc, 0))
		default:
			first[string(dc.hash)] = true
			write = append(write, dc)
		}
	}
	return write, shared
}

// fillShared gives shared commits of contents written in the same batch
// their chunk ids, and returns the commits of the written chunks; these
// must come first in the commit, since shared entries may name them.
func fillShared(shared []*stratapb.ChunkCommit, written []*stratapb.Chunk) []*stratapb.ChunkCommit {
	var fresh []*stratapb.ChunkCommit
	byHash := map[string]uint64{}
	for _, ch := range written {
		fresh = append(fresh, &stratapb.ChunkCommit{Chunk: ch})
		byHash[string(ch.GetHash())] = ch.GetId()
	}
	for _, cc := range shared {
		if cc.Chunk.Id == 0 {
			cc.Chunk.Id = byHash[string(cc.Chunk.Hash)]
		}
	}
	return fresh
}

func sharedCommit(dc *dedupChunk, id uint64) *stratapb.ChunkCommit {
	return &stratapb.ChunkCommit{Shared: true, Chunk: &stratapb.Chunk{Index: dc.index, Id: id, Size: uint32(dc.size), Hash: dc.hash}}
}

// writeDedupChunks allocates and writes chunks, in parallel, returning
// their metadata with the content hash set.
func (c *Client) writeDedupChunks(ctx context.Context, ino uint64, todo []*dedupChunk) ([]*stratapb.Chunk, error) {
	if len(todo) == 0 {
		return nil, nil
	}
	sizes := make([]uint32, len(todo))
	for i, dc := range todo {
		sizes[i] = uint32(dc.size)
	}
	resp, err := c.allocate(ctx, ino, sizes)
	if err != nil {
		return nil, opErr(ctx, "dedup write", inodeTarget(ino), err)
	}
	out := make([]*stratapb.Chunk, len(todo))
	g := newGroup(ctx, c.cfg.MaxInflightChunks)
	for i, dc := range todo {
		g.Go(func(ctx context.Context) error {
			ch, err := c.writeChunk(ctx, dc.index, (*dc.buf)[:cap(*dc.buf)], dc.size, resp.GetAllocations()[i], resp.GetServerAddrs())
			if err == nil {
				ch.Hash = dc.hash
			}
			out[i] = ch
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, opErr(ctx, "dedup write", inodeTarget(ino), err)
	}
	return out, nil
}
