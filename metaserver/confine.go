package metaserver

import (
	"context"
	"crypto/sha256"
	"strings"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/strata-hpc/strata/internal/audit"
	"github.com/strata-hpc/strata/internal/rpcerr"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// Who is calling, and what a tenant may name. Every gRPC request passes
// tenantInterceptor: it finds the caller (identify), lets the
// administrator through unchanged, and for a tenant
//   - refuses every RPC not in tenantRPCs (membership, status, repair...),
//   - stamps the request header with the tenant (a tenant cannot pick
//     another's namespace) and prefixes its client id (so the request
//     dedup table never answers one tenant with another's reply),
//   - translates inode 1 to the tenant's root and refuses every inode
//     number outside the tenant's tree with exactly the error a missing
//     inode gets ("inode N not found", ENOENT),
//   - prefixes lock session names, so that sessions never collide.
// Chunk ids are confined where they are used: commits (pending ids,
// contentVisible) in the FSM, bad-shard reports in ReportBadShard.

// TenantTokenHeader is the gRPC metadata key of a tenant's bearer token.
const TenantTokenHeader = "strata-tenant-token"

// tenantURIPrefix marks a client certificate bound to a tenant: a URI SAN
// "strata:tenant/NAME".
const tenantURIPrefix = "strata:tenant/"

// caller is who sent a request: a tenant, or the administrator (tenant "").
type caller struct {
	tenant string
	id     uint32
	root   uint64
}

func (c caller) admin() bool { return c.tenant == "" }

type callerKey struct{}

// callerFrom returns the caller the interceptor found.
func callerFrom(ctx context.Context) caller {
	c, _ := ctx.Value(callerKey{}).(caller)
	return c
}

// identify finds the caller of a request: the tenant of its token, or of
// its client certificate (a URI SAN strata:tenant/NAME), or the
// administrator when it has neither. This is the one place that decides
// identity.
func (s *Server) identify(ctx context.Context) (caller, error) {
	var byToken, byCert string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(TenantTokenHeader); len(v) > 0 {
			var err error
			if byToken, err = s.tokenTenant(ctx, v[0]); err != nil {
				return caller{}, err
			}
			if byToken == "" {
				s.auditRecord(ctx, "auth.tenant-token", "unknown", "token", audit.Denied, "reason", "no tenant has this token")
				return caller{}, status.Error(codes.Unauthenticated, "metaserver: invalid tenant token")
			}
		}
	}
	byCert = certTenant(ctx)
	name := byToken
	switch {
	case byToken != "" && byCert != "" && byToken != byCert:
		s.auditRecord(ctx, "auth.tenant", byCert, "tenant/"+byToken, audit.Denied, "reason", "token and certificate name different tenants")
		return caller{}, status.Error(codes.Unauthenticated, "metaserver: the tenant token and the client certificate name different tenants")
	case name == "":
		name = byCert
	}
	if name == "" {
		return caller{}, nil
	}
	c := caller{tenant: name}
	_ = s.fsm.read(func(st *state) error {
		if rec, ok := st.ten.byName[name]; ok {
			c.id, c.root = rec.id, rec.root
		}
		return nil
	})
	if c.id == 0 {
		return caller{}, status.Errorf(codes.Unauthenticated, "metaserver: no tenant %q", name)
	}
	return c, nil
}

// tokenTenant is the tenant holding token, "" when none does. A server
// that does not know the token may lag: a follower sends the caller to the
// leader, and the leader first catches up with what it committed.
func (s *Server) tokenTenant(ctx context.Context, token string) (string, error) {
	sum := sha256.Sum256([]byte(token))
	lookup := func() (name string) {
		_ = s.fsm.read(func(st *state) error {
			if rec, ok := st.ten.byToken[sum]; ok {
				name = rec.name
			}
			return nil
		})
		return name
	}
	if name := lookup(); name != "" {
		return name, nil
	}
	if !s.IsLeader() {
		return "", rpcerr.NotLeader(s.leaderHint())
	}
	if err := s.reads.wait(ctx); err != nil {
		return "", s.raftErr(err)
	}
	return lookup(), nil
}

// certTenant is the tenant a verified client certificate is bound to, if
// any.
func certTenant(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.PeerCertificates) == 0 {
		return ""
	}
	for _, u := range ti.State.PeerCertificates[0].URIs {
		if name, ok := strings.CutPrefix(u.String(), tenantURIPrefix); ok {
			return name
		}
	}
	return ""
}

// tenantRPCs are the RPCs a tenant may call; every other one is refused.
// A new RPC is the administrator's until it is added here (and its
// request fields classified in inodeFields / plainFields).
var tenantRPCs = map[string]bool{}

func init() {
	for _, m := range []string{
		"Batch", "Lookup", "GetAttr", "SetAttr", "Mkdir", "Create", "Unlink", "Rmdir", "Rename",
		"ReadDir", "Symlink", "Link", "GetXattr", "SetXattr", "ListXattr", "RemoveXattr",
		"AllocateChunks", "CommitChunks", "GetChunks", "ReportBadShard", "ClusterStatus",
	} {
		tenantRPCs["/strata.v1.Meta/"+m] = true
	}
	for _, m := range []string{
		"Mknod", "LookupChunks", "Freeze", "CloneTree", "RemoveTree", "CreateSnapshot",
		"ListSnapshots", "DeleteSnapshot", "RestoreSnapshot", "Usage",
	} {
		tenantRPCs["/strata.v1.Snap/"+m] = true
	}
	tenantRPCs["/strata.v1.Image/TreeUsage"] = true
	tenantRPCs["/strata.v1.Import/ImportBatch"] = true
	for _, m := range []string{"KeepAlive", "SetLock", "GetLock", "ReleaseLocks"} {
		tenantRPCs["/strata.v1.Lock/"+m] = true
	}
	for _, m := range []string{"SetQuota", "ListQuotas", "WhoAmI"} {
		tenantRPCs["/strata.v1.Tenant/"+m] = true
	}
}

// inodeFields are the uint64 request fields that name inodes; plainFields
// the ones that do not (chunk ids among them: the FSM and ReportBadShard
// check those). A uint64 field in neither list refuses the request, so a
// field added later cannot slip through unconfined.
var (
	inodeFields = map[protoreflect.Name]bool{
		"ino": true, "parent": true, "src_parent": true, "dst_parent": true, "new_parent": true,
		"src": true, "source_ino": true, "link_ino": true, "set_attr_ino": true,
	}
	plainFields = map[protoreflect.Name]bool{
		"request_id": true, "first_index": true, "count": true, "min_size": true, "expected_id": true,
		"index": true, "id": true, "size": true, "owner": true, "start": true, "end": true,
		"chunk_id": true, "max_bytes": true, "max_files": true,
	}
)

// tenantInterceptor applies the rules above.
func (s *Server) tenantInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	c, err := s.identify(ctx)
	if err != nil {
		return nil, err
	}
	if c.admin() {
		return h(ctx, req)
	}
	if !tenantRPCs[info.FullMethod] {
		s.auditRecord(ctx, "rpc.denied", "tenant/"+c.tenant, info.FullMethod, audit.Denied)
		return nil, status.Errorf(codes.PermissionDenied, "metaserver: tenant %q may not call %s", c.tenant, info.FullMethod)
	}
	msg, ok := req.(proto.Message)
	if !ok {
		return nil, status.Errorf(codes.Internal, "metaserver: request of %s is not a message", info.FullMethod)
	}
	hdr := stampHeader(msg, c)
	if !hdr.GetStaleOk() {
		// The check below must see everything the leader has committed,
		// as the handler will; a follower sends the caller to the leader.
		if !s.IsLeader() {
			return nil, rpcerr.NotLeader(s.leaderHint())
		}
		if err := s.reads.wait(ctx); err != nil {
			return nil, s.raftErr(err)
		}
	}
	var cerr error
	_ = s.fsm.read(func(st *state) error {
		cerr = confineMsg(st, c, msg.ProtoReflect())
		return nil
	})
	if cerr != nil {
		return nil, toStatus(cerr)
	}
	resp, err := h(context.WithValue(ctx, callerKey{}, c), req)
	if gl, ok := resp.(*stratapb.GetLockResponse); ok && gl.GetConflict() != nil {
		gl.Conflict.Session = strings.TrimPrefix(gl.Conflict.Session, sessionPrefix(c))
	}
	return resp, err
}

// stampHeader sets the request header's tenant (making a header if the
// request has none) and prefixes its client id.
func stampHeader(msg proto.Message, c caller) *stratapb.RequestHeader {
	m := msg.ProtoReflect()
	fd := m.Descriptor().Fields().ByName("header")
	if fd == nil || fd.Message() == nil || fd.Message().FullName() != "strata.v1.RequestHeader" {
		return nil
	}
	var hdr *stratapb.RequestHeader
	if m.Has(fd) {
		hdr, _ = m.Get(fd).Message().Interface().(*stratapb.RequestHeader)
	}
	if hdr == nil {
		hdr = &stratapb.RequestHeader{}
		m.Set(fd, protoreflect.ValueOfMessage(hdr.ProtoReflect()))
	}
	hdr.Tenant = c.tenant
	if hdr.ClientId != "" {
		hdr.ClientId = sessionPrefix(c) + hdr.ClientId
	}
	return hdr
}

func sessionPrefix(c caller) string { return "t/" + c.tenant + "/" }

// confineMsg walks a request (nested messages too), translating and
// checking inode numbers and prefixing lock sessions.
func confineMsg(st *state, c caller, m protoreflect.Message) error {
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := fd.Name()
		switch {
		case name == "header":
		case fd.Kind() == protoreflect.MessageKind && fd.IsList():
			l := v.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				err = confineMsg(st, c, l.Get(i).Message())
			}
		case fd.Kind() == protoreflect.MessageKind && !fd.IsMap():
			err = confineMsg(st, c, v.Message())
		case fd.Kind() == protoreflect.StringKind && name == "session" && !fd.IsList():
			m.Set(fd, protoreflect.ValueOfString(sessionPrefix(c)+v.String()))
		case fd.Kind() == protoreflect.Uint64Kind && inodeFields[name] && !fd.IsList():
			ino := v.Uint()
			if ino == rootIno {
				m.Set(fd, protoreflect.ValueOfUint64(c.root))
				return true
			}
			err = confineIno(st, c, ino)
		case fd.Kind() == protoreflect.Uint64Kind && plainFields[name]:
		case fd.Kind() == protoreflect.Uint64Kind:
			err = status.Errorf(codes.Internal, "metaserver: request field %s is not classified for tenants", fd.FullName())
		}
		return err == nil
	})
	return err
}

// confineIno refuses an inode outside the tenant's tree exactly as the
// FSM refuses a missing one (state.get).
func confineIno(st *state, c caller, ino uint64) error {
	if n, ok := st.inodes[ino]; ok && n.tenant == c.id {
		return nil
	}
	return errnof(syscall.ENOENT, "inode %d not found", ino)
}

// auditRecord writes an audit record when the server has an audit log.
func (s *Server) auditRecord(ctx context.Context, action, actor, object, outcome string, attrs ...any) {
	s.cfg.Audit.Record(ctx, action, actor, object, outcome, attrs...)
}
