package metaserver

import (
	"fmt"
	"syscall"

	"google.golang.org/protobuf/proto"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// CommandType is the second byte of every raft log entry. The list is
// append-only: a number, once used, keeps its meaning forever.
type CommandType uint8

const (
	CmdMkdir CommandType = iota + 1
	CmdCreate
	CmdUnlink
	CmdRmdir
	CmdRename
	CmdSymlink
	CmdLink
	CmdSetAttr
	CmdSetXattr
	CmdRemoveXattr
	CmdAllocateChunks
	CmdCommitChunks
	CmdRegisterDataServer
	CmdRegisterMeta
	CmdReportBadShard
	CmdGCDone
)

// Commands of the snap area (images, snapshots, dedup): numbers 48-63.
const (
	CmdMknod           CommandType = 48
	CmdFreeze          CommandType = 49
	CmdCloneTree       CommandType = 50
	CmdRemoveTree      CommandType = 51
	CmdCreateSnapshot  CommandType = 52
	CmdDeleteSnapshot  CommandType = 53
	CmdRestoreSnapshot CommandType = 54
)

// IgnorableFlag marks a command that a server which does not know it may
// skip without diverging (for example a hint that only optimises). Commands
// without it are refused when unknown.
const IgnorableFlag CommandType = 0x80

// EncodingVersion is the first byte of every raft log entry.
const EncodingVersion byte = 1

// handler applies one command type to the state. newReq makes the message
// the envelope's request bytes decode into; newResp makes the response type
// (for dedup entries restored from a snapshot).
type handler struct {
	name    string
	newReq  func() proto.Message
	newResp func() proto.Message
	apply   func(s *state, now int64, req proto.Message) (proto.Message, error)
}

// handlers is the command table. It is immutable after package init.
var handlers = map[CommandType]handler{}

// registerCommand adds a typed handler to the table.
func registerCommand[Req, Resp proto.Message](t CommandType, name string, newReq func() Req, newResp func() Resp, fn func(*state, int64, Req) (Resp, error)) {
	if _, dup := handlers[t]; dup {
		panic(fmt.Sprintf("metaserver: command %d registered twice", t))
	}
	handlers[t] = handler{
		name:    name,
		newReq:  func() proto.Message { return newReq() },
		newResp: func() proto.Message { return newResp() },
		apply: func(s *state, now int64, req proto.Message) (proto.Message, error) {
			resp, err := fn(s, now, req.(Req))
			if err != nil {
				return nil, err
			}
			return resp, nil
		},
	}
}

func init() {
	registerCommand(CmdMkdir, "mkdir", newMsg[stratapb.MkdirRequest], newMsg[stratapb.MkdirResponse], (*state).mkdir)
	registerCommand(CmdCreate, "create", newMsg[stratapb.CreateRequest], newMsg[stratapb.CreateResponse], (*state).create)
	registerCommand(CmdUnlink, "unlink", newMsg[stratapb.UnlinkRequest], newMsg[stratapb.UnlinkResponse], (*state).unlink)
	registerCommand(CmdRmdir, "rmdir", newMsg[stratapb.RmdirRequest], newMsg[stratapb.RmdirResponse], (*state).rmdir)
	registerCommand(CmdRename, "rename", newMsg[stratapb.RenameRequest], newMsg[stratapb.RenameResponse], (*state).rename)
	registerCommand(CmdSymlink, "symlink", newMsg[stratapb.SymlinkRequest], newMsg[stratapb.SymlinkResponse], (*state).symlink)
	registerCommand(CmdLink, "link", newMsg[stratapb.LinkRequest], newMsg[stratapb.LinkResponse], (*state).link)
	registerCommand(CmdSetAttr, "setattr", newMsg[stratapb.SetAttrRequest], newMsg[stratapb.SetAttrResponse], (*state).setAttr)
	registerCommand(CmdSetXattr, "setxattr", newMsg[stratapb.SetXattrRequest], newMsg[stratapb.SetXattrResponse], (*state).setXattr)
	registerCommand(CmdRemoveXattr, "removexattr", newMsg[stratapb.RemoveXattrRequest], newMsg[stratapb.RemoveXattrResponse], (*state).removeXattr)
	registerCommand(CmdAllocateChunks, "allocate", newMsg[stratapb.AllocateChunksRequest], newMsg[stratapb.AllocateChunksResponse], applyAllocate)
	registerCommand(CmdCommitChunks, "commit", newMsg[stratapb.CommitChunksRequest], newMsg[stratapb.CommitChunksResponse], (*state).commitChunks)
	registerCommand(CmdRegisterDataServer, "register-data", newMsg[stratapb.RegisterDataServerCommand], newMsg[stratapb.RegisterDataServerResponse], (*state).registerDataServer)
	registerCommand(CmdRegisterMeta, "register-meta", newMsg[stratapb.RegisterMetaCommand], newMsg[stratapb.RegisterMetaResponse], (*state).registerMeta)
	registerCommand(CmdReportBadShard, "report-bad-shard", newMsg[stratapb.ReportBadShardCommand], newMsg[stratapb.ReportBadShardResponse], (*state).reportBadShard)
	registerCommand(CmdGCDone, "gc-done", newMsg[stratapb.GCDoneCommand], newMsg[stratapb.GCDoneCommand], (*state).gcDone)
	registerCommand(CmdMknod, "mknod", newMsg[stratapb.MknodRequest], newMsg[stratapb.MknodResponse], (*state).mknod)
	registerCommand(CmdFreeze, "freeze", newMsg[stratapb.FreezeRequest], newMsg[stratapb.FreezeResponse], (*state).freeze)
	registerCommand(CmdCloneTree, "clone-tree", newMsg[stratapb.CloneTreeRequest], newMsg[stratapb.CloneTreeResponse], (*state).cloneTreeCmd)
	registerCommand(CmdRemoveTree, "remove-tree", newMsg[stratapb.RemoveTreeRequest], newMsg[stratapb.RemoveTreeResponse], (*state).removeTreeCmd)
	registerCommand(CmdCreateSnapshot, "snapshot-create", newMsg[stratapb.CreateSnapshotRequest], newMsg[stratapb.CreateSnapshotResponse], (*state).createSnapshot)
	registerCommand(CmdDeleteSnapshot, "snapshot-delete", newMsg[stratapb.DeleteSnapshotRequest], newMsg[stratapb.DeleteSnapshotResponse], (*state).deleteSnapshot)
	registerCommand(CmdRestoreSnapshot, "snapshot-restore", newMsg[stratapb.RestoreSnapshotRequest], newMsg[stratapb.RestoreSnapshotResponse], (*state).restoreSnapshot)
}

func newMsg[T any, P interface {
	*T
	proto.Message
}]() P {
	return P(new(T))
}

// applyAllocate reserves chunk ids; the leader adds placements afterwards.
func applyAllocate(s *state, now int64, r *stratapb.AllocateChunksRequest) (*stratapb.AllocateChunksResponse, error) {
	n, err := s.get(r.Ino)
	if err != nil {
		return nil, err
	}
	if n.typ != stratapb.FileType_REGULAR {
		return nil, errnof(syscall.EISDIR, "inode %d is not a regular file", r.Ino)
	}
	if err := writable(n); err != nil {
		return nil, err
	}
	first, err := s.allocateChunks(r.Count)
	if err != nil {
		return nil, err
	}
	s.notePending(n, first, r.Count, now)
	resp := &stratapb.AllocateChunksResponse{}
	for i := uint32(0); i < r.Count; i++ {
		resp.Allocations = append(resp.Allocations, &stratapb.Allocation{ChunkId: first + uint64(i)})
	}
	return resp, nil
}

// encodeCommand builds a raft log entry: version, type, envelope.
func encodeCommand(t CommandType, hdr *stratapb.RequestHeader, now int64, req proto.Message) ([]byte, error) {
	body, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("metaserver: encode %d: %w", t, err)
	}
	env, err := proto.Marshal(&stratapb.CommandEnvelope{Header: hdr, NowNs: now, Request: body})
	if err != nil {
		return nil, fmt.Errorf("metaserver: encode envelope: %w", err)
	}
	return append([]byte{EncodingVersion, byte(t)}, env...), nil
}

// decodedCommand is a log entry taken apart.
type decodedCommand struct {
	typ CommandType
	h   handler
	env *stratapb.CommandEnvelope
	req proto.Message
}

// decodeCommand takes a log entry apart. It never panics on bad bytes; the
// error says what was wrong. ok=false with a nil error means "unknown but
// ignorable: skip".
func decodeCommand(data []byte) (*decodedCommand, bool, error) {
	if len(data) < 2 {
		return nil, false, fmt.Errorf("%w: entry of %d bytes", ErrCorruptCommand, len(data))
	}
	if data[0] != EncodingVersion {
		return nil, false, fmt.Errorf("%w: %d (this server speaks %d)", ErrUnknownVersion, data[0], EncodingVersion)
	}
	t := CommandType(data[1])
	h, ok := handlers[t]
	if !ok {
		if t&IgnorableFlag != 0 {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("%w: %d", ErrUnknownCommand, t)
	}
	env := &stratapb.CommandEnvelope{}
	if err := proto.Unmarshal(data[2:], env); err != nil {
		return nil, false, fmt.Errorf("%w: envelope of %s: %v", ErrCorruptCommand, h.name, err)
	}
	req := h.newReq()
	if err := proto.Unmarshal(env.Request, req); err != nil {
		return nil, false, fmt.Errorf("%w: %s request: %v", ErrCorruptCommand, h.name, err)
	}
	return &decodedCommand{typ: t, h: h, env: env, req: req}, true, nil
}
