package metaserver

import (
	"context"
	"time"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// lockService serves the Lock gRPC service (proto/stratapb/lock.proto) on
// the metaserver's gRPC server: mutations are raft commands through the
// leader, GetLock a linearizable read.
type lockService struct {
	stratapb.UnimplementedLockServer
	s *Server
}

func (l *lockService) KeepAlive(ctx context.Context, r *stratapb.LockKeepAliveRequest) (*stratapb.LockKeepAliveResponse, error) {
	return mutate[*stratapb.LockKeepAliveResponse](ctx, l.s, CmdLockKeepAlive, r.Header, r)
}

func (l *lockService) SetLock(ctx context.Context, r *stratapb.SetLockRequest) (*stratapb.SetLockResponse, error) {
	return mutate[*stratapb.SetLockResponse](ctx, l.s, CmdSetLock, r.Header, r)
}

func (l *lockService) ReleaseLocks(ctx context.Context, r *stratapb.ReleaseLocksRequest) (*stratapb.ReleaseLocksResponse, error) {
	return mutate[*stratapb.ReleaseLocksResponse](ctx, l.s, CmdReleaseLocks, r.Header, r)
}

func (l *lockService) GetLock(ctx context.Context, r *stratapb.GetLockRequest) (*stratapb.GetLockResponse, error) {
	resp := &stratapb.GetLockResponse{}
	err := l.s.read(ctx, r.Header, func(st *state) error {
		c, err := st.getLock(time.Now().UnixNano(), r.Ino, r.Lock)
		resp.Conflict = c
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}
