package metaserver

import (
	"maps"
	"slices"
	"syscall"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// Raft commands of the self-healing work (numbers 32-47 are reserved for
// it; see NOTES.md).
const (
	CmdMarkLost          CommandType = 32
	CmdCommitRepair      CommandType = 33
	CmdSetRepairConfig   CommandType = 34
	CmdSetDrain          CommandType = 35
	CmdRemoveDataServer  CommandType = 36
	defaultRepairConc                = 8
	defaultRepairRate                = 200 << 20 // bytes/s of rebuilt shards
	defaultBalanceMargin             = 0.10
	maxRepairConcurrency             = 256
)

func init() {
	registerCommand(CmdMarkLost, "mark-lost", newMsg[stratapb.MarkLostCommand], newMsg[stratapb.HealCommandResponse], (*state).markLost)
	registerCommand(CmdCommitRepair, "commit-repair", newMsg[stratapb.CommitRepairCommand], newMsg[stratapb.CommitRepairResponse], (*state).commitRepair)
	registerCommand(CmdSetRepairConfig, "set-repair-config", newMsg[stratapb.SetRepairConfigCommand], newMsg[stratapb.HealCommandResponse], (*state).setRepairConfig)
	registerCommand(CmdSetDrain, "set-drain", newMsg[stratapb.SetDrainCommand], newMsg[stratapb.HealCommandResponse], (*state).setDrain)
	registerCommand(CmdRemoveDataServer, "remove-dataserver", newMsg[stratapb.RemoveDataServerCommand], newMsg[stratapb.HealCommandResponse], (*state).removeDataServer)
}

// healState is the replicated part of self-healing: which dataservers are
// lost or draining, and the repair throttle. A new leader reads it and
// carries on where the old one stopped.
type healState struct {
	lost     map[uint32]bool
	draining map[uint32]bool
	cfg      repairConfig
}

type repairConfig struct {
	concurrency uint32
	rate        uint64 // bytes per second
	paused      bool
	margin      float64
}

func defaultRepairConfig() repairConfig {
	return repairConfig{concurrency: defaultRepairConc, rate: defaultRepairRate, margin: defaultBalanceMargin}
}

func (c repairConfig) proto() *stratapb.RepairConfig {
	return &stratapb.RepairConfig{Concurrency: c.concurrency, RateBytesPerSec: c.rate, Paused: c.paused, BalanceMargin: c.margin}
}

func repairConfigFromProto(p *stratapb.RepairConfig) repairConfig {
	return repairConfig{concurrency: p.GetConcurrency(), rate: p.GetRateBytesPerSec(), paused: p.GetPaused(), margin: p.GetBalanceMargin()}
}

func newHealState() healState {
	return healState{lost: map[uint32]bool{}, draining: map[uint32]bool{}, cfg: defaultRepairConfig()}
}

func (h healState) clone() healState {
	return healState{lost: maps.Clone(h.lost), draining: maps.Clone(h.draining), cfg: h.cfg}
}

func (h healState) snapshot() *stratapb.SnapshotHealState {
	r := &stratapb.SnapshotHealState{Config: h.cfg.proto()}
	for id := range h.lost {
		r.Lost = append(r.Lost, id)
	}
	for id := range h.draining {
		r.Draining = append(r.Draining, id)
	}
	slices.Sort(r.Lost)
	slices.Sort(r.Draining)
	return r
}

func (s *state) restoreHeal(r *stratapb.SnapshotHealState) {
	s.heal = newHealState()
	for _, id := range r.Lost {
		s.heal.lost[id] = true
	}
	for _, id := range r.Draining {
		s.heal.draining[id] = true
	}
	if r.Config != nil {
		s.heal.cfg = repairConfigFromProto(r.Config)
	}
}

func (s *state) markLost(_ int64, r *stratapb.MarkLostCommand) (*stratapb.HealCommandResponse, error) {
	if _, ok := s.servers[r.ServerId]; !ok {
		return nil, errnof(syscall.ENOENT, "no dataserver %d", r.ServerId)
	}
	if r.Lost {
		s.heal.lost[r.ServerId] = true
	} else {
		delete(s.heal.lost, r.ServerId)
	}
	return &stratapb.HealCommandResponse{}, nil
}

// commitRepair moves one shard to the server that rebuilt it, if the shard
// is still where the scan that scheduled the rebuild saw it. The copy it
// replaces (on a lost, draining or overfull server, or a bad copy) becomes
// garbage: deleted when its server is reachable, so that a lost server that
// comes back sheds its surplus shards.
func (s *state) commitRepair(now int64, r *stratapb.CommitRepairCommand) (*stratapb.CommitRepairResponse, error) {
	n, err := s.get(r.Ino)
	if err != nil {
		return nil, err
	}
	i, ok := n.findChunk(r.ChunkIndex)
	if !ok || n.chunks[i].id != r.ChunkId {
		return nil, errnof(syscall.ESTALE, "chunk %d is no longer at index %d of inode %d", r.ChunkId, r.ChunkIndex, r.Ino)
	}
	c := &n.chunks[i]
	switch {
	case int(r.ShardIndex) >= len(c.servers):
		return nil, errnof(syscall.EINVAL, "chunk %d has no shard %d", r.ChunkId, r.ShardIndex)
	case c.servers[r.ShardIndex] != r.ExpectServer:
		return nil, errnof(syscall.ESTALE, "shard %d of chunk %d moved to server %d", r.ShardIndex, r.ChunkId, c.servers[r.ShardIndex])
	case r.NewServer == r.ExpectServer:
		// Rebuilt in place (no other server could take it).
		delete(s.badShards, shardRef{r.ChunkId, r.ShardIndex})
		return &stratapb.CommitRepairResponse{}, nil
	case slices.Contains(c.servers, r.NewServer):
		return nil, errnof(syscall.EEXIST, "server %d already holds a shard of chunk %d", r.NewServer, r.ChunkId)
	}
	if _, ok := s.servers[r.NewServer]; !ok {
		return nil, errnof(syscall.ENOENT, "no dataserver %d", r.NewServer)
	}
	// Copy on write: snapshots and responses may share the old slice.
	c.servers = slices.Clone(c.servers)
	c.servers[r.ShardIndex] = r.NewServer
	// Every other holder of a shared chunk (snapshots, clones, dedup) has
	// its own copy of the layout, and so has the content table.
	s.relocateShard(r.ChunkId, int(r.ShardIndex), r.ExpectServer, r.NewServer)
	delete(s.badShards, shardRef{r.ChunkId, r.ShardIndex})
	if old := r.ExpectServer; old != 0 {
		if _, known := s.servers[old]; known {
			g := make([]uint32, len(c.servers))
			g[r.ShardIndex] = old
			s.garbage = append(s.garbage, garbageChunk{id: r.ChunkId, servers: g, at: now})
		}
	}
	return &stratapb.CommitRepairResponse{}, nil
}

func (s *state) setRepairConfig(_ int64, r *stratapb.SetRepairConfigCommand) (*stratapb.HealCommandResponse, error) {
	c := repairConfigFromProto(r.Config)
	if err := checkRepairConfig(c); err != nil {
		return nil, err
	}
	s.heal.cfg = c
	return &stratapb.HealCommandResponse{}, nil
}

func checkRepairConfig(c repairConfig) error {
	switch {
	case c.concurrency < 1 || c.concurrency > maxRepairConcurrency:
		return errnof(syscall.EINVAL, "repair concurrency %d not in 1..%d", c.concurrency, maxRepairConcurrency)
	case c.rate == 0:
		return errnof(syscall.EINVAL, "repair rate must be positive")
	case c.margin <= 0 || c.margin >= 1:
		return errnof(syscall.EINVAL, "balance margin %g not in (0, 1)", c.margin)
	}
	return nil
}

func (s *state) setDrain(_ int64, r *stratapb.SetDrainCommand) (*stratapb.HealCommandResponse, error) {
	if _, ok := s.servers[r.ServerId]; !ok {
		return nil, errnof(syscall.ENOENT, "no dataserver %d", r.ServerId)
	}
	if r.Drain {
		s.heal.draining[r.ServerId] = true
	} else {
		delete(s.heal.draining, r.ServerId)
	}
	return &stratapb.HealCommandResponse{}, nil
}

// removeDataServer forgets a dataserver that no chunk places a shard on
// any more (drained, or lost and fully repaired).
func (s *state) removeDataServer(_ int64, r *stratapb.RemoveDataServerCommand) (*stratapb.HealCommandResponse, error) {
	ds, ok := s.servers[r.ServerId]
	if !ok {
		return nil, errnof(syscall.ENOENT, "no dataserver %d", r.ServerId)
	}
	if n := s.shardsOn(r.ServerId); n > 0 {
		return nil, errnof(syscall.EBUSY, "dataserver %d still holds %d shards; drain it first", r.ServerId, n)
	}
	delete(s.servers, r.ServerId)
	delete(s.byUUID, ds.uuid)
	delete(s.heal.lost, r.ServerId)
	delete(s.heal.draining, r.ServerId)
	return &stratapb.HealCommandResponse{}, nil
}

// shardsOn counts the shards the metadata places on server id.
func (s *state) shardsOn(id uint32) int {
	n := 0
	for _, in := range s.inodes {
		for i := range in.chunks {
			for _, sv := range in.chunks[i].servers {
				if sv == id {
					n++
				}
			}
		}
	}
	return n
}
