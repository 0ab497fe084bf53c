package metaserver

import (
	"google.golang.org/grpc"

	"github.com/strata-hpc/strata/internal/ratelimit"
)

// Limits bounds what one client may send to a metaserver.
type Limits struct {
	// MaxRecvMsgSize is the largest gRPC request accepted. Metadata
	// requests are small: the largest legitimate ones are a 64 KiB xattr,
	// a commit of 1,024 chunk layouts (~200 KiB) and a lookup of 1,024
	// chunk hashes (~40 KiB). Default 4 MiB; a larger request is refused
	// with ResourceExhausted before it is decoded.
	MaxRecvMsgSize int
	// Rate is the per-client request rate (ratelimit.Default when zero;
	// a negative Rate turns rate limiting off).
	Rate ratelimit.Config
}

// DefaultMaxRecvMsgSize is the metaserver's default MaxRecvMsgSize.
const DefaultMaxRecvMsgSize = 4 << 20

// fill puts defaults into unset fields.
func (l *Limits) fill() {
	if l.MaxRecvMsgSize <= 0 {
		l.MaxRecvMsgSize = DefaultMaxRecvMsgSize
	}
	switch {
	case l.Rate.Rate == 0:
		l.Rate = ratelimit.Default()
	case l.Rate.Rate < 0:
		l.Rate = ratelimit.Config{}
	}
}

// limitOptions returns the gRPC server options that enforce l: the message
// size cap (MaxRecvMsgSize after the shared options, so it wins) and the
// per-client rate limit.
func limitOptions(l Limits) []grpc.ServerOption {
	return append([]grpc.ServerOption{grpc.MaxRecvMsgSize(l.MaxRecvMsgSize)}, ratelimit.ServerOptions(ratelimit.New(l.Rate))...)
}
