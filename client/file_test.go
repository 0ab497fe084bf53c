package client

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"syscall"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// readAll reads the whole of inode ino with ReadAt.
func (e *env) readAll(ino uint64) []byte {
	e.t.Helper()
	attr, err := e.c.GetAttr(ctxT(e.t), ino)
	if err != nil {
		e.t.Fatal(err)
	}
	p := make([]byte, attr.Size)
	n, err := e.c.ReadAt(ctxT(e.t), ino, p, 0)
	if err != nil && err != io.EOF || n != len(p) {
		e.t.Fatalf("ReadAt whole file: %d of %d bytes, %v", n, len(p), err)
	}
	return p
}

// TestWriteAtTruncateModel applies random writes and truncates to a file
// and to a byte slice, and compares them after every step: writes inside,
// across and past chunks, holes, cuts inside chunks and regrowth.
func TestWriteAtTruncateModel(t *testing.T) {
	e := newEnv(t, 6, testPolicy())
	const cs = 64 << 10
	attr := e.put("/f", nil)
	ctx := ctxT(t)
	var model []byte
	r := rand.New(rand.NewPCG(3, 4))
	for step := range 60 {
		switch op := r.IntN(10); {
		case op < 7:
			off := r.IntN(6 * cs)
			n := 1 + r.IntN([]int{10, 5000, 3 * cs}[r.IntN(3)])
			data := randBytes(n, uint64(step))
			if got, err := e.c.WriteAt(ctx, attr.Ino, data, int64(off)); err != nil || got != n {
				t.Fatalf("step %d: WriteAt(%d bytes at %d) = %d, %v", step, n, off, got, err)
			}
			if end := off + n; end > len(model) {
				model = append(model, make([]byte, end-len(model))...)
			}
			copy(model[off:], data)
		default:
			size := r.IntN(6 * cs)
			if err := e.c.Truncate(ctx, attr.Ino, uint64(size)); err != nil {
				t.Fatalf("step %d: Truncate(%d): %v", step, size, err)
			}
			if size <= len(model) {
				model = model[:size]
			} else {
				model = append(model, make([]byte, size-len(model))...)
			}
		}
		if got := e.readAll(attr.Ino); !bytes.Equal(got, model) {
			t.Fatalf("step %d: file (%d bytes) differs from model (%d bytes)", step, len(got), len(model))
		}
	}
	if got := e.get("/f"); !bytes.Equal(got, model) {
		t.Fatal("Get differs from model")
	}
}

// TestTruncateThenGrow: bytes cut off by a truncate must read as zeros when
// the file grows again, and the rewritten chunk must pass its checksum.
func TestTruncateThenGrow(t *testing.T) {
	e := newEnv(t, 6, testPolicy())
	data := randBytes(3*(64<<10), 5)
	attr := e.put("/f", data)
	ctx := ctxT(t)
	cut := 64<<10 + 1000
	if err := e.c.Truncate(ctx, attr.Ino, uint64(cut)); err != nil {
		t.Fatal(err)
	}
	ch := e.meta.chunk(attr.Ino, 1)
	if ch.Size != 1000 || ch.Crc32C != crc32c(data[64<<10:cut]) {
		t.Fatalf("cut chunk %v: want a rewritten 1000-byte chunk with a checksum", ch)
	}
	if err := e.c.Truncate(ctx, attr.Ino, uint64(len(data))); err != nil {
		t.Fatal(err)
	}
	want := append(append([]byte(nil), data[:cut]...), make([]byte, len(data)-cut)...)
	if got := e.get("/f"); !bytes.Equal(got, want) {
		t.Fatal("grown file does not read zeros past the cut")
	}
}

// TestReadChunkCutByServer reads a chunk that the metadata service cut
// without the client (size lowered, shard size and checksum unchanged or
// zeroed), as happens when a truncate races with a write.
func TestReadChunkCutByServer(t *testing.T) {
	e := newEnv(t, 6, testPolicy())
	data := randBytes(64<<10, 6)
	attr := e.put("/f", data)
	e.meta.mu.Lock()
	e.meta.truncate(e.meta.inodes[attr.Ino], 5000)
	e.meta.mu.Unlock()
	if got := e.get("/f"); !bytes.Equal(got, data[:5000]) {
		t.Fatal("chunk cut by the server reads back wrong")
	}
	// Degraded: the bytes past the cut in shards 1-3 are old data, not
	// zero padding, and reconstruction must use them as they are.
	ch := e.meta.chunk(attr.Ino, 0)
	undo := e.breakShards(ch, []int{0, 5})
	defer undo()
	if got := e.get("/f"); !bytes.Equal(got, data[:5000]) {
		t.Fatal("degraded read of a chunk cut by the server reads back wrong")
	}
}

// TestWriteAtConflict: another writer replaces the chunk between our read
// and our commit; the commit is refused (ESTALE) and the write redone on
// top of the other writer's chunk.
func TestWriteAtConflict(t *testing.T) {
	e := newEnv(t, 6, testPolicy())
	data := randBytes(64<<10, 7)
	attr := e.put("/f", data)
	other := randBytes(64<<10, 8) // the concurrent writer's content
	otherAttr := e.put("/other", other)
	fired := false
	e.meta.mu.Lock()
	e.meta.commitHook = func(n *fakeInode) {
		if fired || n.attr.Ino != attr.Ino {
			return
		}
		fired = true
		n.chunks[0] = proto.Clone(e.meta.inodes[otherAttr.Ino].chunks[0]).(*stratapb.Chunk)
	}
	e.meta.mu.Unlock()
	patch := []byte("PATCH")
	if _, err := e.c.WriteAt(ctxT(t), attr.Ino, patch, 100); err != nil {
		t.Fatal(err)
	}
	want := append([]byte(nil), other...)
	copy(want[100:], patch)
	if got := e.readAll(attr.Ino); !bytes.Equal(got, want) {
		t.Fatal("write after a conflict did not land on the other writer's data")
	}
	if !fired || e.meta.callCount("CommitChunks") < 4 {
		t.Fatalf("conflict not exercised (fired=%v)", fired)
	}
}

func TestWriteAtErrors(t *testing.T) {
	e := newEnv(t, 6, testPolicy())
	ctx := ctxT(t)
	attr := e.put("/f", nil)
	if _, err := e.c.WriteAt(ctx, attr.Ino, []byte("x"), -1); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("negative offset: %v", err)
	}
	if n, err := e.c.WriteAt(ctx, attr.Ino, nil, 5); n != 0 || err != nil {
		t.Fatalf("empty write = %d, %v", n, err)
	}
	if _, err := e.c.WriteAt(ctx, rootIno, []byte("x"), 0); !errors.Is(err, syscall.EISDIR) {
		t.Fatalf("write to a directory: %v", err)
	}
	if err := e.c.Truncate(ctx, rootIno, 0); !errors.Is(err, syscall.EISDIR) {
		t.Fatalf("truncate a directory: %v", err)
	}
}
