package fuse

import (
	"context"
	"syscall"
	"time"
)

// capsXattr is the extended attribute the kernel reads before every
// write(2) to a file (file_remove_privs: a write drops file
// capabilities), unless the file system handles that itself
// (FUSE_HANDLE_KILLPRIV_V2, which go-fuse does not offer). Asking the
// metadata service each time cost a round trip per 1 MiB write, in
// series with the writes; the answer is cached per node like the
// attributes, for the attribute timeout.
const capsXattr = "security.capability"

// capsCache is a node's last answer for capsXattr; guarded by node.mu.
type capsCache struct {
	at    time.Time // zero: nothing cached
	val   []byte
	errno syscall.Errno
	gen   uint64 // bumped by forgetCaps
}

// cachedCaps returns the cached capsXattr answer, if still fresh, and the
// generation a new answer must be stored under.
func (n *node) cachedCaps() (capsCache, bool) {
	ttl := n.m.opts.AttrTimeout
	n.mu.Lock()
	defer n.mu.Unlock()
	c := n.caps
	return c, !c.at.IsZero() && ttl > 0 && time.Since(c.at) < ttl
}

// getCaps reads capsXattr through the cache. Only definite answers (the
// value, or "no such attribute") are cached.
func (n *node) getCaps(ctx context.Context) ([]byte, syscall.Errno) {
	c, ok := n.cachedCaps()
	if ok {
		return c.val, c.errno
	}
	start := time.Now()
	val, err := n.m.cl.GetXattr(ctx, n.ino(), capsXattr)
	e := n.m.errno("getxattr", n.ino(), err)
	if e == 0 || e == syscall.ENODATA {
		n.mu.Lock()
		if n.caps.gen == c.gen { // not forgotten meanwhile
			n.caps = capsCache{at: start, val: val, errno: e, gen: c.gen}
		}
		n.mu.Unlock()
	}
	return val, e
}

// forgetCaps drops the cached answer: this mount changed the file's
// extended attributes or owner, or the file is being opened (close-to-
// open: an open sees what other mounts did before their close).
func (n *node) forgetCaps() {
	n.mu.Lock()
	n.caps = capsCache{gen: n.caps.gen + 1}
	n.mu.Unlock()
}
