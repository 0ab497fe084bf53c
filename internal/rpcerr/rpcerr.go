// Package rpcerr carries POSIX errnos and leader hints across gRPC, in one
// place, so that servers and clients agree on how an error looks on the wire.
//
// A server returns rpcerr.Errno(code, errno, msg) for a domain error (ENOENT,
// EEXIST, ...) and rpcerr.NotLeader(addr) when it cannot serve a request as
// leader. A client recovers the errno with ErrnoOf and the hint with
// LeaderHint.
package rpcerr

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// codeFor picks the gRPC code that best matches an errno, so that tools that
// only look at codes (grpcurl, metrics) still see something sensible.
func codeFor(e syscall.Errno) codes.Code {
	switch e {
	case syscall.ENOENT:
		return codes.NotFound
	case syscall.EEXIST:
		return codes.AlreadyExists
	case syscall.EACCES, syscall.EPERM:
		return codes.PermissionDenied
	case syscall.EINVAL, syscall.ENAMETOOLONG, syscall.ENOTDIR, syscall.EISDIR, syscall.ELOOP:
		return codes.InvalidArgument
	case syscall.ENOSPC, syscall.EDQUOT, syscall.EFBIG:
		return codes.ResourceExhausted
	case syscall.ESTALE:
		return codes.Aborted
	default:
		return codes.FailedPrecondition
	}
}

// Errno returns a gRPC status error that carries a POSIX errno.
func Errno(e syscall.Errno, format string, args ...any) error {
	st := status.New(codeFor(e), fmt.Sprintf(format, args...))
	st2, err := st.WithDetails(&stratapb.ErrorInfo{Errno: int32(e)})
	if err != nil {
		return st.Err()
	}
	return st2.Err()
}

// NotLeader returns the error a follower answers with: Unavailable, with the
// leader's gRPC address when it is known.
func NotLeader(leaderAddr string) error {
	st := status.New(codes.Unavailable, "metaserver: not leader")
	if leaderAddr != "" {
		st = status.New(codes.Unavailable, "metaserver: not leader; leader is "+leaderAddr)
	}
	st2, err := st.WithDetails(&stratapb.ErrorInfo{NotLeader: true, LeaderAddr: leaderAddr})
	if err != nil {
		return st.Err()
	}
	return st2.Err()
}

func info(err error) *stratapb.ErrorInfo {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, d := range st.Details() {
		if ei, ok := d.(*stratapb.ErrorInfo); ok {
			return ei
		}
	}
	return nil
}

// ErrnoOf returns the errno carried by err, or 0 when it carries none.
// It also looks through errors wrapped with %w.
func ErrnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		return en
	}
	if ei := info(err); ei != nil {
		return syscall.Errno(ei.Errno)
	}
	return 0
}

// LeaderHint reports whether err says "not leader", and the leader's
// address when the server knew it.
func LeaderHint(err error) (addr string, notLeader bool) {
	ei := info(err)
	if ei == nil || !ei.NotLeader {
		return "", false
	}
	return ei.LeaderAddr, true
}

// Retryable reports whether a call that failed with err may succeed if it is
// sent again (to the same or another server) with the same request id.
func Retryable(err error) bool {
	if err == nil {
		return false
	}
	if _, nl := LeaderHint(err); nl {
		return true
	}
	if TooLarge(err) {
		return false // the same request is as large the next time
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted:
		// DeadlineExceeded here is the per-attempt deadline; the caller's
		// own context is checked separately. ResourceExhausted without an
		// errno is gRPC flow control, not a full disk.
		if status.Code(err) == codes.ResourceExhausted && ErrnoOf(err) != 0 {
			return false
		}
		if status.Code(err) == codes.Aborted && ErrnoOf(err) != 0 {
			return false
		}
		return true
	}
	return false
}

// rateLimitMsg starts the message of every rate-limit refusal; IsRateLimited
// looks for it.
const rateLimitMsg = "strata: rate limit exceeded"

// RateLimited is the error a server answers a client over its request rate
// with: ResourceExhausted without an errno, which Retryable accepts, so the
// client library backs off and tries again.
func RateLimited(id string) error {
	return status.Errorf(codes.ResourceExhausted, "%s for %s; retry later", rateLimitMsg, id)
}

// IsRateLimited reports whether err is a rate-limit refusal.
func IsRateLimited(err error) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.ResourceExhausted && strings.HasPrefix(st.Message(), rateLimitMsg)
}

// TooLarge reports whether err is gRPC's refusal of a message over the
// receiving (or sending) side's size limit. gRPC gives it no code of its
// own (ResourceExhausted, like flow control), only this wording, which it
// has kept since 1.0 ("grpc: received message larger than max (N vs. M)",
// "trying to send message larger than max").
func TooLarge(err error) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.ResourceExhausted && strings.Contains(st.Message(), "message larger than max")
}
