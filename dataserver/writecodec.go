package dataserver

import (
	"fmt"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// writeShardDataField is the field number of WriteShardRequest.data.
var writeShardDataField = (&stratapb.WriteShardRequest{}).ProtoReflect().Descriptor().Fields().ByName("data").Number()

// unmarshalWriteShard decodes a WriteShardRequest with one copy of the
// shard data instead of two: the standard codec gathers the gRPC frames
// into a pooled buffer and then copies the data field out of it again
// (the largest memmove in profiles of the write path). Here the frames
// are gathered once into a buffer of the request's own, and the data
// field points into it. Every other field, including fields added later,
// goes through proto.Unmarshal as usual.
func unmarshalWriteShard(data mem.BufferSlice, req *stratapb.WriteShardRequest) error {
	b := data.Materialize() // a fresh slice: the request may keep pointing into it
	rest := make([]byte, 0, 64)
	var payload []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("dataserver: decode write request: %w", protowire.ParseError(n))
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return fmt.Errorf("dataserver: decode write request field %d: %w", num, protowire.ParseError(m))
		}
		if num == writeShardDataField && typ == protowire.BytesType {
			payload, _ = protowire.ConsumeBytes(b[n:]) // the last one wins, as in proto
		} else {
			rest = append(rest, b[:n+m]...)
		}
		b = b[n+m:]
	}
	if err := proto.Unmarshal(rest, req); err != nil {
		return fmt.Errorf("dataserver: decode write request: %w", err)
	}
	req.Data = payload
	return nil
}
