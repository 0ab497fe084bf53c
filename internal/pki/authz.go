package pki

import (
	"context"
	"log/slog"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-hpc/strata/internal/audit"
)

// Role sets used in the method table.
var (
	users     = []Role{RoleClient, RoleBootctl}                     // namespace and admin callers
	anyMember = []Role{RoleMeta, RoleData, RoleClient, RoleBootctl} // read-only cluster questions
	onlyMeta  = []Role{RoleMeta}
	onlyData  = []Role{RoleData}
)

// MethodRoles says which certificate roles may call each gRPC method of
// Strata's services (proto/stratapb/*.proto). A method missing here is
// refused to everyone, and TestEveryMethodHasRoles fails, so a new RPC
// cannot be forgotten. Why each entry:
//
//   - Namespace, snapshot, image, lock and admin calls come from clients
//     (CLI, FUSE, boot agent) and the boot controller; a dataserver or a
//     metaserver never changes metadata through them.
//   - RegisterDataServer and Heartbeat: only dataservers. RegisterMeta:
//     only metaservers (a new voter announcing its gRPC address).
//   - The dataserver's Repair service (RebuildShard, ListShards) answers
//     only the metadata leader; DeleteShard likewise (garbage collection,
//     drain). Shard writes come from clients; shard reads from clients,
//     and from dataservers rebuilding a shard.
//   - ReportBadShard: clients that met a bad shard and dataserver
//     scrubbers. ClusterStatus: any member.
var MethodRoles = map[string][]Role{
	// Meta service (metaservers).
	"/strata.v1.Meta/AddMember":          users,
	"/strata.v1.Meta/RemoveMember":       users,
	"/strata.v1.Meta/Batch":              users,
	"/strata.v1.Meta/Lookup":             users,
	"/strata.v1.Meta/GetAttr":            users,
	"/strata.v1.Meta/SetAttr":            users,
	"/strata.v1.Meta/Mkdir":              users,
	"/strata.v1.Meta/Create":             users,
	"/strata.v1.Meta/Unlink":             users,
	"/strata.v1.Meta/Rmdir":              users,
	"/strata.v1.Meta/Rename":             users,
	"/strata.v1.Meta/ReadDir":            users,
	"/strata.v1.Meta/Symlink":            users,
	"/strata.v1.Meta/Link":               users,
	"/strata.v1.Meta/GetXattr":           users,
	"/strata.v1.Meta/SetXattr":           users,
	"/strata.v1.Meta/ListXattr":          users,
	"/strata.v1.Meta/RemoveXattr":        users,
	"/strata.v1.Meta/AllocateChunks":     users,
	"/strata.v1.Meta/CommitChunks":       users,
	"/strata.v1.Meta/GetChunks":          users,
	"/strata.v1.Meta/ReportBadShard":     {RoleClient, RoleBootctl, RoleData},
	"/strata.v1.Meta/RegisterDataServer": onlyData,
	"/strata.v1.Meta/Heartbeat":          onlyData,
	"/strata.v1.Meta/RegisterMeta":       onlyMeta,
	"/strata.v1.Meta/ClusterStatus":      anyMember,

	// Snap service (metaservers): images, overlays, snapshots.
	"/strata.v1.Snap/Mknod":           users,
	"/strata.v1.Snap/LookupChunks":    users,
	"/strata.v1.Snap/Freeze":          users,
	"/strata.v1.Snap/CloneTree":       users,
	"/strata.v1.Snap/RemoveTree":      users,
	"/strata.v1.Snap/CreateSnapshot":  users,
	"/strata.v1.Snap/ListSnapshots":   users,
	"/strata.v1.Snap/DeleteSnapshot":  users,
	"/strata.v1.Snap/RestoreSnapshot": users,
	"/strata.v1.Snap/Usage":           users,

	// Image service (metaservers).
	"/strata.v1.Image/TreeUsage": users,

	// Import service (metaservers): batched image import.
	"/strata.v1.Import/ImportBatch": users,

	// Tenant service (metaservers): tenants and quotas. Which caller may
	// manage tenants (the administrator: no tenant token, no tenant-bound
	// certificate) is the metaserver's check.
	"/strata.v1.Tenant/CreateTenant": users,
	"/strata.v1.Tenant/RemoveTenant": users,
	"/strata.v1.Tenant/ListTenants":  users,
	"/strata.v1.Tenant/SetQuota":     users,
	"/strata.v1.Tenant/ListQuotas":   users,
	"/strata.v1.Tenant/WhoAmI":       users,

	// CapAdmin service (metaservers): shard capability keys.
	"/strata.v1.CapAdmin/RotateKey": users,
	"/strata.v1.CapAdmin/KeyStatus": users,

	// Lock service (metaservers).
	"/strata.v1.Lock/KeepAlive":    users,
	"/strata.v1.Lock/SetLock":      users,
	"/strata.v1.Lock/GetLock":      users,
	"/strata.v1.Lock/ReleaseLocks": users,

	// Heal service (metaservers): operator commands.
	"/strata.v1.Heal/SetRepairConfig":  users,
	"/strata.v1.Heal/RepairStatus":     users,
	"/strata.v1.Heal/Drain":            users,
	"/strata.v1.Heal/RemoveDataServer": users,

	// Data service (dataservers).
	"/strata.v1.Data/WriteShard":  {RoleClient, RoleBootctl},
	"/strata.v1.Data/ReadShard":   {RoleClient, RoleBootctl, RoleData},
	"/strata.v1.Data/DeleteShard": onlyMeta,
	"/strata.v1.Data/StatShard":   {RoleClient, RoleBootctl, RoleData, RoleMeta},

	// Repair service (dataservers): orders of the metadata leader.
	"/strata.v1.Repair/RebuildShard": onlyMeta,
	"/strata.v1.Repair/ListShards":   onlyMeta,
}

// Authorizer checks every gRPC call against MethodRoles. Install it only
// on servers that require TLS: a call without a verified certificate is
// refused.
type Authorizer struct {
	Audit *audit.Log
	Log   *slog.Logger
	// Extra, when set, is consulted for methods MethodRoles does not know
	// (services added on top of Strata's); nil means refuse them.
	Extra map[string][]Role
}

// allowed decides one call; the error is PermissionDenied.
func (a *Authorizer) allowed(ctx context.Context, method string) error {
	p, ok := PeerFromContext(ctx)
	roles, known := MethodRoles[method]
	if !known && a.Extra != nil {
		roles, known = a.Extra[method]
	}
	if ok && known && slices.Contains(roles, p.Role) {
		return nil
	}
	actor := "unauthenticated"
	if ok {
		actor = string(p.Role) + ":" + p.Name
	}
	reason := "role not allowed"
	if !known {
		reason = "method has no role entry"
	}
	if a.Log != nil {
		a.Log.Warn("call refused", "method", method, "peer", actor, "reason", reason)
	}
	a.Audit.Record(ctx, "rpc.authorize", actor, method, audit.Denied, "reason", reason)
	return status.Errorf(codes.PermissionDenied, "%s may not call %s", actor, method)
}

// Unary is the unary server interceptor.
func (a *Authorizer) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if err := a.allowed(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
}

// Stream is the stream server interceptor.
func (a *Authorizer) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if err := a.allowed(ss.Context(), info.FullMethod); err != nil {
			return err
		}
		return h(srv, ss)
	}
}
