package client

import (
	"context"
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
