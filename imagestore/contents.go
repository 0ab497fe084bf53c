package imagestore

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// Contents of an import. Small files are stored a group at a time, and
// groups run concurrently; a content met by two groups must still be
// stored once, and every file that has it must commit the one chunk the
// metadata service knows it by. So:
//
//   - a group claims the contents it stores; a later group that meets a
//     claimed content waits for its claimant and shares the chunk;
//   - the committer, which makes entries in source order, commits the
//     first file of a content (in that order) as the chunk's owner, even
//     if the group that wrote it was a later one: a shared reference that
//     comes before its chunk becomes the new chunk, and the file that
//     wrote it shares it instead (settle).

// contentTable is what the groups of one import have stored.
type contentTable struct {
	mu     sync.Mutex
	claims map[string]*claim          // content hash -> the group storing it
	fresh  map[uint64]*stratapb.Chunk // chunks written by this import, by id
}

// claim is one group's promise to store some contents; ids is filled
// before done is closed (0 for a content the group failed to store).
type claim struct {
	done chan struct{}
	ids  map[string]uint64
}

// claimAll claims the hashes nobody claimed yet and returns, for each,
// nil (claimed now by mine) or the claim to wait for.
func (ct *contentTable) claimAll(hashes [][]byte, mine *claim) []*claim {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	if ct.claims == nil {
		ct.claims = map[string]*claim{}
	}
	out := make([]*claim, len(hashes))
	for i, h := range hashes {
		if h == nil {
			continue
		}
		if c, ok := ct.claims[string(h)]; ok && c != mine {
			out[i] = c
			continue
		}
		ct.claims[string(h)] = mine
	}
	return out
}

// wrote records new chunks, so that the committer can move a chunk's
// ownership to the first file of its content.
func (ct *contentTable) wrote(commits []*stratapb.ChunkCommit) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	if ct.fresh == nil {
		ct.fresh = map[uint64]*stratapb.Chunk{}
	}
	for _, cc := range commits {
		if cc != nil && !cc.Shared && len(cc.Chunk.GetHash()) > 0 {
			ct.fresh[cc.Chunk.Id] = cc.Chunk
		}
	}
}

func (ct *contentTable) freshChunk(id uint64) *stratapb.Chunk {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	return ct.fresh[id]
}

// storeGroup reads a group of small files and stores the contents no
// other group claimed in one StoreSmall; the others are shared once their
// claimant has stored them. A file that grew past one chunk since it was
// listed is stored on its own.
func (w *treeWriter) storeGroup(g []*planned) (err error) {
	mine := &claim{done: make(chan struct{}), ids: map[string]uint64{}}
	defer func() {
		close(mine.done)
		for _, p := range g {
			if err != nil && p.err == nil {
				p.err = err
			}
			close(p.stored)
		}
	}()
	datas, hashes, alone, err := w.readGroup(g)
	if err != nil {
		return err
	}
	wait := w.contents.claimAll(hashes, mine)
	todo := make([][]byte, len(g))
	for i := range g {
		if wait[i] == nil {
			todo[i] = datas[i]
		}
	}
	out, st, err := w.s.cl.StoreSmall(w.ctx, w.anchor, todo)
	if err != nil {
		return fmt.Errorf("imagestore: store %d small files (%q...): %w", len(g), g[0].e.Path, err)
	}
	w.contents.wrote(out)
	for i, cc := range out {
		if cc != nil && wait[i] == nil {
			mine.ids[string(hashes[i])] = cc.Chunk.Id
		}
	}
	w.stats.stored.Add(st.Written)
	for i, p := range g {
		if alone[i] {
			continue // stored on its own
		}
		p.size = int64(len(datas[i]))
		w.stats.bytes.Add(p.size)
		if wait[i] != nil {
			if out[i], err = w.shareClaimed(wait[i], hashes[i], len(datas[i]), p.e.Path); err != nil {
				return err
			}
		}
		if out[i] != nil {
			p.chunks = []*stratapb.ChunkCommit{out[i]}
		}
	}
	return nil
}

// readGroup reads the files of a group and hashes their contents (nil
// hash: nothing to store: empty or all zeros). A file that grew past one
// chunk is stored on its own (alone).
func (w *treeWriter) readGroup(g []*planned) (datas, hashes [][]byte, alone []bool, err error) {
	datas, hashes, alone = make([][]byte, len(g)), make([][]byte, len(g)), make([]bool, len(g))
	for i, p := range g {
		d, err := readData(p.e)
		if err != nil {
			return nil, nil, nil, err
		}
		if int64(len(d)) > w.smallMax() { // it grew since it was listed
			if err := w.storeAlone(p, d); err != nil {
				return nil, nil, nil, err
			}
			alone[i] = true
			continue
		}
		datas[i] = d
		if len(d) > 0 && !allZero(d) {
			sum := sha256.Sum256(d)
			hashes[i] = sum[:]
		}
	}
	return datas, hashes, alone, nil
}

func (w *treeWriter) storeAlone(p *planned, d []byte) error {
	chunks, st, err := w.s.cl.StoreContent(w.ctx, w.anchor, bytes.NewReader(d))
	if err != nil {
		return fmt.Errorf("imagestore: %s %q: %w", p.e.Kind, p.e.Path, err)
	}
	w.contents.wrote(chunks)
	p.chunks, p.size = chunks, st.Logical
	w.stats.bytes.Add(st.Logical)
	w.stats.stored.Add(st.Written)
	return nil
}

// shareClaimed waits for the group that claimed a content and returns a
// shared commit of the chunk it stored.
func (w *treeWriter) shareClaimed(c *claim, hash []byte, size int, path string) (*stratapb.ChunkCommit, error) {
	select {
	case <-c.done:
	case <-w.ctx.Done():
		return nil, w.ctx.Err()
	}
	id := c.ids[string(hash)]
	if id == 0 {
		return nil, fmt.Errorf("imagestore: file %q: the group storing its content failed", path)
	}
	return &stratapb.ChunkCommit{Shared: true, Chunk: &stratapb.Chunk{Id: id, Size: uint32(size), Hash: hash}}, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// readData returns the whole data of a small regular file.
func readData(e *Entry) ([]byte, error) {
	if e.Data != nil {
		return e.Data, nil
	}
	r, err := e.Open()
	if err != nil {
		return nil, fmt.Errorf("imagestore: %s %q: %w", e.Kind, e.Path, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("imagestore: %s %q: %w", e.Kind, e.Path, err)
	}
	return b, nil
}

// settle fixes a file's chunk commits for the order entries are made in:
// the first commit of a content written by this import is the chunk
// itself (its owner), later ones share it; a second chunk of a content
// already committed (two writers of one content) is not committed, the
// file shares the first instead.
func (w *treeWriter) settle(chunks []*stratapb.ChunkCommit) {
	for i, cc := range chunks {
		h := string(cc.Chunk.GetHash())
		if h == "" {
			continue
		}
		if id, ok := w.regd[h]; ok {
			if !cc.Shared || cc.Chunk.Id != id {
				chunks[i] = &stratapb.ChunkCommit{Shared: true, Chunk: &stratapb.Chunk{Index: cc.Chunk.Index, Id: id, Size: cc.Chunk.Size, Hash: cc.Chunk.Hash}}
			}
			continue
		}
		w.regd[h] = cc.Chunk.Id
		if !cc.Shared {
			continue
		}
		if ch := w.contents.freshChunk(cc.Chunk.Id); ch != nil {
			own := proto.Clone(ch).(*stratapb.Chunk)
			own.Index = cc.Chunk.Index
			chunks[i] = &stratapb.ChunkCommit{Chunk: own}
		}
	}
}
