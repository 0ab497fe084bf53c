package dataserver

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/klauspost/reedsolomon"

	"github.com/strata-hpc/strata/internal/crc32c"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// errChunkCRC marks a decode whose result contradicts the chunk's
// end-to-end CRC: one of the sources is wrong although its own block CRCs
// hold (written wrong, or a stale copy), so other sources may do better.
var errChunkCRC = errors.New("decoded chunk fails its end-to-end CRC")

// maxSubsets bounds the source subsets a rebuild tries after a CRC
// failure (4+2 missing one shard has 5; wide stripes would have many).
const maxSubsets = 64

// rebuildJob rebuilds one shard. It fetches exactly as many sources as the
// decode needs, data shards first (a decode from data shards alone is a
// copy for a missing parity shard's inputs and needs no inversion), and
// only asks further servers when a fetch fails: a fetch started "just in
// case" costs a whole shard of disk, network and CPU on a loaded cluster.
type rebuildJob struct {
	r       *repairService
	ch      *stratapb.Chunk
	index   int
	addrs   map[int]string // shard index -> its server's address
	untried []int          // shard indexes not fetched yet, in order of preference
	shards  [][]byte       // fetched shards by index (nil: not held)
	errs    []error
	capb    []byte // the leader's capability, also good for the peers' reads
}

func newRebuildJob(r *repairService, ch *stratapb.Chunk, index int, sources map[uint32]string, capb []byte) *rebuildJob {
	j := &rebuildJob{r: r, ch: ch, index: index, capb: capb, addrs: map[int]string{}, shards: make([][]byte, len(ch.GetServers()))}
	for i, id := range ch.GetServers() {
		if addr, ok := sources[id]; ok && i != index && id != 0 {
			j.addrs[i] = addr
			j.untried = append(j.untried, i) // ascending: data shards first
		}
	}
	return j
}

func (j *rebuildJob) need() int { return int(j.ch.GetDataShards()) }

// held lists the indexes of the fetched shards, ascending.
func (j *rebuildJob) held() []int {
	var out []int
	for i, s := range j.shards {
		if s != nil {
			out = append(out, i)
		}
	}
	return out
}

// fetchUpTo fetches untried shards, in parallel rounds, until want are
// held or no source is left.
func (j *rebuildJob) fetchUpTo(ctx context.Context, want int) {
	for len(j.held()) < want && len(j.untried) > 0 {
		n := min(want-len(j.held()), len(j.untried))
		batch := j.untried[:n]
		j.untried = j.untried[n:]
		type got struct {
			i    int
			data []byte
			err  error
		}
		results := make(chan got, len(batch))
		for _, i := range batch {
			go func() {
				data, err := j.r.readPeer(ctx, j.addrs[i], j.ch.GetId(), uint32(i), j.ch.GetShardSize(), j.capb)
				results <- got{i, data, err}
			}()
		}
		for range batch {
			g := <-results
			if g.err != nil {
				j.errs = append(j.errs, fmt.Errorf("shard %d: %w", g.i, g.err))
				continue
			}
			j.shards[g.i] = g.data
		}
	}
}

// run fetches, decodes and verifies. When the decoded chunk fails its CRC
// it fetches every remaining source and tries the other subsets of k; the
// shard left out of the subset that verifies is returned as the suspect.
func (j *rebuildJob) run(ctx context.Context) (data []byte, suspect int, err error) {
	k := j.need()
	j.fetchUpTo(ctx, k)
	first := j.held()
	if len(first) < k {
		return nil, -1, fetchError{fmt.Errorf("rebuild chunk %d: %d of %d shards readable: %w", j.ch.GetId(), len(first), k, errors.Join(j.errs...))}
	}
	data, err = j.decode(first[:k])
	if !errors.Is(err, errChunkCRC) {
		return data, -1, err
	}
	j.fetchUpTo(ctx, len(j.ch.GetServers()))
	tried := 1
	for _, sub := range combinations(j.held(), k) {
		if slices.Equal(sub, first[:k]) {
			continue
		}
		if tried++; tried > maxSubsets {
			break
		}
		d, derr := j.decode(sub)
		if derr == nil {
			return d, leftOut(first[:k], sub), nil
		}
		if !errors.Is(derr, errChunkCRC) {
			return nil, -1, derr
		}
	}
	return nil, -1, fmt.Errorf("%w (no other subset of the %d readable sources verifies either)", err, len(j.held()))
}

// fetchError marks a rebuild that could not read enough sources (as
// opposed to one whose sources disagree with the metadata).
type fetchError struct{ error }

func (e fetchError) Unwrap() error { return e.error }

// leftOut is a shard of a that is not in b (the suspect of a failed
// decode when b verifies), or -1.
func leftOut(a, b []int) int {
	for _, i := range a {
		if !slices.Contains(b, i) {
			return i
		}
	}
	return -1
}

// combinations lists the subsets of size k of idx, in lexicographic order.
func combinations(idx []int, k int) [][]int {
	var out [][]int
	cur := make([]int, 0, k)
	var rec func(start int)
	rec = func(start int) {
		if len(cur) == k {
			out = append(out, slices.Clone(cur))
			return
		}
		for i := start; i <= len(idx)-(k-len(cur)) && len(out) < maxSubsets+1; i++ {
			cur = append(cur, idx[i])
			rec(i + 1)
			cur = cur[:len(cur)-1]
		}
	}
	rec(0)
	return out
}

// decode computes the missing shard from the fetched shards in subset
// (exactly k of them) and verifies the chunk CRC when the metadata has one
// that covers the whole chunk. Only the data shards and the wanted shard
// are computed, and the CRC runs over the data shards in place.
func (j *rebuildJob) decode(subset []int) ([]byte, error) {
	ch := j.ch
	k, m := int(ch.GetDataShards()), int(ch.GetParityShards())
	size, shardSize := int(ch.GetSize()), int(ch.GetShardSize())
	if ch.GetScheme() == stratapb.Scheme_REPLICATED {
		s := j.shards[subset[0]]
		if err := verifyChunk(ch, [][]byte{s}, size, size == shardSize); err != nil {
			return nil, err
		}
		return s, nil
	}
	if m == 0 {
		return nil, errors.New("rebuild: a stripe without parity cannot be rebuilt")
	}
	enc, err := reedsolomon.New(k, m)
	if err != nil {
		return nil, fmt.Errorf("rebuild: codec %d+%d: %w", k, m, err)
	}
	shards := make([][]byte, len(ch.GetServers()))
	for _, i := range subset {
		shards[i] = j.shards[i]
	}
	required := make([]bool, len(shards))
	for i := range k {
		required[i] = true
	}
	required[j.index] = true
	if err := enc.ReconstructSome(shards, required); err != nil {
		return nil, fmt.Errorf("rebuild chunk %d: decode: %w", ch.GetId(), err)
	}
	verifiable := size > 0 && shardSize == (size+k-1)/k
	if err := verifyChunk(ch, shards[:k], size, verifiable); err != nil {
		return nil, err
	}
	return shards[j.index], nil
}

// verifyChunk checks the end-to-end CRC of the first size bytes of the
// data shards, in place: a wrong but self-consistent source shard must not
// be spread further.
func verifyChunk(ch *stratapb.Chunk, data [][]byte, size int, verifiable bool) error {
	if !verifiable || ch.GetCrc32C() == 0 {
		return nil
	}
	var got uint32
	for _, s := range data {
		n := min(size, len(s))
		got = crc32c.Update(got, s[:n])
		size -= n
	}
	if got != ch.GetCrc32C() {
		return fmt.Errorf("rebuild chunk %d: decoded data has CRC %08x, metadata says %08x: %w", ch.GetId(), got, ch.GetCrc32C(), errChunkCRC)
	}
	return nil
}
