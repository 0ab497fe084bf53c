package fuse

import (
	"context"
	"fmt"
	"syscall"
)

// Unlinking a file that is open.
//
// POSIX lets a program keep reading and writing a file after its last name
// is gone. The metadata service frees an inode when its last link goes, so
// this mount does what NFS clients do ("silly rename"): unlinking a file
// that this mount has open renames it to a hidden name in the same
// directory, and the last Release really unlinks it. Readdir hides such
// names; stat shows the link count without them.
//
// Other mounts do not know the file is open here: for them it has simply
// gone, and a program that has it open on another mount gets ESTALE from
// its next read, write or fstat once this mount removes it, as with NFS.
// Likewise, if another mount unlinks a file open here, this mount's
// handles get ESTALE. If the daemon dies with such files open, the hidden
// names stay behind (as .nfsXXXX files do); they can be removed by hand.

// sillyPrefix starts the hidden name of a file unlinked while open.
const sillyPrefix = ".strata-unlinked-"

func sillyName(ino uint64) string { return fmt.Sprintf("%s%d", sillyPrefix, ino) }

// lockedChild returns, locked, the node of name in n if the kernel knows
// it; else nil. Unlink and rename hold it across their RPC: Open counts
// itself under the same lock, so a file is either seen as open (and
// renamed away) or its open waits and then finds it gone, never opened
// and freed at once.
func (n *node) lockedChild(name string) *node {
	ch := n.GetChild(name)
	if ch == nil {
		return nil
	}
	cn, ok := ch.Operations().(*node)
	if !ok {
		return nil
	}
	cn.mu.Lock()
	return cn
}

// needsSillyLocked reports whether removing a name of n must rename it
// away instead: it is open here and was not renamed away already.
func (n *node) needsSillyLocked() bool { return n.opens > 0 && n.silly == "" }

// sillyRenameLocked moves name in directory dir to the hidden name of n.
func (n *node) sillyRenameLocked(ctx context.Context, dir uint64, name string) error {
	hidden := sillyName(n.ino())
	if err := n.m.cl.RenameAt(ctx, dir, name, dir, hidden, 0); err != nil {
		return err
	}
	n.silly, n.sillyDir = hidden, dir
	n.m.log.Debug("unlinked while open: renamed away", "ino", n.ino(), "name", name, "hidden", hidden)
	return nil
}

// unSillyLocked undoes sillyRenameLocked after the operation that needed
// it failed.
func (n *node) unSillyLocked(ctx context.Context, name string) {
	err := n.m.cl.RenameAt(ctx, n.sillyDir, n.silly, n.sillyDir, name, 1 /* no replace */)
	if err != nil {
		n.m.log.Warn("could not restore a file renamed away", "ino", n.ino(), "hidden", n.silly, "name", name, "err", err)
		return
	}
	n.silly = ""
}

// reapSillyLocked removes the hidden name of a file unlinked while open,
// once it is closed for good.
func (n *node) reapSillyLocked(ctx context.Context) {
	if n.silly == "" {
		return
	}
	err := n.m.cl.UnlinkAt(ctx, n.sillyDir, n.silly)
	if err != nil && n.m.errno("unlink", n.ino(), err) != syscall.ENOENT {
		n.m.log.Warn("could not remove a file unlinked while open", "ino", n.ino(), "hidden", n.silly, "err", err)
	}
	n.silly = ""
}
