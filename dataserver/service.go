package dataserver

import (
	"context"
	"errors"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-hpc/strata/internal/capability"
	"github.com/strata-hpc/strata/internal/rpcerr"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// service implements stratapb.DataServer on a Store.
type service struct {
	stratapb.UnimplementedDataServer
	store *Store
	m     *metrics
	auth  *authorizer
}

var _ stratapb.DataServer = (*service)(nil)

func keyOf(k *stratapb.ShardKey) (Key, error) {
	if k == nil {
		return Key{}, status.Error(codes.InvalidArgument, "dataserver: missing shard key")
	}
	return Key{ChunkID: k.GetChunkId(), Index: k.GetIndex()}, nil
}

func (s *service) WriteShard(ctx context.Context, req *stratapb.WriteShardRequest) (*stratapb.WriteShardResponse, error) {
	k, err := keyOf(req.GetKey())
	if err != nil {
		return nil, err
	}
	if err := s.auth.check(ctx, "write", req.GetCapability(), k.ChunkID, capability.OpWrite); err != nil {
		return nil, err
	}
	if err := s.store.Put(ctx, k, req.GetData(), req.GetCrc32C()); err != nil {
		return nil, toStatus(err)
	}
	s.m.bytesWritten.Add(float64(len(req.GetData())))
	s.m.heal.fg.add(ctx, len(req.GetData()))
	return &stratapb.WriteShardResponse{}, nil
}

func (s *service) ReadShard(ctx context.Context, req *stratapb.ReadShardRequest) (*stratapb.ReadShardResponse, error) {
	k, err := keyOf(req.GetKey())
	if err != nil {
		return nil, err
	}
	if err := s.auth.check(ctx, "read", req.GetCapability(), k.ChunkID, capability.OpRead); err != nil {
		return nil, err
	}
	alloc, pr := pooledAlloc(ctx)
	data, size, err := s.store.read(ctx, k, req.GetOffset(), req.GetLength(), alloc)
	if err != nil {
		pr.release()
		return nil, toStatus(err)
	}
	s.m.bytesRead.Add(float64(len(data)))
	s.m.heal.fg.add(ctx, len(data))
	return &stratapb.ReadShardResponse{Data: data, ShardSize: size}, nil
}

func (s *service) DeleteShard(ctx context.Context, req *stratapb.DeleteShardRequest) (*stratapb.DeleteShardResponse, error) {
	k, err := keyOf(req.GetKey())
	if err != nil {
		return nil, err
	}
	if err := s.auth.check(ctx, "delete", req.GetCapability(), k.ChunkID, capability.OpDelete); err != nil {
		return nil, err
	}
	existed, err := s.store.Delete(ctx, k)
	if err != nil {
		return nil, toStatus(err)
	}
	return &stratapb.DeleteShardResponse{Existed: existed}, nil
}

func (s *service) StatShard(ctx context.Context, req *stratapb.StatShardRequest) (*stratapb.StatShardResponse, error) {
	k, err := keyOf(req.GetKey())
	if err != nil {
		return nil, err
	}
	if err := s.auth.check(ctx, "stat", req.GetCapability(), k.ChunkID, capability.OpRead); err != nil {
		return nil, err
	}
	info, err := s.store.Stat(ctx, k)
	if errors.Is(err, ErrNotFound) {
		return &stratapb.StatShardResponse{}, nil
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &stratapb.StatShardResponse{Exists: true, Size: info.Size, MtimeNs: info.ModTime.UnixNano()}, nil
}

// toStatus maps store errors to gRPC statuses, in one table. Domain errors
// carry an errno (rpcerr) so that clients can tell a full disk from gRPC
// flow control, and FUSE can return the right errno.
func toStatus(err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return rpcerr.Errno(syscall.ENOENT, "%v", err)
	case errors.Is(err, ErrInvalid):
		return rpcerr.Errno(syscall.EINVAL, "%v", err)
	case errors.Is(err, ErrNoSpace):
		return rpcerr.Errno(syscall.ENOSPC, "%v", err)
	case errors.Is(err, ErrCorrupt):
		return withErrno(codes.DataLoss, syscall.EIO, err)
	case errors.Is(err, ErrUnsupportedVersion):
		return withErrno(codes.FailedPrecondition, syscall.EIO, err)
	case errors.Is(err, ErrClosed):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Internal, err.Error())
}

// withErrno is rpcerr.Errno with a code of our choosing: rpcerr has no errno
// that maps to DataLoss.
func withErrno(c codes.Code, e syscall.Errno, err error) error {
	st := status.New(c, err.Error())
	if st2, derr := st.WithDetails(&stratapb.ErrorInfo{Errno: int32(e)}); derr == nil {
		st = st2
	}
	return st.Err()
}
