package metaserver

import (
	"maps"
	"syscall"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// registerDataServer gives a dataserver its numeric id. The uuid is the
// server's stable identity (kept in its data directory): a known uuid keeps
// its id and gets its address and labels updated.
func (s *state) registerDataServer(_ int64, r *stratapb.RegisterDataServerCommand) (*stratapb.RegisterDataServerResponse, error) {
	if r.Uuid == "" || len(r.Uuid) > 128 {
		return nil, errnof(syscall.EINVAL, "dataserver uuid must be 1..128 bytes")
	}
	if r.Addr == "" || len(r.Addr) > 256 {
		return nil, errnof(syscall.EINVAL, "dataserver address must be 1..256 bytes")
	}
	if id, ok := s.byUUID[r.Uuid]; ok {
		ds := s.servers[id]
		ds.addr, ds.labels = r.Addr, maps.Clone(r.Labels)
		return &stratapb.RegisterDataServerResponse{Id: id}, nil
	}
	id := s.nextServer
	s.nextServer++
	s.servers[id] = &dataServer{id: id, uuid: r.Uuid, addr: r.Addr, labels: maps.Clone(r.Labels)}
	s.byUUID[r.Uuid] = id
	return &stratapb.RegisterDataServerResponse{Id: id}, nil
}

func (s *state) registerMeta(_ int64, r *stratapb.RegisterMetaCommand) (*stratapb.RegisterMetaResponse, error) {
	if r.ServerId == "" || r.GrpcAddr == "" {
		return nil, errnof(syscall.EINVAL, "metaserver id and address are required")
	}
	s.members[r.ServerId] = r.GrpcAddr
	return &stratapb.RegisterMetaResponse{}, nil
}

// reportBadShard records a shard that a client or scrubber found missing or
// corrupt; the repair scheduler rebuilds it.
func (s *state) reportBadShard(_ int64, r *stratapb.ReportBadShardCommand) (*stratapb.ReportBadShardResponse, error) {
	if r.ChunkId == 0 || r.ChunkId >= s.nextChunk {
		return nil, errnof(syscall.ENOENT, "chunk %d unknown", r.ChunkId)
	}
	reason := r.Reason
	if len(reason) > 256 {
		reason = reason[:256]
	}
	s.badShards[shardRef{r.ChunkId, r.ShardIndex}] = badShard{server: r.ServerId, reason: reason}
	return &stratapb.ReportBadShardResponse{}, nil
}

// gcDone forgets garbage chunks whose shards were deleted.
func (s *state) gcDone(_ int64, r *stratapb.GCDoneCommand) (*stratapb.GCDoneCommand, error) {
	type key struct {
		id uint64
		at int64
	}
	exact := len(r.AtNs) == len(r.ChunkIds)
	done := make(map[key]bool, len(r.ChunkIds))
	for i, id := range r.ChunkIds {
		k := key{id: id}
		if exact {
			k.at = r.AtNs[i]
		}
		done[k] = true
	}
	keep := s.garbage[:0]
	for _, g := range s.garbage {
		k := key{id: g.id}
		if exact {
			k.at = g.at
		}
		if !done[k] {
			keep = append(keep, g)
		}
	}
	clear(s.garbage[len(keep):])
	s.garbage = keep
	return &stratapb.GCDoneCommand{}, nil
}
