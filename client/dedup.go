package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
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
	for index := uint64(0); ; {
		batch, eof, err := c.readDedupBatch(r, int(cs), bufLen, index)
		if err == nil && len(batch) > 0 {
			err = c.retryStale(ctx, func() error { return c.dedupStep(ctx, ino, cs, batch, &st) })
		}
		for _, dc := range batch {
			c.bufs.put(dc.buf)
		}
		if err != nil {
			return st, fmt.Errorf("client: dedup write inode %d: %w", ino, err)
		}
		index += uint64(len(batch))
		if eof {
			return st, nil
		}
	}
}

// dedupChunk is one chunk of a dedup write.
type dedupChunk struct {
	index uint64
	buf   *[]byte
	size  int
	hash  []byte
	zero  bool
}

// readDedupBatch reads up to dedupBatch chunks and hashes them.
func (c *Client) readDedupBatch(r io.Reader, cs, bufLen int, index uint64) ([]*dedupChunk, bool, error) {
	var batch []*dedupChunk
	for len(batch) < dedupBatch {
		buf := c.bufs.get(bufLen)
		n, err := io.ReadFull(r, (*buf)[:cs])
		if n > 0 {
			data := (*buf)[:n]
			sum := sha256.Sum256(data)
			batch = append(batch, &dedupChunk{index: index, buf: buf, size: n, hash: sum[:], zero: isZero(data)})
			index++
		} else {
			c.bufs.put(buf)
		}
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			return batch, true, nil
		case err != nil:
			return batch, false, fmt.Errorf("read: %w", err)
		}
	}
	return batch, false, nil
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
	var fresh, shared []*stratapb.ChunkCommit
	var write []*dedupChunk
	first := map[string]bool{} // contents this batch writes
	for i, dc := range todo {
		switch {
		case found[i] != nil:
			shared = append(shared, sharedCommit(dc, found[i].GetId()))
		case first[string(dc.hash)]:
			shared = append(shared, sharedCommit(dc, 0)) // id filled in after the write
		default:
			first[string(dc.hash)] = true
			write = append(write, dc)
		}
	}
	written, err := c.writeDedupChunks(ctx, ino, write)
	if err != nil {
		return err
	}
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
	last := batch[len(batch)-1]
	end := last.index*uint64(cs) + uint64(last.size)
	// New chunks first: a shared entry may name one of them.
	if _, err := c.commit(ctx, ino, append(fresh, shared...), end); err != nil {
		return opErr(ctx, "dedup write", inodeTarget(ino), err)
	}
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
	st.Shared += len(shared)
	return nil
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
