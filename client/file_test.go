package client

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"syscall"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// testWriteAtTruncateModel applies random writes and truncates to a file
// and to a byte slice, and compares them after every step: writes inside,
// across and past chunks, holes, cuts inside chunks and regrowth.
func testWriteAtTruncateModel(t *testing.T, e *env) {
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
	e.record("/f", model)
}

// testTruncateThenGrow: bytes cut off by a truncate must read as zeros when
// the file grows again, and the rewritten chunk must pass its checksum.
func testTruncateThenGrow(t *testing.T, e *env) {
	data := randBytes(3*(64<<10), 5)
	attr := e.put("/f", data)
	ctx := ctxT(t)
	cut := 64<<10 + 1000
	if err := e.c.Truncate(ctx, attr.Ino, uint64(cut)); err != nil {
		t.Fatal(err)
	}
	ch := e.chunk(attr.Ino, 1)
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
	e.record("/f", want)
}

// testWriteAtConflict: another writer replaces the chunk between our read
// and our commit; the commit is refused (ESTALE) and the write redone on
// top of the other writer's chunk. The tap holds the client's commit back
// while the other writer (a second real client) writes and commits.
func testWriteAtConflict(t *testing.T, e *env) {
	ctx := ctxT(t)
	tap := newMetaTap(t, e.cl)
	tc := tap.client()
	data := randBytes(64<<10, 7)
	attr := e.put("/f", data)
	other := randBytes(64<<10, 8) // the concurrent writer's content
	var fired atomic.Bool
	otherErr := make(chan error, 1)
	isOurCommit := func(method string, req []byte) bool {
		r := &stratapb.CommitChunksRequest{}
		return method == stratapb.Meta_CommitChunks_FullMethodName && proto.Unmarshal(req, r) == nil && r.Ino == attr.Ino
	}
	tap.setBefore(func(method string, req []byte) {
		if isOurCommit(method, req) && fired.CompareAndSwap(false, true) {
			_, err := e.c.WriteAt(ctx, attr.Ino, other, 0)
			otherErr <- err
		}
	})
	patch := []byte("PATCH")
	if _, err := tc.WriteAt(ctx, attr.Ino, patch, 100); err != nil {
		t.Fatal(err)
	}
	if !fired.Load() {
		t.Fatal("the other writer never ran: conflict not exercised")
	}
	if err := <-otherErr; err != nil {
		t.Fatalf("the other writer: %v", err)
	}
	want := append([]byte(nil), other...)
	copy(want[100:], patch)
	if got := e.readAll(attr.Ino); !bytes.Equal(got, want) {
		t.Fatal("write after a conflict did not land on the other writer's data")
	}
	e.record("/f", want)
	var commits []tapCall
	for _, c := range tap.callsOf(stratapb.Meta_CommitChunks_FullMethodName) {
		if isOurCommit(c.method, c.req) {
			commits = append(commits, c)
		}
	}
	if len(commits) != 2 || commits[0].errno != syscall.ESTALE || commits[1].code != 0 {
		t.Fatalf("commits: %+v; want one refused with ESTALE, then one accepted", commits)
	}
}

func testWriteAtErrors(t *testing.T, e *env) {
	ctx := ctxT(t)
	attr := e.put("/f", nil)
	if _, err := e.c.WriteAt(ctx, attr.Ino, []byte("x"), -1); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("negative offset: %v", err)
	}
	if n, err := e.c.WriteAt(ctx, attr.Ino, nil, 5); n != 0 || err != nil {
		t.Fatalf("empty write = %d, %v", n, err)
	}
	dir, err := e.c.Stat(ctx, e.p("/"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ino := range []uint64{rootIno, dir.Ino} {
		if _, err := e.c.WriteAt(ctx, ino, []byte("x"), 0); !errors.Is(err, syscall.EISDIR) {
			t.Fatalf("write to directory %d: %v", ino, err)
		}
		if err := e.c.Truncate(ctx, ino, 0); !errors.Is(err, syscall.EISDIR) {
			t.Fatalf("truncate directory %d: %v", ino, err)
		}
	}
	if got := e.readAll(attr.Ino); len(got) != 0 {
		t.Fatalf("failed writes left %d bytes in the file", len(got))
	}
}
