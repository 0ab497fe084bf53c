package dataserver

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// split cuts b into a BufferSlice of pieces of at most n bytes, as gRPC
// hands over a message received in several frames.
func split(b []byte, n int) mem.BufferSlice {
	var s mem.BufferSlice
	for len(b) > 0 {
		k := min(n, len(b))
		s = append(s, mem.SliceBuffer(bytes.Clone(b[:k])))
		b = b[k:]
	}
	return s
}

func TestUnmarshalWriteShard(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 70000)
	in := &stratapb.WriteShardRequest{Key: &stratapb.ShardKey{ChunkId: 77, Index: 5}, Data: data, Crc32C: 0xdeadbeef}
	wire, err := proto.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	// A field this version does not know (a later one's) must survive.
	wire = protowire.AppendTag(wire, 1999, protowire.BytesType)
	wire = protowire.AppendBytes(wire, []byte("future"))
	for _, frame := range []int{1, 7, 16 << 10, len(wire)} {
		var got stratapb.WriteShardRequest
		if err := unmarshalWriteShard(split(wire, frame), &got); err != nil {
			t.Fatalf("frames of %d: %v", frame, err)
		}
		if got.GetKey().GetChunkId() != 77 || got.GetKey().GetIndex() != 5 || got.GetCrc32C() != 0xdeadbeef || !bytes.Equal(got.GetData(), data) {
			t.Fatalf("frames of %d: decoded key %v crc %x, %d data bytes", frame, got.GetKey(), got.GetCrc32C(), len(got.GetData()))
		}
		if !bytes.Contains(got.ProtoReflect().GetUnknown(), []byte("future")) {
			t.Fatalf("frames of %d: unknown field dropped", frame)
		}
		var want stratapb.WriteShardRequest
		if err := proto.Unmarshal(wire, &want); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(&got, &want) {
			t.Fatalf("frames of %d: differs from proto.Unmarshal", frame)
		}
	}
	for _, bad := range [][]byte{{0x12, 0x80}, {0x12, 0x05, 'a'}, {0xff}, {0x0a, 0x02, 0xff, 0xff}} {
		var got stratapb.WriteShardRequest
		if err := unmarshalWriteShard(split(bad, 1), &got); err == nil {
			t.Errorf("%x decoded without error", bad)
		}
	}
	var empty stratapb.WriteShardRequest
	if err := unmarshalWriteShard(nil, &empty); err != nil || len(empty.GetData()) != 0 {
		t.Fatalf("empty message: %v, %d data bytes", err, len(empty.GetData()))
	}
}
