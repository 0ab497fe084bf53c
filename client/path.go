package client

import (
	"context"
	"path"
	"strconv"
	"strings"
	"syscall"

	"github.com/strata-hpc/strata/proto/stratapb"
)

const (
	// maxPathLen and maxNameLen are Linux's PATH_MAX and NAME_MAX, so that
	// every path Strata accepts can also be used through a FUSE mount.
	maxPathLen = 4096
	maxNameLen = 255
	// maxSymlinkHops is Linux's MAXSYMLINKS.
	maxSymlinkHops = 40
)

// splitPath checks a user path and returns its cleaned components ("/" has
// none). It rejects relative paths, NUL bytes, over-long paths and names,
// and any ".." that would climb above the root: path.Clean would silently
// turn "/../etc" into "/etc", and a tool that meant something else should
// hear about it.
func splitPath(op, p string) ([]string, error) {
	switch {
	case p == "":
		return nil, errnoErr(op, `""`, syscall.EINVAL, "empty path")
	case len(p) > maxPathLen:
		return nil, errnoErr(op, shortQuote(p), syscall.ENAMETOOLONG,
			"path is %d bytes, longer than %d", len(p), maxPathLen)
	case strings.IndexByte(p, 0) >= 0:
		return nil, errnoErr(op, shortQuote(p), syscall.EINVAL, "path contains a NUL byte")
	case p[0] != '/':
		return nil, errnoErr(op, shortQuote(p), syscall.EINVAL, "path must be absolute")
	}
	depth := 0
	for _, name := range strings.Split(p, "/") {
		switch name {
		case "", ".":
		case "..":
			if depth == 0 {
				return nil, errnoErr(op, shortQuote(p), syscall.EINVAL, `".." climbs above the root`)
			}
			depth--
		default:
			if len(name) > maxNameLen {
				return nil, errnoErr(op, shortQuote(p), syscall.ENAMETOOLONG,
					"component %s is %d bytes, longer than %d", shortQuote(name), len(name), maxNameLen)
			}
			depth++
		}
	}
	clean := path.Clean(p)
	if clean == "/" {
		return nil, nil
	}
	return strings.Split(clean[1:], "/"), nil
}

// checkName validates one directory entry name given to the inode API.
func checkName(op string, parent uint64, name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return errnoErr(op, inodeTarget(parent), syscall.EINVAL, "invalid name %q", name)
	case len(name) > maxNameLen:
		return errnoErr(op, inodeTarget(parent), syscall.ENAMETOOLONG,
			"name is %d bytes, longer than %d", len(name), maxNameLen)
	case strings.IndexByte(name, 0) >= 0 || strings.IndexByte(name, '/') >= 0:
		return errnoErr(op, inodeTarget(parent), syscall.EINVAL, "name %q contains '/' or NUL", name)
	}
	return nil
}

// shortQuote quotes s for an error message (so NUL bytes and odd
// characters show), eliding the middle of long strings so that a 4 KiB
// path does not flood a terminal.
func shortQuote(s string) string {
	const max = 80
	if len(s) > max {
		s = s[:40] + "..." + s[len(s)-37:]
	}
	return strconv.Quote(s)
}

// resolve walks comps from the root. Symlinks in intermediate components
// are always followed; the final one only when follow is set. ".." inside
// a symlink target goes to the physical parent (the directory stack), as
// on Linux; at the root it stays at the root.
func (c *Client) resolve(ctx context.Context, op, p string, comps []string, follow bool) (*stratapb.Attr, error) {
	stack := []uint64{rootIno}
	todo := append([]string(nil), comps...)
	var cur *stratapb.Attr
	hops := 0
	for len(todo) > 0 {
		name := todo[0]
		todo = todo[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
			cur = nil
			continue
		}
		attr, err := c.lookup(ctx, stack[len(stack)-1], name)
		if err != nil {
			return nil, opErr(ctx, op, p, err)
		}
		if attr.GetType() == stratapb.FileType_SYMLINK && (len(todo) > 0 || follow) {
			if hops++; hops > maxSymlinkHops {
				return nil, errnoErr(op, p, syscall.ELOOP, "more than %d symlinks", maxSymlinkHops)
			}
			target := attr.GetSymlinkTarget()
			if target == "" {
				return nil, errnoErr(op, p, syscall.ENOENT, "empty symlink target at %q", name)
			}
			if target[0] == '/' {
				stack = stack[:1]
			}
			todo = append(strings.Split(target, "/"), todo...)
			cur = nil
			continue
		}
		if len(todo) > 0 && attr.GetType() != stratapb.FileType_DIRECTORY {
			return nil, errnoErr(op, p, syscall.ENOTDIR, "%q is not a directory", name)
		}
		stack = append(stack, attr.GetIno())
		cur = attr
	}
	if cur != nil {
		return cur, nil
	}
	attr, err := c.getAttr(ctx, stack[len(stack)-1])
	if err != nil {
		return nil, opErr(ctx, op, p, err)
	}
	return attr, nil
}

// resolveParent resolves the directory that holds the last component of p
// and returns it with that name. For "/" itself, which has no parent entry,
// it fails with rootErrno (EEXIST for mkdir, EBUSY for remove, ...).
func (c *Client) resolveParent(ctx context.Context, op, p string, rootErrno syscall.Errno) (*stratapb.Attr, string, error) {
	comps, err := splitPath(op, p)
	if err != nil {
		return nil, "", err
	}
	if len(comps) == 0 {
		return nil, "", errnoErr(op, p, rootErrno, "not allowed on the root")
	}
	dir, err := c.resolve(ctx, op, p, comps[:len(comps)-1], true)
	if err != nil {
		return nil, "", err
	}
	if dir.GetType() != stratapb.FileType_DIRECTORY {
		return nil, "", errnoErr(op, p, syscall.ENOTDIR, "parent is not a directory")
	}
	return dir, comps[len(comps)-1], nil
}

// resolvePath checks and resolves a whole path.
func (c *Client) resolvePath(ctx context.Context, op, p string, follow bool) (*stratapb.Attr, error) {
	comps, err := splitPath(op, p)
	if err != nil {
		return nil, err
	}
	return c.resolve(ctx, op, p, comps, follow)
}

// resolveCreate resolves where a file at p is to be created or truncated:
// the parent directory and name, following a final symlink (also a
// dangling one) as open(O_CREAT) does.
func (c *Client) resolveCreate(ctx context.Context, op, p string) (*stratapb.Attr, string, error) {
	comps, err := splitPath(op, p)
	if err != nil {
		return nil, "", err
	}
	for range maxSymlinkHops + 1 {
		if len(comps) == 0 {
			return nil, "", errnoErr(op, p, syscall.EISDIR, "")
		}
		name := comps[len(comps)-1]
		if name == "" || name == "." || name == ".." {
			return nil, "", errnoErr(op, p, syscall.EISDIR, "symlink target names a directory")
		}
		parent := comps[:len(comps)-1]
		dir, err := c.resolve(ctx, op, p, parent, true)
		if err != nil {
			return nil, "", err
		}
		if dir.GetType() != stratapb.FileType_DIRECTORY {
			return nil, "", errnoErr(op, p, syscall.ENOTDIR, "parent is not a directory")
		}
		attr, err := c.lookup(ctx, dir.GetIno(), name)
		if err != nil || attr.GetType() != stratapb.FileType_SYMLINK {
			return dir, name, nil // missing, or something Create decides about
		}
		target := attr.GetSymlinkTarget()
		if target == "" {
			return nil, "", errnoErr(op, p, syscall.ENOENT, "empty symlink target at %q", name)
		}
		// parent+target, walked from the root, retraces the parent's
		// symlinks and then applies the target's ".." physically.
		if target[0] == '/' {
			comps = strings.Split(target[1:], "/")
		} else {
			comps = append(append([]string(nil), parent...), strings.Split(target, "/")...)
		}
	}
	return nil, "", errnoErr(op, p, syscall.ELOOP, "more than %d symlinks", maxSymlinkHops)
}
