package client

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"syscall"

	"google.golang.org/grpc"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// Batched import (the image store's): file contents are stored first,
// deduplicated, without being committed to any file (StoreContent); then
// many entries, with their attributes and those chunks, are made in one
// metadata command (ImportBatch).

// ImportBatch makes the entries in one metadata command, all or none, and
// returns their inode numbers (inos[i] for entries[i]). A retry after a
// lost reply carries the same request id, so nothing is made twice.
func (c *Client) ImportBatch(ctx context.Context, entries []*stratapb.ImportEntry) ([]uint64, error) {
	req := &stratapb.ImportBatchRequest{Header: c.NewHeader(), Entries: entries}
	var resp *stratapb.ImportBatchResponse
	err := c.meta.CallConn(ctx, func(ctx context.Context, cc grpc.ClientConnInterface) error {
		var err error
		resp, err = stratapb.NewImportClient(cc).ImportBatch(ctx, req)
		return err
	})
	if err != nil {
		return nil, opErr(ctx, "import batch", fmt.Sprintf("%d entries", len(entries)), err)
	}
	if len(resp.GetInos()) != len(entries) {
		return nil, fmt.Errorf("client: import batch: %d inodes for %d entries: %w", len(resp.GetInos()), len(entries), syscall.EIO)
	}
	return resp.GetInos(), nil
}

// StoreContent stores what r yields as content-addressed chunks, as
// WriteFileDedup would for a file of anchor's policy (anchor: a regular
// file whose policy new files share, against which chunk ids are
// allocated), and returns the chunk commits for ImportBatch instead of
// committing them. Chunks already stored are shared, not written.
func (c *Client) StoreContent(ctx context.Context, anchor *stratapb.Attr, r io.Reader) ([]*stratapb.ChunkCommit, DedupStats, error) {
	cs, err := fileChunkSize("store content", anchor)
	if err != nil {
		return nil, DedupStats{}, err
	}
	pol := anchor.GetPolicy()
	bufLen := max(int(cs), stripeLen(int(pol.GetDataShards()), int(pol.GetParityShards()), int(cs)))
	var out []*stratapb.ChunkCommit
	p := c.newDedupPipe(ctx, anchor.GetIno(), cs, bufLen)
	p.collect = &out
	st, err := p.run(r)
	if err != nil {
		return nil, st, fmt.Errorf("client: store content: %w", err)
	}
	return out, st, nil
}

// StoreSmall stores many small contents at once (each at most one chunk
// of anchor's policy): one lookup for all, one allocation for those not
// stored yet, their writes in parallel. out[i] is the chunk commit of
// datas[i]: nil for an empty or all-zero content (a hole), a shared
// commit for content already stored or met earlier in datas, else a new
// chunk. An importer of many small files pays a few round trips per
// group instead of per file.
func (c *Client) StoreSmall(ctx context.Context, anchor *stratapb.Attr, datas [][]byte) ([]*stratapb.ChunkCommit, DedupStats, error) {
	var st DedupStats
	cs, err := fileChunkSize("store content", anchor)
	if err != nil {
		return nil, st, err
	}
	var todo []*dedupChunk
	var at []int // todo[j] is datas[at[j]]
	for i, d := range datas {
		if int64(len(d)) > cs {
			return nil, st, fmt.Errorf("client: store content: %d bytes exceed one chunk (%d): %w", len(d), cs, syscall.EINVAL)
		}
		st.Logical += int64(len(d))
		if len(d) == 0 || isZero(d) {
			st.Holes += min(len(d), 1)
			continue
		}
		sum := sha256.Sum256(d)
		todo = append(todo, &dedupChunk{buf: &datas[i], size: len(d), hash: sum[:]})
		at = append(at, i)
	}
	hashes := make([][]byte, len(todo))
	for j, dc := range todo {
		hashes[j] = dc.hash
	}
	found, err := c.LookupChunks(ctx, hashes)
	if err != nil {
		return nil, st, err
	}
	out := make([]*stratapb.ChunkCommit, len(datas))
	first := map[string]bool{}
	var write []*dedupChunk
	var writeAt []int
	for j, dc := range todo {
		switch {
		case found[j] != nil:
			out[at[j]] = sharedCommit(dc, found[j].GetId())
		case first[string(dc.hash)]:
			out[at[j]] = sharedCommit(dc, 0) // id filled once written
		default:
			first[string(dc.hash)] = true
			write, writeAt = append(write, dc), append(writeAt, at[j])
		}
		st.Chunks++
	}
	written, err := c.writeDedupChunks(ctx, anchor.GetIno(), write)
	if err != nil {
		return nil, st, fmt.Errorf("client: store content: %w", err)
	}
	byHash := map[string]uint64{}
	for k, ch := range written {
		out[writeAt[k]] = &stratapb.ChunkCommit{Chunk: ch}
		byHash[string(ch.GetHash())] = ch.GetId()
		st.Written += int64(ch.GetSize())
	}
	for _, cc := range out {
		if cc != nil && cc.Shared {
			st.Shared++
			if cc.Chunk.Id == 0 {
				cc.Chunk.Id = byHash[string(cc.Chunk.Hash)]
			}
		}
	}
	return out, st, nil
}
