package client

import (
	"context"
	"io"
	"syscall"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// Layouts of immutable files. A file of a frozen tree (an image) never
// changes, so its whole chunk list can be fetched once and kept: reads
// then cost no metadata round trip. The image mount keeps layouts this
// way (and prefetches them); nothing else should, since the layout of a
// mutable file goes stale at its next write.

// FileLayout is the whole chunk list of a file as one GetChunks saw it.
type FileLayout struct {
	ino    uint64
	cs     int64
	size   int64
	frozen bool
	chunks map[uint64]*stratapb.Chunk
	addrs  map[uint32]string
}

// Size is the file size the layout was taken at.
func (l *FileLayout) Size() int64 { return l.size }

// Frozen reports whether the file lies in a frozen tree (so that the
// layout stays true forever).
func (l *FileLayout) Frozen() bool { return l.frozen }

// Layout fetches the whole chunk list of regular file ino in one call.
// It is meant for frozen files: the answer may come from the server's own
// state without the leadership check of a linearizable read (a frozen
// file's chunk list is the same in every state that has the file), which
// saves a round of heartbeats per call. For a file that may change, the
// caller must check Frozen and fetch again otherwise.
func (c *Client) Layout(ctx context.Context, ino uint64) (*FileLayout, error) {
	hdr := c.NewHeader()
	hdr.StaleOk = true
	req := &stratapb.GetChunksRequest{Header: hdr, Ino: ino}
	var resp *stratapb.GetChunksResponse
	err := c.call(ctx, func(ctx context.Context, mc stratapb.MetaClient) error {
		var err error
		resp, err = mc.GetChunks(ctx, req)
		return err
	})
	if err != nil {
		return nil, opErr(ctx, "layout", inodeTarget(ino), err)
	}
	cs, err := fileChunkSize("layout", resp.GetAttr())
	if err != nil {
		return nil, err
	}
	return &FileLayout{
		ino: ino, cs: cs, size: int64(resp.GetAttr().GetSize()), frozen: resp.GetAttr().GetFrozen(),
		chunks: byIndex(resp.GetChunks()), addrs: resp.GetServerAddrs(),
	}, nil
}

// ReadAtLayout is ReadAt with the chunk list taken from l instead of asked
// for: the right read only for a file that cannot have changed since l
// was fetched (a frozen one). Chunks come from the local chunk cache when
// it has them.
func (c *Client) ReadAtLayout(ctx context.Context, l *FileLayout, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errnoErr("read", inodeTarget(l.ino), syscall.EINVAL, "negative offset %d", off)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if off >= l.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), l.size-off))
	if err := c.readRange(ctx, l.ino, l.cs, l.size, l.chunks, l.addrs, p[:n], off); err != nil {
		return 0, err
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// HasChunkCache reports whether the client keeps a local chunk cache
// (where prefetched chunks can wait for their reader).
func (c *Client) HasChunkCache() bool { return c.cache != nil }
