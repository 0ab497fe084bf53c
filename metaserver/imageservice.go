package metaserver

import (
	"context"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// imageService serves the Image gRPC service (proto/stratapb/image.proto):
// whole-tree questions of the image store, answered from the state in one
// call.
type imageService struct {
	stratapb.UnimplementedImageServer
	s *Server
}

func (x *imageService) TreeUsage(ctx context.Context, r *stratapb.TreeUsageRequest) (resp *stratapb.TreeUsageResponse, err error) {
	err = x.s.read(ctx, r.Header, func(st *state) (e error) {
		resp, e = st.treeUsage(r)
		return e
	})
	return resp, err
}

// treeUsage adds up the tree at r.Ino (usageOf) and then counts the chunks
// that something outside the tree also references: a chunk referenced k
// times inside the tree and more than k times in all is shared.
func (s *state) treeUsage(r *stratapb.TreeUsageRequest) (*stratapb.TreeUsageResponse, error) {
	root, err := s.get(r.Ino)
	if err != nil {
		return nil, err
	}
	resp := &stratapb.TreeUsageResponse{Usage: s.usageOf(root, "")}
	inside := map[uint64]uint32{}
	byID := map[uint64]*chunk{}
	seen := map[uint64]bool{}
	s.walkTree(root, func(n, _ *inode, _ string) bool {
		if seen[n.ino] {
			return false
		}
		seen[n.ino] = true
		for i := range n.chunks {
			c := &n.chunks[i]
			inside[c.id]++
			byID[c.id] = c
		}
		return true
	})
	for id, k := range inside {
		if s.refs[id] > k {
			c := byID[id]
			resp.SharedChunks++
			resp.SharedStoredBytes += storedBytes(c)
			resp.SharedLogicalBytes += uint64(c.size) * uint64(k)
		}
	}
	return resp, nil
}
