package metaserver

import (
	"errors"
	"fmt"
	"sort"
	"syscall"
)

// Sentinel errors of the metadata service.
var (
	ErrNotLeader          = errors.New("metaserver: not leader")
	ErrUnknownVersion     = errors.New("metaserver: unknown command encoding version")
	ErrUnknownCommand     = errors.New("metaserver: unknown command type")
	ErrCorruptCommand     = errors.New("metaserver: command cannot be decoded")
	ErrNotEnoughServers   = errors.New("metaserver: not enough live dataservers")
	ErrBadSnapshot        = errors.New("metaserver: snapshot cannot be read")
	ErrUnsupportedVersion = errors.New("metaserver: unsupported snapshot version")
)

// nsError is a namespace error: an errno (what a POSIX caller sees) and a
// message for people. It satisfies errors.Is(err, syscall.ENOENT).
type nsError struct {
	errno syscall.Errno
	msg   string
}

func (e *nsError) Error() string { return e.msg + ": " + e.errno.Error() }
func (e *nsError) Unwrap() error { return e.errno }

func errnof(e syscall.Errno, format string, args ...any) error {
	return &nsError{errno: e, msg: fmt.Sprintf(format, args...)}
}

func sortStrings(s []string) { sort.Strings(s) }
