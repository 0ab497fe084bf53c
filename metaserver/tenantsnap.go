package metaserver

import (
	"fmt"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// Snapshot records of the tenant area (see snapshot.go for the format).
// Quota usage is not written: restore recomputes it from the inodes.

func (s *state) writeTenancy(put func(*stratapb.SnapshotRecord) error) error {
	t := &s.ten
	counters := &stratapb.SnapshotTenantCounters{NextTenantId: t.nextTenant, NextQuotaId: t.nextQuota, TenantsDir: t.dir}
	if err := put(&stratapb.SnapshotRecord{Rec: &stratapb.SnapshotRecord_TenantCounters{TenantCounters: counters}}); err != nil {
		return err
	}
	for _, rec := range t.byName {
		r := &stratapb.SnapshotTenant{
			Name: rec.name, Id: rec.id, RootIno: rec.root, TokenSha256: rec.token[:],
			QuotaId: rec.quota, CreatedNs: rec.created,
		}
		if err := put(&stratapb.SnapshotRecord{Rec: &stratapb.SnapshotRecord_Tenant{Tenant: r}}); err != nil {
			return err
		}
	}
	for _, q := range t.quotas {
		r := &stratapb.SnapshotQuota{Id: q.id, Parent: q.parent, RootIno: q.root, TenantId: q.tenant, MaxBytes: q.maxBytes, MaxFiles: q.maxFiles}
		if err := put(&stratapb.SnapshotRecord{Rec: &stratapb.SnapshotRecord_Quota{Quota: r}}); err != nil {
			return err
		}
	}
	for id, p := range t.pending {
		r := &stratapb.SnapshotPendingChunk{ChunkId: id, TenantId: p.tenant, AtNs: p.at}
		if err := put(&stratapb.SnapshotRecord{Rec: &stratapb.SnapshotRecord_PendingChunk{PendingChunk: r}}); err != nil {
			return err
		}
	}
	return nil
}

func (s *state) restoreTenancy(rec *stratapb.SnapshotRecord) error {
	t := &s.ten
	switch r := rec.Rec.(type) {
	case *stratapb.SnapshotRecord_TenantCounters:
		c := r.TenantCounters
		t.nextTenant, t.nextQuota, t.dir = max(c.NextTenantId, 1), max(c.NextQuotaId, 1), c.TenantsDir
	case *stratapb.SnapshotRecord_Tenant:
		x := r.Tenant
		if checkTenantName(x.Name) != nil || len(x.TokenSha256) != 32 || x.Id == 0 {
			return fmt.Errorf("%w: bad tenant record %q", ErrBadSnapshot, x.Name)
		}
		tr := &tenantRec{name: x.Name, id: x.Id, root: x.RootIno, quota: x.QuotaId, created: x.CreatedNs}
		copy(tr.token[:], x.TokenSha256)
		s.addTenant(tr)
	case *stratapb.SnapshotRecord_Quota:
		q := r.Quota
		if q.Id == 0 {
			return fmt.Errorf("%w: quota record without an id", ErrBadSnapshot)
		}
		t.quotas[q.Id] = &quotaNode{id: q.Id, parent: q.Parent, root: q.RootIno, tenant: q.TenantId, maxBytes: q.MaxBytes, maxFiles: q.MaxFiles}
	case *stratapb.SnapshotRecord_PendingChunk:
		p := r.PendingChunk
		t.pending[p.ChunkId] = pendingChunk{tenant: p.TenantId, at: p.AtNs}
	}
	return nil
}

// checkTenancy checks that tenant roots and quota directories exist and
// that quota chains end.
func (s *state) checkTenancy() error {
	for _, rec := range s.ten.byName {
		if n, ok := s.inodes[rec.root]; !ok || !n.isDir() || n.tenant != rec.id {
			return fmt.Errorf("%w: tenant %q has no root directory %d", ErrBadSnapshot, rec.name, rec.root)
		}
		if _, ok := s.ten.quotas[rec.quota]; !ok {
			return fmt.Errorf("%w: tenant %q has no quota %d", ErrBadSnapshot, rec.name, rec.quota)
		}
	}
	for _, q := range s.ten.quotas {
		depth := 0
		for p := q.parent; p != 0; p = s.ten.quotas[p].parent {
			if _, ok := s.ten.quotas[p]; !ok || depth > 64 {
				return fmt.Errorf("%w: quota %d has a broken parent chain", ErrBadSnapshot, q.id)
			}
			depth++
		}
	}
	return nil
}
