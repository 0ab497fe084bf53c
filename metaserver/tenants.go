package metaserver

import (
	"maps"
	"regexp"
	"slices"
	"syscall"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// Tenants. A tenant's namespace is a hidden directory of the global tree,
// /.tenants/NAME, which is "/" for the tenant: requests of a tenant name
// inode 1 for it (the service translates), and every inode made below it
// carries the tenant's id (inode.tenant), set once at creation from the
// parent directory and never changed. Inode numbers are never reused, so
// "inode X belongs to tenant T" is a fact that, once true, stays true:
// the service can check it before a command goes through raft (see
// confine.go). The administrator (no token) sees the global tree, tenants
// included.

// TenantsDir is the directory of the global root that holds tenant roots.
const TenantsDir = ".tenants"

// Commands of the tenant area: numbers 96-111.
const (
	CmdCreateTenant CommandType = 96
	CmdRemoveTenant CommandType = 97
	CmdSetQuota     CommandType = 98
)

func init() {
	registerCommand(CmdCreateTenant, "tenant-create", newMsg[stratapb.CreateTenantRequest], newMsg[stratapb.CreateTenantResponse], (*state).createTenant)
	registerCommand(CmdRemoveTenant, "tenant-remove", newMsg[stratapb.RemoveTenantRequest], newMsg[stratapb.RemoveTenantResponse], (*state).removeTenant)
	registerCommand(CmdSetQuota, "quota-set", newMsg[stratapb.SetQuotaRequest], newMsg[stratapb.SetQuotaResponse], (*state).setQuota)
}

type tenantRec struct {
	name    string
	id      uint32
	root    uint64
	token   [32]byte // sha256 of the bearer token
	quota   uint32   // the tenant's quota node
	created int64
}

// pendingChunk is a chunk id allocated for a tenant's file and not yet
// committed.
type pendingChunk struct {
	tenant uint32
	at     int64
}

// Pending chunk ids older than pendingMaxAge are forgotten once more than
// pendingPrune are held (a client that allocated and died).
const (
	pendingPrune  = 1 << 16
	pendingMaxAge = int64(3600e9)
)

// tenancy is the tenant and quota part of the FSM state.
type tenancy struct {
	byName  map[string]*tenantRec
	byID    map[uint32]*tenantRec
	byToken map[[32]byte]*tenantRec
	quotas  map[uint32]*quotaNode
	pending map[uint64]pendingChunk
	// contentOwner is the tenant whose file stored a content-addressed
	// chunk (absent: the global tree). Only that tenant may share it, so
	// dedup never tells one tenant what another stores.
	contentOwner map[uint64]uint32
	nextTenant   uint32
	nextQuota    uint32
	dir          uint64 // inode of /.tenants, 0 until the first tenant
}

func newTenancy() tenancy {
	return tenancy{
		byName: map[string]*tenantRec{}, byID: map[uint32]*tenantRec{}, byToken: map[[32]byte]*tenantRec{},
		quotas: map[uint32]*quotaNode{}, pending: map[uint64]pendingChunk{}, contentOwner: map[uint64]uint32{},
		nextTenant: 1, nextQuota: 1,
	}
}

// clone copies what Apply changes in place (quota usage); tenant records
// are never changed once made.
func (t *tenancy) clone() tenancy {
	c := *t
	c.byName, c.byID, c.byToken = maps.Clone(t.byName), maps.Clone(t.byID), maps.Clone(t.byToken)
	c.quotas = make(map[uint32]*quotaNode, len(t.quotas))
	for id, q := range t.quotas {
		cq := *q
		c.quotas[id] = &cq
	}
	c.pending, c.contentOwner = maps.Clone(t.pending), maps.Clone(t.contentOwner)
	return c
}

var tenantNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

func checkTenantName(name string) error {
	if !tenantNameRE.MatchString(name) || name == defaultTenant {
		return errnof(syscall.EINVAL, "tenant name %q: 1-63 of a-z 0-9 _ - (starting with a letter or digit), not %q", name, defaultTenant)
	}
	return nil
}

// tenantID is the id of the request's tenant: 0 for the administrator.
func (s *state) tenantID(hdr *stratapb.RequestHeader) uint32 {
	if rec, ok := s.ten.byName[hdr.GetTenant()]; ok {
		return rec.id
	}
	return 0
}

// tenantsDir returns /.tenants, made on first use: pinned, so that it is
// neither renamed nor removed by accident, and 0711 so that only the
// administrator lists it.
func (s *state) tenantsDir(now int64) (*inode, error) {
	if n, ok := s.inodes[s.ten.dir]; ok && s.ten.dir != 0 {
		return n, nil
	}
	root := s.inodes[rootIno]
	if _, taken := root.children[TenantsDir]; taken {
		return nil, errnof(syscall.EEXIST, "/%s exists and is not the tenant area; rename it first", TenantsDir)
	}
	n := s.alloc(root, stratapb.FileType_DIRECTORY, 0o711, 0, 0, now)
	n.nlink, n.parent, n.pol, n.children = 2, root.ino, root.pol, make(map[string]uint64)
	n.flags = flagPinned
	root.children[TenantsDir] = n.ino
	root.nlink++
	touch(root, now)
	s.ten.dir = n.ino
	return n, nil
}

func (s *state) createTenant(now int64, r *stratapb.CreateTenantRequest) (*stratapb.CreateTenantResponse, error) {
	if s.tenantID(r.Header) != 0 {
		return nil, errnof(syscall.EPERM, "only the administrator manages tenants")
	}
	if err := checkTenantName(r.Name); err != nil {
		return nil, err
	}
	if len(r.TokenSha256) != 32 {
		return nil, errnof(syscall.EINVAL, "token hash of %d bytes, want 32 (sha256)", len(r.TokenSha256))
	}
	var tok [32]byte
	copy(tok[:], r.TokenSha256)
	if _, dup := s.ten.byName[r.Name]; dup {
		return nil, errnof(syscall.EEXIST, "tenant %q exists", r.Name)
	}
	if _, dup := s.ten.byToken[tok]; dup {
		return nil, errnof(syscall.EEXIST, "token already in use")
	}
	dir, err := s.tenantsDir(now)
	if err != nil {
		return nil, err
	}
	if _, taken := dir.children[r.Name]; taken {
		return nil, errnof(syscall.EEXIST, "/%s/%s exists", TenantsDir, r.Name)
	}
	mode := r.RootMode & 0o7777
	if mode == 0 {
		mode = 0o755
	}
	rec := &tenantRec{name: r.Name, id: s.ten.nextTenant, token: tok, created: now}
	s.ten.nextTenant++
	root := s.alloc(dir, stratapb.FileType_DIRECTORY, mode, r.RootUid, r.RootGid, now)
	root.nlink, root.parent, root.pol, root.children = 2, dir.ino, dir.pol, make(map[string]uint64)
	root.flags = flagPinned
	root.tenant = rec.id
	dir.children[r.Name] = root.ino
	dir.nlink++
	touch(dir, now)
	rec.root = root.ino
	q := s.newQuota(0, root.ino, rec.id)
	rec.quota = q.id
	root.quota = q.id
	s.charge(q.id, 1, 0)
	s.addTenant(rec)
	return &stratapb.CreateTenantResponse{Tenant: s.tenantInfo(rec)}, nil
}

func (s *state) addTenant(rec *tenantRec) {
	s.ten.byName[rec.name] = rec
	s.ten.byID[rec.id] = rec
	s.ten.byToken[rec.token] = rec
	s.tenants[rec.name] = rec.root
}

func (s *state) tenantInfo(rec *tenantRec) *stratapb.TenantInfo {
	info := &stratapb.TenantInfo{
		Name: rec.name, Id: rec.id, RootIno: rec.root, RootPath: "/" + TenantsDir + "/" + rec.name,
		CreatedNs: rec.created,
	}
	if q, ok := s.ten.quotas[rec.quota]; ok {
		info.Quota = s.quotaInfo(q, s.inodes[rootIno])
	}
	return info
}

// removeTenant removes the tenant's record (its token stops working at
// once), its snapshots, its quotas and its whole tree.
func (s *state) removeTenant(now int64, r *stratapb.RemoveTenantRequest) (*stratapb.RemoveTenantResponse, error) {
	if s.tenantID(r.Header) != 0 {
		return nil, errnof(syscall.EPERM, "only the administrator manages tenants")
	}
	rec, ok := s.ten.byName[r.Name]
	if !ok {
		return nil, errnof(syscall.ENOENT, "no tenant %q", r.Name)
	}
	resp := &stratapb.RemoveTenantResponse{}
	if dir, ok := s.inodes[s.ten.dir]; ok && dir.children[r.Name] == rec.root {
		res := s.removeTree(dir, r.Name, now)
		resp.Inodes, resp.FreedChunks = res.inodes, res.freed
	}
	for k := range s.snaps {
		if k.tenant == r.Name {
			delete(s.snaps, k)
		}
	}
	for id, q := range s.ten.quotas {
		if q.tenant == rec.id {
			delete(s.ten.quotas, id)
		}
	}
	for id, p := range s.ten.pending {
		if p.tenant == rec.id {
			delete(s.ten.pending, id)
		}
	}
	for id, t := range s.ten.contentOwner {
		if t == rec.id {
			delete(s.ten.contentOwner, id)
		}
	}
	delete(s.ten.byName, rec.name)
	delete(s.ten.byID, rec.id)
	delete(s.ten.byToken, rec.token)
	delete(s.tenants, rec.name)
	return resp, nil
}

// listTenants lists every tenant, by name.
func (s *state) listTenants() *stratapb.ListTenantsResponse {
	names := slices.Sorted(maps.Keys(s.ten.byName))
	resp := &stratapb.ListTenantsResponse{}
	for _, name := range names {
		resp.Tenants = append(resp.Tenants, s.tenantInfo(s.ten.byName[name]))
	}
	return resp
}

// notePending records chunk ids allocated for a file of a tenant, so that
// only that tenant may commit them: chunk ids are sequential, and a tenant
// that committed an id allocated to another could read what that one then
// writes.
func (s *state) notePending(n *inode, first uint64, count uint32, now int64) {
	if n.tenant == 0 {
		return
	}
	if len(s.ten.pending) > pendingPrune {
		for id, p := range s.ten.pending {
			if now-p.at > pendingMaxAge {
				delete(s.ten.pending, id)
			}
		}
	}
	for i := uint64(0); i < uint64(count); i++ {
		s.ten.pending[first+i] = pendingChunk{tenant: n.tenant, at: now}
	}
}

// mayCommitNew reports whether file n may commit chunk id as a newly
// written chunk: a tenant's file only ids allocated for that tenant, or
// the id already at that index (a retry, a repair).
func (s *state) mayCommitNew(n *inode, c *stratapb.Chunk) bool {
	if n.tenant == 0 {
		return true
	}
	if p, ok := s.ten.pending[c.Id]; ok && p.tenant == n.tenant {
		return true
	}
	i, ok := n.findChunk(c.Index)
	return ok && n.chunks[i].id == c.Id
}

// contentVisible reports whether a file of tenant t may share the content
// chunk id.
func (s *state) contentVisible(id uint64, t uint32) bool {
	return s.ten.contentOwner[id] == t
}

// isTenantRoot reports whether n is the root directory of a tenant (pinned,
// like the snapshot area, so that nobody moves or removes it, but a
// tenant may snapshot it).
func (s *state) isTenantRoot(n *inode) bool {
	rec, ok := s.ten.byID[n.tenant]
	return ok && rec.root == n.ino
}

// fileHoldsChunk reports whether inode ino is a regular file whose chunk
// list holds chunk id.
func (s *state) fileHoldsChunk(ino, id uint64) bool {
	n, ok := s.inodes[ino]
	if !ok {
		return false
	}
	for i := range n.chunks {
		if n.chunks[i].id == id {
			return true
		}
	}
	return false
}
