package metaserver

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/strata-hpc/strata/internal/capability"
	"github.com/strata-hpc/strata/internal/rpcerr"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// applyCmd proposes one command through raft and waits for its outcome.
func (s *Server) applyCmd(ctx context.Context, t CommandType, hdr *stratapb.RequestHeader, req proto.Message) (proto.Message, error) {
	if !s.IsLeader() {
		return nil, rpcerr.NotLeader(s.leaderHint())
	}
	data, err := encodeCommand(t, hdr, time.Now().UnixNano(), req)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	f := s.parts.raft.Apply(data, s.cfg.ApplyTimeout)
	if err := f.Error(); err != nil {
		return nil, s.raftErr(err)
	}
	res, ok := f.Response().(*applyResult)
	if !ok || res == nil {
		return nil, status.Errorf(codes.Internal, "metaserver: no result for command %d", t)
	}
	if res.err != nil {
		return nil, toStatus(res.err)
	}
	return res.resp, nil
}

// mutate is applyCmd with the response typed.
func mutate[R proto.Message](ctx context.Context, s *Server, t CommandType, hdr *stratapb.RequestHeader, req proto.Message) (R, error) {
	var zero R
	resp, err := s.applyCmd(ctx, t, hdr, req)
	if err != nil {
		return zero, err
	}
	r, ok := resp.(R)
	if !ok {
		return zero, status.Errorf(codes.Internal, "metaserver: command %d returned %T", t, resp)
	}
	return r, nil
}

// raftErr maps raft's errors to what a client should do: the "leadership"
// family means "ask the leader again" (the request id makes that safe).
func (s *Server) raftErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrRaftShutdown):
		return rpcerr.NotLeader(s.leaderHint())
	case errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, context.DeadlineExceeded):
		return status.Errorf(codes.Unavailable, "metaserver: raft busy: %v", err)
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Errorf(codes.Unavailable, "metaserver: raft: %v", err)
}

func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if ne, ok := errnoOf(err); ok {
		return rpcerr.Errno(ne.errno, "%s", ne.msg)
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Internal, err.Error())
}

// read serves a read: linearizable through the leader unless the caller
// accepts a possibly stale answer from any server.
func (s *Server) read(ctx context.Context, hdr *stratapb.RequestHeader, fn func(st *state) error) error {
	if !hdr.GetStaleOk() {
		if !s.IsLeader() {
			return rpcerr.NotLeader(s.leaderHint())
		}
		if err := s.reads.wait(ctx); err != nil {
			return s.raftErr(err)
		}
	}
	return toStatus(s.fsm.read(func(st *state) error {
		if err := st.checkTenant(hdr); err != nil {
			return err
		}
		return fn(st)
	}))
}

func (s *Server) Lookup(ctx context.Context, r *stratapb.LookupRequest) (*stratapb.LookupResponse, error) {
	resp := &stratapb.LookupResponse{}
	err := s.read(ctx, r.Header, func(st *state) error {
		_, n, err := st.entry(r.Parent, r.Name)
		if err == nil {
			resp.Attr = n.attr()
		}
		return err
	})
	return resp, err
}

func (s *Server) GetAttr(ctx context.Context, r *stratapb.GetAttrRequest) (*stratapb.GetAttrResponse, error) {
	resp := &stratapb.GetAttrResponse{}
	err := s.read(ctx, r.Header, func(st *state) error {
		n, err := st.get(r.Ino)
		if err == nil {
			resp.Attr = n.attr()
		}
		return err
	})
	return resp, err
}

func (s *Server) ReadDir(ctx context.Context, r *stratapb.ReadDirRequest) (resp *stratapb.ReadDirResponse, err error) {
	err = s.read(ctx, r.Header, func(st *state) (e error) {
		resp, e = st.readDir(r)
		return e
	})
	return resp, err
}

func (s *Server) GetChunks(ctx context.Context, r *stratapb.GetChunksRequest) (resp *stratapb.GetChunksResponse, err error) {
	err = s.read(ctx, r.Header, func(st *state) (e error) {
		resp, e = st.getChunks(r)
		return e
	})
	if err == nil && !r.GetHeader().GetStaleOk() {
		s.hideDownServers(resp)
	}
	if err == nil {
		ids := make([]uint64, 0, len(resp.Chunks))
		for _, ch := range resp.Chunks {
			ids = append(ids, ch.Id)
		}
		resp.Caps, err = s.attachCaps(capability.OpRead, ids...)
	}
	return resp, err
}

// hideDownServers leaves out the addresses of dataservers that are down:
// a reader then treats their shards as unavailable at once instead of
// waiting for a connection to time out.
// A leader too new to have heard every heartbeat hides nothing: its view
// of who is down may be left over from an earlier term.
func (s *Server) hideDownServers(resp *stratapb.GetChunksResponse) {
	now := time.Now()
	if now.Sub(time.Unix(0, s.leaderFrom.Load())) <= s.cfg.DataServerGrace {
		return
	}
	for id := range resp.ServerAddrs {
		if h, ok := s.live.get(id); ok && now.Sub(h.last) > s.cfg.DataServerGrace {
			delete(resp.ServerAddrs, id)
		}
	}
}

func (s *Server) GetXattr(ctx context.Context, r *stratapb.GetXattrRequest) (resp *stratapb.GetXattrResponse, err error) {
	err = s.read(ctx, r.Header, func(st *state) (e error) {
		resp, e = st.getXattr(r)
		return e
	})
	return resp, err
}

func (s *Server) ListXattr(ctx context.Context, r *stratapb.ListXattrRequest) (resp *stratapb.ListXattrResponse, err error) {
	err = s.read(ctx, r.Header, func(st *state) (e error) {
		resp, e = st.listXattr(r)
		return e
	})
	return resp, err
}

func (s *Server) SetAttr(ctx context.Context, r *stratapb.SetAttrRequest) (*stratapb.SetAttrResponse, error) {
	return mutate[*stratapb.SetAttrResponse](ctx, s, CmdSetAttr, r.Header, r)
}

func (s *Server) Mkdir(ctx context.Context, r *stratapb.MkdirRequest) (*stratapb.MkdirResponse, error) {
	return mutate[*stratapb.MkdirResponse](ctx, s, CmdMkdir, r.Header, r)
}

func (s *Server) Create(ctx context.Context, r *stratapb.CreateRequest) (*stratapb.CreateResponse, error) {
	return mutate[*stratapb.CreateResponse](ctx, s, CmdCreate, r.Header, r)
}

func (s *Server) Unlink(ctx context.Context, r *stratapb.UnlinkRequest) (*stratapb.UnlinkResponse, error) {
	return mutate[*stratapb.UnlinkResponse](ctx, s, CmdUnlink, r.Header, r)
}

func (s *Server) Rmdir(ctx context.Context, r *stratapb.RmdirRequest) (*stratapb.RmdirResponse, error) {
	return mutate[*stratapb.RmdirResponse](ctx, s, CmdRmdir, r.Header, r)
}

func (s *Server) Rename(ctx context.Context, r *stratapb.RenameRequest) (*stratapb.RenameResponse, error) {
	return mutate[*stratapb.RenameResponse](ctx, s, CmdRename, r.Header, r)
}

func (s *Server) Symlink(ctx context.Context, r *stratapb.SymlinkRequest) (*stratapb.SymlinkResponse, error) {
	return mutate[*stratapb.SymlinkResponse](ctx, s, CmdSymlink, r.Header, r)
}

func (s *Server) Link(ctx context.Context, r *stratapb.LinkRequest) (*stratapb.LinkResponse, error) {
	return mutate[*stratapb.LinkResponse](ctx, s, CmdLink, r.Header, r)
}

func (s *Server) SetXattr(ctx context.Context, r *stratapb.SetXattrRequest) (*stratapb.SetXattrResponse, error) {
	return mutate[*stratapb.SetXattrResponse](ctx, s, CmdSetXattr, r.Header, r)
}

func (s *Server) RemoveXattr(ctx context.Context, r *stratapb.RemoveXattrRequest) (*stratapb.RemoveXattrResponse, error) {
	return mutate[*stratapb.RemoveXattrResponse](ctx, s, CmdRemoveXattr, r.Header, r)
}

func (s *Server) CommitChunks(ctx context.Context, r *stratapb.CommitChunksRequest) (*stratapb.CommitChunksResponse, error) {
	if len(r.Chunks) > 1024 {
		return nil, rpcerr.Errno(syscall.EINVAL, "at most 1024 chunks per commit, got %d", len(r.Chunks))
	}
	return mutate[*stratapb.CommitChunksResponse](ctx, s, CmdCommitChunks, r.Header, r)
}

// AllocateChunks reserves chunk ids through raft, then places their shards
// on live dataservers (placement is the leader's choice, not replicated).
// The raft command checks the inode (exists, is a regular file, belongs to
// the tenant); only then is its policy read, from this leader's own state,
// which holds everything committed before the command.
func (s *Server) AllocateChunks(ctx context.Context, r *stratapb.AllocateChunksRequest) (*stratapb.AllocateChunksResponse, error) {
	if len(r.Sizes) != 0 && len(r.Sizes) != int(r.Count) {
		return nil, rpcerr.Errno(syscall.EINVAL, "%d sizes for %d chunks", len(r.Sizes), r.Count)
	}
	resp, err := mutate[*stratapb.AllocateChunksResponse](ctx, s, CmdAllocateChunks, r.Header, r)
	if err != nil {
		return nil, err
	}
	var pol policy
	err = s.fsm.read(func(st *state) error {
		n, err := st.get(r.Ino)
		if err != nil {
			return err // unlinked since: the chunks will never be committed
		}
		pol = n.pol
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	// The FSM's response may be a dedup entry shared with other readers:
	// fill in placements on a copy.
	out := proto.Clone(resp).(*stratapb.AllocateChunksResponse)
	if err := s.placeAllocations(out, pol, r.Sizes); err != nil {
		return nil, s.placementErr(err)
	}
	ids := make([]uint64, 0, len(out.Allocations))
	for _, a := range out.Allocations {
		ids = append(ids, a.ChunkId)
	}
	if out.Caps, err = s.attachCaps(capability.OpWrite, ids...); err != nil {
		return nil, err
	}
	return out, nil
}

// placementErr maps a placement failure: too few dataservers alive, or a
// leader so new it has not heard every heartbeat yet, means "try again
// shortly" (Unavailable, which clients retry); too few with room is ENOSPC.
func (s *Server) placementErr(err error) error {
	if errors.Is(err, ErrNotEnoughServers) || time.Since(time.Unix(0, s.leaderFrom.Load())) < s.cfg.DataServerGrace {
		return status.Errorf(codes.Unavailable, "metaserver: %v", err)
	}
	return toStatus(err)
}

func (s *Server) ReportBadShard(ctx context.Context, r *stratapb.ReportBadShardRequest) (*stratapb.ReportBadShardResponse, error) {
	if err := s.tenantMayReport(ctx, r); err != nil {
		return nil, err
	}
	if transportFailure(r.Reason) {
		// The server could not be reached: that is liveness's business
		// (down, then lost after the repair delay), not the shard's.
		s.log.Debug("unreachable shard reported; left to liveness", "chunk", r.ChunkId, "shard", r.ShardIndex, "server", r.ServerId)
		return &stratapb.ReportBadShardResponse{}, nil
	}
	cmd := &stratapb.ReportBadShardCommand{ChunkId: r.ChunkId, ShardIndex: r.ShardIndex, ServerId: r.ServerId, Reason: r.Reason}
	s.log.Warn("bad shard reported", "chunk", r.ChunkId, "shard", r.ShardIndex, "server", r.ServerId, "reason", r.Reason)
	return mutate[*stratapb.ReportBadShardResponse](ctx, s, CmdReportBadShard, r.Header, cmd)
}

func (s *Server) RegisterDataServer(ctx context.Context, r *stratapb.RegisterDataServerRequest) (*stratapb.RegisterDataServerResponse, error) {
	if err := s.checkIdentity(r); err != nil {
		return nil, err
	}
	cmd := &stratapb.RegisterDataServerCommand{Uuid: r.Uuid, Addr: r.Addr, Labels: r.Labels}
	resp, err := mutate[*stratapb.RegisterDataServerResponse](ctx, s, CmdRegisterDataServer, nil, cmd)
	if err != nil {
		return nil, err
	}
	// A new identity on an address means the old server there is gone
	// (its disk was replaced): it must not receive shards any more.
	_ = s.fsm.read(func(st *state) error {
		for id, ds := range st.servers {
			if id != resp.Id && ds.addr == r.Addr {
				s.live.forget(id)
			}
		}
		return nil
	})
	s.live.beat(&stratapb.HeartbeatRequest{Id: resp.Id, CapacityBytes: r.CapacityBytes, UsedBytes: r.UsedBytes, FreeBytes: r.CapacityBytes - min(r.UsedBytes, r.CapacityBytes)}, time.Now())
	s.log.Info("dataserver registered", "id", resp.Id, "uuid", r.Uuid, "addr", r.Addr)
	// resp may be a dedup entry shared with other readers: answer a copy.
	return &stratapb.RegisterDataServerResponse{Id: resp.Id, CapKeys: s.dataServerKeys()}, nil
}

func (s *Server) Heartbeat(ctx context.Context, r *stratapb.HeartbeatRequest) (*stratapb.HeartbeatResponse, error) {
	if !s.IsLeader() {
		return nil, rpcerr.NotLeader(s.leaderHint())
	}
	err := s.fsm.read(func(st *state) error {
		ds, ok := st.servers[r.Id]
		switch {
		case !ok:
			return errnof(syscall.ENOENT, "dataserver %d is not registered", r.Id)
		case r.Uuid != "" && ds.uuid != r.Uuid:
			return errnof(syscall.EPERM, "dataserver id %d belongs to %s, not %s", r.Id, ds.uuid, r.Uuid)
		}
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	s.live.beat(r, time.Now())
	return &stratapb.HeartbeatResponse{CapKeys: s.dataServerKeys()}, nil
}

func (s *Server) RegisterMeta(ctx context.Context, r *stratapb.RegisterMetaRequest) (*stratapb.RegisterMetaResponse, error) {
	cmd := &stratapb.RegisterMetaCommand{ServerId: r.ServerId, GrpcAddr: r.GrpcAddr}
	return mutate[*stratapb.RegisterMetaResponse](ctx, s, CmdRegisterMeta, nil, cmd)
}

func (s *Server) ClusterStatus(ctx context.Context, r *stratapb.ClusterStatusRequest) (*stratapb.ClusterStatusResponse, error) {
	if !s.IsLeader() {
		return nil, rpcerr.NotLeader(s.leaderHint())
	}
	rs := s.parts.raft.Stats()
	resp := &stratapb.ClusterStatusResponse{LeaderId: s.cfg.ID, LeaderAddr: s.adv, AppliedIndex: s.fsm.AppliedIndex()}
	fmt.Sscan(rs["term"], &resp.Term)
	fmt.Sscan(rs["commit_index"], &resp.CommitIndex)
	cf := s.parts.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return nil, s.raftErr(err)
	}
	now := time.Now()
	_ = s.fsm.read(func(st *state) error {
		for _, srv := range cf.Configuration().Servers {
			resp.Members = append(resp.Members, &stratapb.MetaMember{
				Id: string(srv.ID), RaftAddr: string(srv.Address), GrpcAddr: st.members[string(srv.ID)],
				Voter: srv.Suffrage == raft.Voter, Leader: string(srv.ID) == s.cfg.ID,
			})
		}
		for id, ds := range st.servers {
			d := s.dsStatus(id, ds, now)
			d.Lost, d.Draining = st.heal.lost[id], st.heal.draining[id]
			resp.Dataservers = append(resp.Dataservers, d)
		}
		resp.Inodes, resp.Chunks, resp.LogicalBytes = uint64(len(st.inodes)), uint64(len(st.refs)), st.logical
		return nil
	})
	sortStatus(resp)
	s.redactStatus(ctx, resp)
	return resp, nil
}

func (s *Server) dsStatus(id uint32, ds *dataServer, now time.Time) *stratapb.DataServerStatus {
	st := &stratapb.DataServerStatus{Id: id, Uuid: ds.uuid, Addr: ds.addr, Labels: ds.labels, LastHeartbeatMsAgo: -1}
	if h, ok := s.live.get(id); ok {
		st.CapacityBytes, st.UsedBytes, st.FreeBytes, st.ShardCount, st.ReadOnly = h.capacity, h.used, h.free, h.shards, h.readOnly
		st.LastHeartbeatMsAgo = now.Sub(h.last).Milliseconds()
		st.Alive = now.Sub(h.last) <= s.cfg.DataServerGrace
	}
	return st
}

// maxBatch bounds one Batch request.
const maxBatch = 1024

// Batch answers many reads behind one leader check and one lock.
func (s *Server) Batch(ctx context.Context, r *stratapb.BatchRequest) (*stratapb.BatchResponse, error) {
	if len(r.Ops) > maxBatch {
		return nil, rpcerr.Errno(syscall.EINVAL, "batch of %d operations exceeds %d", len(r.Ops), maxBatch)
	}
	resp := &stratapb.BatchResponse{Results: make([]*stratapb.BatchResult, len(r.Ops))}
	err := s.read(ctx, r.Header, func(st *state) error {
		for i, op := range r.Ops {
			resp.Results[i] = batchOne(st, op)
		}
		return nil
	})
	return resp, err
}

func batchOne(st *state, op *stratapb.BatchOp) *stratapb.BatchResult {
	var n *inode
	var err error
	switch o := op.GetOp().(type) {
	case *stratapb.BatchOp_Lookup:
		_, n, err = st.entry(o.Lookup.GetParent(), o.Lookup.GetName())
	case *stratapb.BatchOp_Getattr:
		n, err = st.get(o.Getattr.GetIno())
	default:
		err = errnof(syscall.EINVAL, "empty batch operation")
	}
	if err != nil {
		res := &stratapb.BatchResult{Errno: int32(syscall.EIO), Message: err.Error()}
		if ne, ok := errnoOf(err); ok {
			res.Errno, res.Message = int32(ne.errno), ne.msg
		}
		return res
	}
	return &stratapb.BatchResult{Attr: n.attr()}
}
