package fuse

import (
	"sync/atomic"
	"time"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"
)

// Activity counts the requests a mount serves on behalf of programs, so
// that a node's boot agent can tell an idle node from a busy one (the
// boot controller's power saving). Not counted: the kernel's bookkeeping
// that follows other requests (FORGET, RELEASE, FLUSH, INTERRUPT) and
// STATFS, which monitoring tools send to every mount. A mount's page cache
// and, in an image mount, its local upper layer serve some accesses
// without a request; those are not seen here.
type Activity struct {
	requests atomic.Uint64
	last     atomic.Int64 // unix nanoseconds of the latest request
}

func (a *Activity) note() {
	a.requests.Add(1)
	a.last.Store(time.Now().UnixNano())
}

// Requests is the number of counted requests so far.
func (a *Activity) Requests() uint64 { return a.requests.Load() }

// Last is when the latest counted request arrived (zero if none).
func (a *Activity) Last() time.Time {
	if ns := a.last.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// activityRaw counts requests before passing them on.
type activityRaw struct {
	gofuse.RawFileSystem
	a *Activity
}

// countActivity wraps raw when a is set.
func countActivity(raw gofuse.RawFileSystem, a *Activity) gofuse.RawFileSystem {
	if a == nil {
		return raw
	}
	return &activityRaw{RawFileSystem: raw, a: a}
}

func (r *activityRaw) Lookup(cancel <-chan struct{}, header *gofuse.InHeader, name string, out *gofuse.EntryOut) gofuse.Status {
	r.a.note()
	return r.RawFileSystem.Lookup(cancel, header, name, out)
}

func (r *activityRaw) GetAttr(cancel <-chan struct{}, in *gofuse.GetAttrIn, out *gofuse.AttrOut) gofuse.Status {
	r.a.note()
	return r.RawFileSystem.GetAttr(cancel, in, out)
}

func (r *activityRaw) SetAttr(cancel <-chan struct{}, in *gofuse.SetAttrIn, out *gofuse.AttrOut) gofuse.Status {
	r.a.note()
	return r.RawFileSystem.SetAttr(cancel, in, out)
}

func (r *activityRaw) Mknod(cancel <-chan struct{}, in *gofuse.MknodIn, name string, out *gofuse.EntryOut) gofuse.Status {
	r.a.note()
	return r.RawFileSystem.Mknod(cancel, in, name, out)
}

func (r *activityRaw) Mkdir(cancel <-chan struct{}, in *gofuse.MkdirIn, name string, out *gofuse.EntryOut) gofuse.Status {
	r.a.note()
	return r.RawFileSystem.Mkdir(cancel, in, name, out)
}

func (r *activityRaw) Unlink(cancel <-chan struct{}, header *gofuse.InHeader, name string) gofuse.Status {
	r.a.note()
	return r.RawFileSystem.Unlink(cancel, header, name)
}

func (r *activityRaw) Rmdir(cancel <-chan struct{}, header *gofuse.InHeader, name string) gofuse.Status {
	r.a.note()
	return r.RawFileSystem.Rmdir(cancel, header, name)
}

func (r *activityRaw) Rename(cancel <-chan struct{}, in *gofuse.RenameIn, oldName string, newName string) gofuse.Status {
	r.a.note()
	return r.RawFileSystem.Rename(cancel, in, oldName, newName)
}

func (r *activityRaw) Link(cancel <-chan struct{}, in *gofuse.LinkIn, name string, out *gofuse.EntryOut) gofuse.Status {
	r.a.note()
	return r.RawFileSystem.Link(cancel, in, name, out)
}

func (r *activityRaw) Symlink(cancel <-chan struct{}, header *gofuse.InHeader, target string, name string, out *gofuse.EntryOut) gofuse.Status {
	r.a.note()
	return r.RawFileSystem.Symlink(cancel, header, target, name, out)
}

func (r *activityRaw) Readlink(cancel <-chan struct{}, header *gofuse.InHeader) ([]byte, gofuse.Status) {
	r.a.note()
	return r.RawFileSystem.Readlink(cancel, header)
}

func (r *activityRaw) Access(cancel <-chan struct{}, in *gofuse.AccessIn) gofuse.Status {
	r.a.note()
	return r.RawFileSystem.Access(cancel, in)
}

func (r *activityRaw) GetXAttr(cancel <-chan struct{}, header *gofuse.InHeader, attr string, dest []byte) (uint32, gofuse.Status) {
	r.a.note()
	return r.RawFileSystem.GetXAttr(cancel, header, attr, dest)
}

func (r *activityRaw) ListXAttr(cancel <-chan struct{}, header *gofuse.InHeader, dest []byte) (uint32, gofuse.Status) {
	r.a.note()
	return r.RawFileSystem.ListXAttr(cancel, header, dest)
}

func (r *activityRaw) SetXAttr(cancel <-chan struct{}, in *gofuse.SetXAttrIn, attr string, data []byte) gofuse.Status {
	r.a.note()
	return r.RawFileSystem.SetXAttr(cancel, in, attr, data)
}

func (r *activityRaw) RemoveXAttr(cancel <-chan struct{}, header *gofuse.InHeader, attr string) gofuse.Status {
	r.a.note()
	return r.RawFileSystem.RemoveXAttr(cancel, header, attr)
}

func (r *activityRaw) Create(cancel <-chan struct{}, in *gofuse.CreateIn, name string, out *gofuse.CreateOut) gofuse.Status {
	r.a.note()
	return r.RawFileSystem.Create(cancel, in, name, out)
}

func (r *activityRaw) Open(cancel <-chan struct{}, in *gofuse.OpenIn, out *gofuse.OpenOut) gofuse.Status {
	r.a.note()
	return r.RawFileSystem.Open(cancel, in, out)
}

func (r *activityRaw) Read(cancel <-chan struct{}, in *gofuse.ReadIn, buf []byte) (gofuse.ReadResult, gofuse.Status) {
	r.a.note()
	return r.RawFileSystem.Read(cancel, in, buf)
}

func (r *activityRaw) Write(cancel <-chan struct{}, in *gofuse.WriteIn, data []byte) (uint32, gofuse.Status) {
	r.a.note()
	return r.RawFileSystem.Write(cancel, in, data)
}

func (r *activityRaw) Fsync(cancel <-chan struct{}, in *gofuse.FsyncIn) gofuse.Status {
	r.a.note()
	return r.RawFileSystem.Fsync(cancel, in)
}

func (r *activityRaw) Fallocate(cancel <-chan struct{}, in *gofuse.FallocateIn) gofuse.Status {
	r.a.note()
	return r.RawFileSystem.Fallocate(cancel, in)
}

func (r *activityRaw) OpenDir(cancel <-chan struct{}, in *gofuse.OpenIn, out *gofuse.OpenOut) gofuse.Status {
	r.a.note()
	return r.RawFileSystem.OpenDir(cancel, in, out)
}

func (r *activityRaw) ReadDir(cancel <-chan struct{}, in *gofuse.ReadIn, out *gofuse.DirEntryList) gofuse.Status {
	r.a.note()
	return r.RawFileSystem.ReadDir(cancel, in, out)
}

func (r *activityRaw) ReadDirPlus(cancel <-chan struct{}, in *gofuse.ReadIn, out *gofuse.DirEntryList) gofuse.Status {
	r.a.note()
	return r.RawFileSystem.ReadDirPlus(cancel, in, out)
}

func (r *activityRaw) GetLk(cancel <-chan struct{}, in *gofuse.LkIn, out *gofuse.LkOut) gofuse.Status {
	r.a.note()
	return r.RawFileSystem.GetLk(cancel, in, out)
}

func (r *activityRaw) SetLk(cancel <-chan struct{}, in *gofuse.LkIn) gofuse.Status {
	r.a.note()
	return r.RawFileSystem.SetLk(cancel, in)
}

func (r *activityRaw) SetLkw(cancel <-chan struct{}, in *gofuse.LkIn) gofuse.Status {
	r.a.note()
	return r.RawFileSystem.SetLkw(cancel, in)
}
