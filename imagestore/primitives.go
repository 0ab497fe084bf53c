package imagestore

import (
	"context"
	"fmt"
	"io"

	"golang.org/x/sys/unix"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// The metadata primitives the store stands on (special files, dedup
// writes, frozen trees, tree removal), in the words of this package.

// fileType maps an entry kind to the special file types of Strata.
func fileType(k Kind) (stratapb.FileType, error) {
	switch k {
	case KindChar:
		return stratapb.FileType_CHARDEV, nil
	case KindBlock:
		return stratapb.FileType_BLOCKDEV, nil
	case KindFifo:
		return stratapb.FileType_FIFO, nil
	case KindSocket:
		return stratapb.FileType_SOCKET, nil
	}
	return 0, fmt.Errorf("imagestore: %s is not a special file", k)
}

// mknod makes a device node, FIFO or socket.
func (s *Store) mknod(ctx context.Context, parent uint64, name string, e *Entry, o client.Owner) (*stratapb.Attr, error) {
	typ, err := fileType(e.Kind)
	if err != nil {
		return nil, err
	}
	rdev := uint32(unix.Mkdev(e.DevMajor, e.DevMinor))
	return s.cl.MknodAt(ctx, parent, name, typ, e.Mode, rdev, o)
}

// writeData stores the content of file a, deduplicated by chunk hash, and
// returns how many bytes had to be written (the rest was stored already).
func (s *Store) writeData(ctx context.Context, a *stratapb.Attr, r io.Reader) (int64, error) {
	st, err := s.cl.WriteFileDedup(ctx, a.GetIno(), r)
	if err != nil {
		return 0, err
	}
	return st.Written, nil
}

func (s *Store) freeze(ctx context.Context, ino uint64) error {
	_, err := s.cl.Freeze(ctx, ino)
	return err
}

// removeTree removes name in parent and everything below it, frozen or
// not, in one metadata command.
func (s *Store) removeTree(ctx context.Context, parent uint64, name string) error {
	_, err := s.cl.RemoveTree(ctx, parent, name, true)
	return err
}
