package metaserver

import (
	"context"
	"fmt"
	"sync"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// LoadTestFiles fills the namespace through raft with dirs*perDir files of
// one 4+2 chunk each, as a benchmark fixture. It must run on the leader.
func (s *Server) LoadTestFiles(ctx context.Context, dirs, perDir int) error {
	for i := 1; i <= 6; i++ {
		if _, err := s.applyCmd(ctx, CmdRegisterDataServer, nil, &stratapb.RegisterDataServerCommand{Uuid: fmt.Sprintf("bench-%d", i), Addr: "127.0.0.1:1"}); err != nil {
			return err
		}
	}
	work := make(chan [2]int, 1024)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for w := 0; w < 512; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for job := range work {
				if err := s.loadOne(ctx, uint64(job[0]), job[1]); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for d := 0; d < dirs; d++ {
		r, err := s.applyCmd(ctx, CmdMkdir, nil, &stratapb.MkdirRequest{Parent: rootIno, Name: fmt.Sprintf("d%d", d), Mode: 0o755})
		if err != nil {
			close(work)
			return err
		}
		for f := 0; f < perDir; f++ {
			work <- [2]int{int(r.(*stratapb.MkdirResponse).Attr.Ino), f}
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

func (s *Server) loadOne(ctx context.Context, dir uint64, f int) error {
	r, err := s.applyCmd(ctx, CmdCreate, nil, &stratapb.CreateRequest{Parent: dir, Name: fmt.Sprintf("file-%06d.dat", f), Mode: 0o644})
	if err != nil {
		return err
	}
	ino := r.(*stratapb.CreateResponse).Attr.Ino
	a, err := s.applyCmd(ctx, CmdAllocateChunks, nil, &stratapb.AllocateChunksRequest{Ino: ino, Count: 1})
	if err != nil {
		return err
	}
	id := a.(*stratapb.AllocateChunksResponse).Allocations[0].ChunkId
	_, err = s.applyCmd(ctx, CmdCommitChunks, nil, &stratapb.CommitChunksRequest{Ino: ino, MinSize: 3 << 20, Chunks: []*stratapb.ChunkCommit{{Chunk: &stratapb.Chunk{
		Index: 0, Id: id, Size: 3 << 20, Scheme: stratapb.Scheme_ERASURE, DataShards: 4, ParityShards: 2,
		ShardSize: 768 << 10, Servers: []uint32{1, 2, 3, 4, 5, 6}, Crc32C: 12345,
	}}}})
	return err
}

// DropHeartbeats makes this server ignore (or again hear) the heartbeats
// of dataserver id, as if they were lost on the way.
func (s *Server) DropHeartbeats(id uint32, drop bool) {
	s.live.mu.Lock()
	defer s.live.mu.Unlock()
	if s.live.deaf == nil {
		s.live.deaf = map[uint32]bool{}
	}
	s.live.deaf[id] = drop
}
