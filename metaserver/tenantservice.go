package metaserver

import (
	"context"
	"encoding/hex"
	"strconv"
	"syscall"

	"github.com/strata-hpc/strata/internal/audit"
	"github.com/strata-hpc/strata/internal/rpcerr"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// tenantService is the Tenant gRPC service: tenants (administrator only)
// and quotas. Changes are audited.
type tenantService struct {
	stratapb.UnimplementedTenantServer
	s *Server
}

func (t *tenantService) CreateTenant(ctx context.Context, r *stratapb.CreateTenantRequest) (*stratapb.CreateTenantResponse, error) {
	resp, err := mutate[*stratapb.CreateTenantResponse](ctx, t.s, CmdCreateTenant, r.Header, r)
	t.s.auditRecord(ctx, "tenant.create", actorOf(ctx), "tenant/"+r.Name, outcomeOf(err),
		"token_sha256_prefix", hex.EncodeToString(r.TokenSha256[:min(4, len(r.TokenSha256))]), "err", errText(err))
	return resp, err
}

func (t *tenantService) RemoveTenant(ctx context.Context, r *stratapb.RemoveTenantRequest) (*stratapb.RemoveTenantResponse, error) {
	resp, err := mutate[*stratapb.RemoveTenantResponse](ctx, t.s, CmdRemoveTenant, r.Header, r)
	t.s.auditRecord(ctx, "tenant.remove", actorOf(ctx), "tenant/"+r.Name, outcomeOf(err), "err", errText(err))
	return resp, err
}

func (t *tenantService) ListTenants(ctx context.Context, r *stratapb.ListTenantsRequest) (resp *stratapb.ListTenantsResponse, err error) {
	err = t.s.read(ctx, r.Header, func(st *state) error {
		resp = st.listTenants()
		return nil
	})
	return resp, err
}

func (t *tenantService) SetQuota(ctx context.Context, r *stratapb.SetQuotaRequest) (*stratapb.SetQuotaResponse, error) {
	object := "tenant/" + r.Tenant
	if r.Tenant == "" {
		object = "inode/" + strconv.FormatUint(r.Ino, 10)
	}
	resp, err := mutate[*stratapb.SetQuotaResponse](ctx, t.s, CmdSetQuota, r.Header, r)
	t.s.auditRecord(ctx, "quota.set", actorOf(ctx), object, outcomeOf(err),
		"max_bytes", r.MaxBytes, "max_files", r.MaxFiles, "err", errText(err))
	return resp, err
}

func (t *tenantService) ListQuotas(ctx context.Context, r *stratapb.ListQuotasRequest) (resp *stratapb.ListQuotasResponse, err error) {
	err = t.s.read(ctx, r.Header, func(st *state) error {
		resp = st.listQuotas(r.Header)
		return nil
	})
	return resp, err
}

func (t *tenantService) WhoAmI(ctx context.Context, r *stratapb.WhoAmIRequest) (*stratapb.WhoAmIResponse, error) {
	c := callerFrom(ctx)
	root := c.root
	if c.admin() {
		root = rootIno
	}
	return &stratapb.WhoAmIResponse{Tenant: c.tenant, RootIno: root}, nil
}

// tenantMayReport lets a tenant report a bad shard only of a chunk of one
// of its files (named in the request: the interceptor checked it is the
// tenant's); any other chunk gets the answer of an unknown one.
func (s *Server) tenantMayReport(ctx context.Context, r *stratapb.ReportBadShardRequest) error {
	c := callerFrom(ctx)
	if c.admin() {
		return nil
	}
	held := false
	_ = s.fsm.read(func(st *state) error {
		held = r.Ino != 0 && st.fileHoldsChunk(r.Ino, r.ChunkId)
		return nil
	})
	if !held {
		return rpcerr.Errno(syscall.ENOENT, "chunk %d unknown", r.ChunkId)
	}
	return nil
}

// redactStatus leaves a tenant only what statfs needs: the capacity of
// the dataservers (not their addresses or names), and its own usage in
// place of the cluster's.
func (s *Server) redactStatus(ctx context.Context, resp *stratapb.ClusterStatusResponse) {
	c := callerFrom(ctx)
	if c.admin() {
		return
	}
	resp.Members, resp.LeaderId, resp.LeaderAddr = nil, "", ""
	resp.Inodes, resp.Chunks, resp.LogicalBytes = 0, 0, 0
	for _, d := range resp.Dataservers {
		d.Uuid, d.Addr, d.Labels = "", "", nil
	}
	_ = s.fsm.read(func(st *state) error {
		if rec, ok := st.ten.byName[c.tenant]; ok {
			if q, ok := st.ten.quotas[rec.quota]; ok {
				resp.Inodes, resp.LogicalBytes = q.files, q.bytes
			}
		}
		return nil
	})
}

func actorOf(ctx context.Context) string {
	if c := callerFrom(ctx); !c.admin() {
		return "tenant/" + c.tenant
	}
	return "admin"
}

func outcomeOf(err error) string {
	if err != nil {
		return audit.Failed
	}
	return audit.Allowed
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
