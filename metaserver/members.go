package metaserver

import (
	"context"
	"net"
	"syscall"

	"github.com/hashicorp/raft"

	"github.com/strata-hpc/strata/internal/rpcerr"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// AddMember adds a voter. The new server must be running with an empty raft
// directory and no --peers; it catches up from the leader (from a snapshot
// when the log it needs was compacted). Adding a server that is already a
// voter at the same address is a no-op. With Nonvoter the server joins as
// a non-voter (it replicates but is not in the quorum); adding it again
// without Nonvoter promotes it.
func (s *Server) AddMember(ctx context.Context, r *stratapb.AddMemberRequest) (*stratapb.AddMemberResponse, error) {
	if r.Id == "" || len(r.Id) > 64 {
		return nil, rpcerr.Errno(syscall.EINVAL, "member id must be 1..64 bytes")
	}
	if _, _, err := net.SplitHostPort(r.RaftAddr); err != nil {
		return nil, rpcerr.Errno(syscall.EINVAL, "raft address %q: %v", r.RaftAddr, err)
	}
	if !s.IsLeader() {
		return nil, rpcerr.NotLeader(s.leaderHint())
	}
	add, kind := s.parts.raft.AddVoter, "voter"
	if r.Nonvoter {
		add, kind = s.parts.raft.AddNonvoter, "non-voter"
	}
	if err := add(raft.ServerID(r.Id), raft.ServerAddress(r.RaftAddr), 0, s.cfg.ApplyTimeout).Error(); err != nil {
		return nil, s.raftErr(err)
	}
	s.log.Info(kind+" added", "member", r.Id, "raft", r.RaftAddr)
	return &stratapb.AddMemberResponse{}, nil
}

// RemoveMember removes a voter (a dead one being replaced, or one being
// retired). Removing the leader itself makes it step down after the
// change commits; the others elect a new leader.
func (s *Server) RemoveMember(ctx context.Context, r *stratapb.RemoveMemberRequest) (*stratapb.RemoveMemberResponse, error) {
	if !s.IsLeader() {
		return nil, rpcerr.NotLeader(s.leaderHint())
	}
	cf := s.parts.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return nil, s.raftErr(err)
	}
	found := false
	for _, srv := range cf.Configuration().Servers {
		found = found || string(srv.ID) == r.Id
	}
	if !found {
		return nil, rpcerr.Errno(syscall.ENOENT, "no member %q", r.Id)
	}
	if len(cf.Configuration().Servers) == 1 {
		return nil, rpcerr.Errno(syscall.EBUSY, "cannot remove the last voter")
	}
	if err := s.parts.raft.RemoveServer(raft.ServerID(r.Id), 0, s.cfg.ApplyTimeout).Error(); err != nil {
		return nil, s.raftErr(err)
	}
	s.log.Info("voter removed", "member", r.Id)
	return &stratapb.RemoveMemberResponse{}, nil
}
