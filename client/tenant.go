package client

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"syscall"

	"google.golang.org/grpc"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// TenantTokenHeader is the gRPC metadata key that carries a tenant token
// (metaserver.TenantTokenHeader; the client does not import servers).
const TenantTokenHeader = "strata-tenant-token"

// TenantTokenEnv is the environment variable the CLI and mounts read a
// tenant token from.
const TenantTokenEnv = "STRATA_TENANT_TOKEN"

// tenantToken sends the token with every call. It is a bearer token: on a
// plain-text connection anyone on the path can read it, which is why the
// cluster should run with TLS (RequireTransportSecurity stays false so
// that `strata dev --insecure` keeps working).
type tenantToken string

func (t tenantToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{TenantTokenHeader: string(t)}, nil
}

func (tenantToken) RequireTransportSecurity() bool { return false }

func (c *Client) callTenant(ctx context.Context, fn func(ctx context.Context, tc stratapb.TenantClient) error) error {
	return c.meta.CallConn(ctx, func(ctx context.Context, cc grpc.ClientConnInterface) error {
		return fn(ctx, stratapb.NewTenantClient(cc))
	})
}

// TenantOptions set up a new tenant's root directory.
type TenantOptions struct {
	UID, GID uint32
	Mode     uint32 // 0: 0755
}

// CreateTenant makes tenant name and returns its token, which is shown
// this once: the service keeps only its sha256.
func (c *Client) CreateTenant(ctx context.Context, name string, o TenantOptions) (string, *stratapb.TenantInfo, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", nil, fmt.Errorf("client: tenant token: %w", err)
	}
	token := "stt_" + base64.RawURLEncoding.EncodeToString(raw[:])
	sum := sha256.Sum256([]byte(token))
	req := &stratapb.CreateTenantRequest{
		Header: c.NewHeader(), Name: name, TokenSha256: sum[:], RootUid: o.UID, RootGid: o.GID, RootMode: o.Mode,
	}
	var info *stratapb.TenantInfo
	err := c.callTenant(ctx, func(ctx context.Context, tc stratapb.TenantClient) error {
		resp, err := tc.CreateTenant(ctx, req)
		info = resp.GetTenant()
		return err
	})
	if err != nil {
		return "", nil, opErrDetail(ctx, "create tenant", name, err)
	}
	return token, info, nil
}

// ListTenants lists the tenants (administrator only).
func (c *Client) ListTenants(ctx context.Context) ([]*stratapb.TenantInfo, error) {
	req := &stratapb.ListTenantsRequest{Header: c.NewHeader()}
	var out []*stratapb.TenantInfo
	err := c.callTenant(ctx, func(ctx context.Context, tc stratapb.TenantClient) error {
		resp, err := tc.ListTenants(ctx, req)
		out = resp.GetTenants()
		return err
	})
	if err != nil {
		return nil, opErrDetail(ctx, "list tenants", "", err)
	}
	return out, nil
}

// RemoveTenant removes a tenant with its whole tree (administrator only).
func (c *Client) RemoveTenant(ctx context.Context, name string) (*stratapb.RemoveTenantResponse, error) {
	req := &stratapb.RemoveTenantRequest{Header: c.NewHeader(), Name: name}
	var out *stratapb.RemoveTenantResponse
	err := c.callTenant(ctx, func(ctx context.Context, tc stratapb.TenantClient) error {
		var err error
		out, err = tc.RemoveTenant(ctx, req)
		return err
	})
	if err != nil {
		return nil, opErrDetail(ctx, "remove tenant", name, err)
	}
	return out, nil
}

// QuotaTarget is what a quota covers: a whole tenant (administrator only)
// or a directory, by path.
type QuotaTarget struct {
	Tenant string
	Path   string
}

// SetQuota sets the limits (0: none) of a tenant or a directory tree.
func (c *Client) SetQuota(ctx context.Context, t QuotaTarget, maxBytes, maxFiles uint64) (*stratapb.Quota, error) {
	req := &stratapb.SetQuotaRequest{Header: c.NewHeader(), Tenant: t.Tenant, MaxBytes: maxBytes, MaxFiles: maxFiles}
	what := "tenant " + t.Tenant
	if t.Tenant == "" {
		dir, err := c.resolvePath(ctx, "set quota", t.Path, true)
		if err != nil {
			return nil, err
		}
		if dir.GetType() != stratapb.FileType_DIRECTORY {
			return nil, errnoErr("set quota", t.Path, syscall.ENOTDIR, "")
		}
		req.Ino, what = dir.GetIno(), t.Path
	}
	var out *stratapb.Quota
	err := c.callTenant(ctx, func(ctx context.Context, tc stratapb.TenantClient) error {
		resp, err := tc.SetQuota(ctx, req)
		out = resp.GetQuota()
		return err
	})
	if err != nil {
		return nil, opErrDetail(ctx, "set quota", what, err)
	}
	return out, nil
}

// ListQuotas lists the quotas the caller may see, with their usage.
func (c *Client) ListQuotas(ctx context.Context) ([]*stratapb.Quota, error) {
	req := &stratapb.ListQuotasRequest{Header: c.NewHeader()}
	var out []*stratapb.Quota
	err := c.callTenant(ctx, func(ctx context.Context, tc stratapb.TenantClient) error {
		resp, err := tc.ListQuotas(ctx, req)
		out = resp.GetQuotas()
		return err
	})
	if err != nil {
		return nil, opErrDetail(ctx, "list quotas", "", err)
	}
	return out, nil
}

// WhoAmI says how the service sees this client: its tenant ("" for the
// administrator) and the inode of its root.
func (c *Client) WhoAmI(ctx context.Context) (*stratapb.WhoAmIResponse, error) {
	req := &stratapb.WhoAmIRequest{Header: c.NewHeader()}
	var out *stratapb.WhoAmIResponse
	err := c.callTenant(ctx, func(ctx context.Context, tc stratapb.TenantClient) error {
		var err error
		out, err = tc.WhoAmI(ctx, req)
		return err
	})
	if err != nil {
		return nil, opErrDetail(ctx, "whoami", "", err)
	}
	return out, nil
}

// TenantTokenFromEnv returns $STRATA_TENANT_TOKEN.
func TenantTokenFromEnv() string { return os.Getenv(TenantTokenEnv) }

// TenantsDir is where tenants' roots lie in the administrator's view of
// the namespace: TenantsDir/NAME is "/" for tenant NAME.
const TenantsDir = "/.tenants"
