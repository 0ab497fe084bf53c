package metaserver

import (
	"bytes"
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// fuzzValues is what the reflective request builder puts into fields: the
// fuzzer's numbers and strings, handed out in turn so that one input can
// name a valid inode in one field and a huge offset in the next.
type fuzzValues struct {
	nums []uint64
	strs []string
	b    []byte
	ni   int
	si   int
}

func (v *fuzzValues) num() uint64 {
	n := v.nums[v.ni%len(v.nums)]
	v.ni++
	return n
}

func (v *fuzzValues) str() string {
	s := v.strs[v.si%len(v.strs)]
	v.si++
	// Protobuf strings are UTF-8; gRPC refuses others before any handler
	// (FuzzDecodeCommand covers raw bytes).
	return strings.ToValidUTF8(s, "?")
}

// fill sets every field of m (recursing into messages up to depth 3) from
// v: a well-formed request whose values are whatever the fuzzer chose.
func fill(m protoreflect.Message, v *fuzzValues, depth int) {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.Message() != nil && fd.Message().FullName() == "strata.RequestHeader" {
			continue // no tenant, no dedup: the command itself is under test
		}
		switch {
		case fd.IsMap():
			continue
		case fd.IsList():
			l := m.Mutable(fd).List()
			for n := v.num() % 3; n > 0; n-- {
				if fd.Message() != nil {
					if depth < 3 {
						e := l.NewElement()
						fill(e.Message(), v, depth+1)
						l.Append(e)
					}
					continue
				}
				l.Append(scalar(fd, v))
			}
		case fd.Message() != nil:
			if depth < 3 {
				fill(m.Mutable(fd).Message(), v, depth+1)
			}
		default:
			m.Set(fd, scalar(fd, v))
		}
	}
}

func scalar(fd protoreflect.FieldDescriptor, v *fuzzValues) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(v.num()&1 == 1)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(v.num() % 8))
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(v.num()))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(int64(v.num()))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(v.num()))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(v.num())
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(v.num()))
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(float64(v.num()))
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(v.str())
	default: // bytes
		return protoreflect.ValueOfBytes(v.b)
	}
}

// fuzzFixture is a small namespace to aim requests at: / (1), /d, /d/f
// (a file with a committed chunk), /d/l (a symlink) and /d/e (empty dir).
func fuzzFixture(t *testing.T) *testFSM {
	tf := newTestFSM(t)
	d := tf.mkdir(rootIno, "d")
	f := tf.create(d, "f")
	tf.mkdir(d, "e")
	if _, err := tf.apply(CmdSymlink, nil, &stratapb.SymlinkRequest{Parent: d, Name: "l", Target: "f"}); err != nil {
		t.Fatal(err)
	}
	if _, err := tf.apply(CmdSetXattr, nil, &stratapb.SetXattrRequest{Ino: f, Name: "user.a", Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	return tf
}

// commandTypes lists the registered command types in a fixed order, so
// that a fuzz input's type byte picks the same command on every run.
func commandTypes() []CommandType {
	var ts []CommandType
	for t := range handlers {
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	return ts
}

// FuzzApplyRequest builds well-formed but hostile requests of every command
// type (names with '/', NUL or 256+ bytes, huge sizes, offsets and counts,
// inode and chunk numbers that do not exist) and applies them through
// Apply as raft does. Whatever the input: no panic; a refused command
// leaves the state exactly as it was (never half-applied); an accepted
// one leaves a state whose snapshot restores to the same state (the
// restore's consistency checks pass).
func FuzzApplyRequest(f *testing.F) {
	long := strings.Repeat("n", 256)
	seeds := []struct {
		typ        uint8
		a, b, c, d uint64
		s1, s2     string
		data       []byte
	}{
		{0, 1, 2, 0o755, 0, "x", "y", nil},
		{0, 2, 1, 1 << 62, 1<<64 - 1, "a/b", "\x00", []byte("v")},
		{1, 3, 2, 0, 5, long, "ok", nil},
		{4, 2, 2, 1 << 40, 1 << 63, "f", "e", nil},
		{7, 3, 3, 1<<64 - 1, 1<<64 - 1, "user.x", "", bytes.Repeat([]byte{1}, 70000)},
		{10, 3, 99999, 1 << 31, 4096, "", ".", nil},
		{11, 3, 1, 2, 3, "..", "l", []byte{0}},
		{20, 2, 5, 1, 1, "snap", "f", nil},
	}
	for _, s := range seeds {
		f.Add(s.typ, s.a, s.b, s.c, s.d, s.s1, s.s2, s.data)
	}
	types := commandTypes()
	f.Fuzz(func(t *testing.T, typ uint8, a, b, c, d uint64, s1, s2 string, data []byte) {
		tf := fuzzFixture(t)
		ct := types[int(typ)%len(types)]
		req := handlers[ct].newReq()
		fill(req.ProtoReflect(), &fuzzValues{nums: []uint64{a, b, c, d}, strs: []string{s1, s2}, b: data}, 0)
		before := tf.f.st.digest()
		_, err := tf.apply(ct, nil, req)
		if err != nil {
			if after := tf.f.st.digest(); after != before {
				t.Fatalf("%s refused (%v) but the state changed", handlers[ct].name, err)
			}
			return
		}
		checkSnapshotRoundTrip(t, tf)
	})
}

// checkSnapshotRoundTrip writes the FSM's state as a snapshot and reads it
// back: the reader's consistency checks must pass and the digest match.
func checkSnapshotRoundTrip(t *testing.T, tf *testFSM) {
	t.Helper()
	snap, err := tf.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatalf("persist: %v", err)
	}
	st, err := readSnapshot(bytes.NewReader(sink.Bytes()), tf.f.def)
	if err != nil {
		t.Fatalf("the state after an accepted command does not restore: %v", err)
	}
	if st.digest() != tf.f.st.digest() {
		t.Fatal("restored state differs")
	}
}
