package metaserver

import (
	"context"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// snapService serves the Snap gRPC service (proto/stratapb/snap.proto) on
// the metaserver's gRPC server: same leader rules, same dedup of retries.
type snapService struct {
	stratapb.UnimplementedSnapServer
	s *Server
}

func (x *snapService) Mknod(ctx context.Context, r *stratapb.MknodRequest) (*stratapb.MknodResponse, error) {
	return mutate[*stratapb.MknodResponse](ctx, x.s, CmdMknod, r.Header, r)
}

func (x *snapService) LookupChunks(ctx context.Context, r *stratapb.LookupChunksRequest) (resp *stratapb.LookupChunksResponse, err error) {
	err = x.s.read(ctx, r.Header, func(st *state) (e error) {
		resp, e = st.lookupChunks(r)
		return e
	})
	return resp, err
}

func (x *snapService) Freeze(ctx context.Context, r *stratapb.FreezeRequest) (*stratapb.FreezeResponse, error) {
	return mutate[*stratapb.FreezeResponse](ctx, x.s, CmdFreeze, r.Header, r)
}

func (x *snapService) CloneTree(ctx context.Context, r *stratapb.CloneTreeRequest) (*stratapb.CloneTreeResponse, error) {
	return mutate[*stratapb.CloneTreeResponse](ctx, x.s, CmdCloneTree, r.Header, r)
}

func (x *snapService) RemoveTree(ctx context.Context, r *stratapb.RemoveTreeRequest) (*stratapb.RemoveTreeResponse, error) {
	return mutate[*stratapb.RemoveTreeResponse](ctx, x.s, CmdRemoveTree, r.Header, r)
}

func (x *snapService) CreateSnapshot(ctx context.Context, r *stratapb.CreateSnapshotRequest) (*stratapb.CreateSnapshotResponse, error) {
	return mutate[*stratapb.CreateSnapshotResponse](ctx, x.s, CmdCreateSnapshot, r.Header, r)
}

func (x *snapService) DeleteSnapshot(ctx context.Context, r *stratapb.DeleteSnapshotRequest) (*stratapb.DeleteSnapshotResponse, error) {
	return mutate[*stratapb.DeleteSnapshotResponse](ctx, x.s, CmdDeleteSnapshot, r.Header, r)
}

func (x *snapService) RestoreSnapshot(ctx context.Context, r *stratapb.RestoreSnapshotRequest) (*stratapb.RestoreSnapshotResponse, error) {
	return mutate[*stratapb.RestoreSnapshotResponse](ctx, x.s, CmdRestoreSnapshot, r.Header, r)
}

func (x *snapService) ListSnapshots(ctx context.Context, r *stratapb.ListSnapshotsRequest) (resp *stratapb.ListSnapshotsResponse, err error) {
	err = x.s.read(ctx, r.Header, func(st *state) error {
		resp = st.listSnapshots(r)
		return nil
	})
	return resp, err
}

func (x *snapService) Usage(ctx context.Context, r *stratapb.UsageRequest) (resp *stratapb.UsageResponse, err error) {
	err = x.s.read(ctx, r.Header, func(st *state) (e error) {
		resp, e = st.usage(r)
		return e
	})
	return resp, err
}
