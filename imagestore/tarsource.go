package imagestore

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"sync/atomic"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// smallFile is the size up to which a tarball member is read into memory,
// so that it can be written to Strata while the next members are read.
const smallFile = 4 << 20

// tarSource reads a tarball: plain, gzip or zstd, told apart by their
// magic bytes (not by the file name).
type tarSource struct {
	name   string
	f      *os.File
	total  int64
	read   atomic.Int64 // compressed bytes consumed
	dec    io.Closer    // the decompressor, if any
	tr     *tar.Reader
	tail   *tailReader
	closed bool
}

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// OpenTar opens a tarball for import.
func OpenTar(name string) (Source, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("imagestore: open tarball: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("imagestore: open tarball: %w", err)
	}
	s := &tarSource{name: name, f: f, total: st.Size()}
	if err := s.openStream(&countingReader{r: f, n: &s.read}); err != nil {
		f.Close()
		return nil, err
	}
	return s, nil
}

// openStream sets up decompression (told apart by magic bytes) and the tar
// reader over r. It is separate from OpenTar so that the fuzz test can
// feed it bytes from memory.
func (s *tarSource) openStream(r io.Reader) error {
	br := bufio.NewReaderSize(r, 1<<20)
	magic, _ := br.Peek(4)
	var in io.Reader = br
	switch {
	case bytes.HasPrefix(magic, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("%w: %s: gzip: %v", ErrBadSource, s.name, err)
		}
		in, s.dec = zr, zr
	case bytes.HasPrefix(magic, zstdMagic):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return fmt.Errorf("%w: %s: zstd: %v", ErrBadSource, s.name, err)
		}
		in, s.dec = zr, zstdCloser{zr}
	}
	s.tail = &tailReader{r: in}
	s.tr = tar.NewReader(s.tail)
	return nil
}

// tailReader remembers the last bytes read through it: a tarball ends with
// two zero blocks, and one cut off exactly between two members lacks them
// (archive/tar then reports a clean end).
type tailReader struct {
	r    io.Reader
	last [1024]byte
	n    int // valid bytes in last, up to len(last)
}

func (t *tailReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	b := p[:n]
	if len(b) >= len(t.last) {
		copy(t.last[:], b[len(b)-len(t.last):])
		t.n = len(t.last)
	} else if n > 0 {
		keep := min(t.n, len(t.last)-len(b))
		copy(t.last[:], t.last[t.n-keep:t.n])
		copy(t.last[keep:], b)
		t.n = keep + len(b)
	}
	return n, err
}

// sawEndMarker reports whether the stream ended with two zero blocks.
func (t *tailReader) sawEndMarker() bool {
	if t.n < len(t.last) {
		return false
	}
	for _, c := range t.last {
		if c != 0 {
			return false
		}
	}
	return true
}

type zstdCloser struct{ d *zstd.Decoder }

func (z zstdCloser) Close() error { z.d.Close(); return nil }

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// Digest is the sha256 of the tarball file, read separately from the
// import stream.
func (s *tarSource) Digest() (string, error) {
	f, err := os.Open(s.name)
	if err != nil {
		return "", fmt.Errorf("imagestore: digest of %s: %w", s.name, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("imagestore: digest of %s: %w", s.name, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

func (s *tarSource) Describe() string { return "tarball " + s.name }
func (s *tarSource) Detached() bool   { return false }

func (s *tarSource) Progress() (int64, int64) { return s.read.Load(), s.total }

func (s *tarSource) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	if s.dec != nil {
		s.dec.Close()
	}
	return s.f.Close()
}

// Next reads the next member. A tarball that ends before its end-of-archive
// marker, or in the middle of a member, is an error, not a shorter image.
func (s *tarSource) Next() (*Entry, error) {
	for {
		hdr, err := s.tr.Next()
		if err == io.EOF {
			if !s.tail.sawEndMarker() {
				return nil, fmt.Errorf("%w: the tarball is truncated (it lacks the end-of-archive blocks)", ErrBadSource)
			}
			return nil, io.EOF
		}
		if err != nil {
			return nil, s.readErr(err)
		}
		e, skip, err := s.entry(hdr)
		if err != nil {
			return nil, err
		}
		if !skip {
			return e, nil
		}
	}
}

// readErr words a tar or decompression error.
func (s *tarSource) readErr(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: the tarball is truncated (it ends in the middle of a member)", ErrBadSource)
	}
	if errors.Is(err, tar.ErrHeader) {
		return fmt.Errorf("%w: not a tar archive, or a damaged one (%v)", ErrBadSource, err)
	}
	return fmt.Errorf("%w: %v", ErrBadSource, err)
}

// entry converts a header. Global PAX headers and GNU long-name records are
// consumed by archive/tar; what is left and not a file system entry is
// skipped (skip true).
func (s *tarSource) entry(h *tar.Header) (*Entry, bool, error) {
	p, err := cleanPath(h.Name)
	if err != nil {
		return nil, false, err
	}
	e := &Entry{
		Path: p, Mode: uint32(h.Mode) & 0o7777, Uid: uint32(h.Uid), Gid: uint32(h.Gid),
		MtimeNs: h.ModTime.UnixNano(), Link: h.Linkname,
		DevMajor: uint32(h.Devmajor), DevMinor: uint32(h.Devminor),
	}
	if h.Uid < 0 || h.Gid < 0 || h.Devmajor < 0 || h.Devminor < 0 {
		return nil, false, fmt.Errorf("%w: %q: negative uid, gid or device number", ErrBadSource, h.Name)
	}
	switch h.Typeflag {
	case tar.TypeDir:
		e.Kind = KindDir
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		if h.Typeflag == tar.TypeGNUSparse {
			return nil, false, fmt.Errorf("%w: %q is an old-style GNU sparse file (re-create the tarball with --format=posix)", ErrBadSource, h.Name)
		}
		e.Kind, e.Size = KindRegular, h.Size
		if err := s.attachData(e); err != nil {
			return nil, false, err
		}
	case tar.TypeSymlink:
		e.Kind = KindSymlink
	case tar.TypeLink:
		e.Kind = KindHardlink
	case tar.TypeChar:
		e.Kind = KindChar
	case tar.TypeBlock:
		e.Kind = KindBlock
	case tar.TypeFifo:
		e.Kind = KindFifo
	case tar.TypeXHeader, tar.TypeXGlobalHeader, tar.TypeGNULongName, tar.TypeGNULongLink:
		return nil, true, nil
	default:
		return nil, false, fmt.Errorf("%w: %q has tar type %q, which an image cannot hold", ErrBadSource, h.Name, h.Typeflag)
	}
	xattrs, err := paxXattrs(h)
	if err != nil {
		return nil, false, err
	}
	e.Xattrs = xattrs
	if err := checkEntry(e); err != nil {
		return nil, false, err
	}
	return e, false, nil
}

// attachData reads a small member whole, or lets a large one be streamed.
func (s *tarSource) attachData(e *Entry) error {
	if e.Size <= smallFile {
		buf := make([]byte, e.Size)
		if _, err := io.ReadFull(s.tr, buf); err != nil {
			return s.readErr(fmt.Errorf("%q: %w", e.Path, err))
		}
		e.Data = buf
		return nil
	}
	e.Open = func() (io.ReadCloser, error) {
		return io.NopCloser(&memberReader{s: s, path: e.Path, left: e.Size}), nil
	}
	return nil
}

// memberReader reads one large member and turns a short read into the
// "truncated" error.
type memberReader struct {
	s    *tarSource
	path string
	left int64
}

func (m *memberReader) Read(p []byte) (int, error) {
	if m.left == 0 {
		return 0, io.EOF
	}
	n, err := m.s.tr.Read(p)
	m.left -= int64(n)
	if err == io.EOF && m.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	if err != nil && err != io.EOF {
		return n, m.s.readErr(fmt.Errorf("%q: %w", m.path, err))
	}
	return n, err
}

// paxXattrs collects extended attributes from PAX records: GNU tar and Go
// (docker export) write SCHILY.xattr.NAME with the raw value; bsdtar writes
// LIBARCHIVE.xattr.NAME (URL-encoded name) with a base64 value.
func paxXattrs(h *tar.Header) (map[string][]byte, error) {
	var out map[string][]byte
	total := 0
	add := func(name string, v []byte) error {
		if err := checkXattr(h.Name, name, v); err != nil {
			return err
		}
		if total += len(name) + len(v); total > maxXattrsTotal {
			return fmt.Errorf("%w: %q: extended attributes exceed %d bytes in all", ErrBadSource, h.Name, maxXattrsTotal)
		}
		if out == nil {
			out = make(map[string][]byte)
		}
		out[name] = v
		return nil
	}
	for k, v := range h.PAXRecords {
		switch {
		case strings.HasPrefix(k, "SCHILY.xattr."):
			if err := add(strings.TrimPrefix(k, "SCHILY.xattr."), []byte(v)); err != nil {
				return nil, err
			}
		case strings.HasPrefix(k, "LIBARCHIVE.xattr."):
			name, err := url.QueryUnescape(strings.TrimPrefix(k, "LIBARCHIVE.xattr."))
			if err != nil {
				return nil, fmt.Errorf("%w: %q: xattr name %q: %v", ErrBadSource, h.Name, k, err)
			}
			val, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				val, err = base64.RawStdEncoding.DecodeString(v)
			}
			if err != nil {
				return nil, fmt.Errorf("%w: %q: xattr %s: %v", ErrBadSource, h.Name, name, err)
			}
			if _, dup := out[name]; !dup {
				if err := add(name, val); err != nil {
					return nil, err
				}
			}
		}
	}
	return out, nil
}

// Limits of extended attributes, the metadata service's (NOTES.md): a
// tarball that breaks them is refused at import with the member's name,
// not half-way through writing the image.
const (
	maxXattrName   = 255
	maxXattrValue  = 64 << 10
	maxXattrsTotal = 1 << 20
)

func checkXattr(member, name string, v []byte) error {
	switch {
	case name == "" || len(name) > maxXattrName:
		return fmt.Errorf("%w: %q: xattr name of %d bytes (1..%d allowed)", ErrBadSource, member, len(name), maxXattrName)
	case strings.IndexByte(name, 0) >= 0:
		return fmt.Errorf("%w: %q: xattr name %q contains a NUL byte", ErrBadSource, member, name)
	case len(v) > maxXattrValue:
		return fmt.Errorf("%w: %q: xattr %s of %d bytes exceeds %d", ErrBadSource, member, name, len(v), maxXattrValue)
	}
	return nil
}
