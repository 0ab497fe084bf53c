package fuse

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
)

var seedFlag = flag.Uint64("seed", 0, "seed of TestModel (also STRATA_SEED); 0 picks one")

// TestModel applies thousands of random file system operations, through
// the os package, to a Strata mount and to a directory of the local file
// system (the model), and checks after every step that both gave the same
// result (same errno) and that what the step touched looks the same; at
// the end it compares the whole trees. A failure prints the seed; rerun
// with STRATA_SEED=<seed> (or -seed) to replay it. STRATA_MODEL_OPS sets
// the number of steps (default 2000).
func TestModel(t *testing.T) {
	c := newCluster(t, smallChunks())
	mp := mount(t, c, nil)
	seed := *seedFlag
	if s := os.Getenv("STRATA_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("STRATA_SEED: %v", err)
		}
		seed = v
	}
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	ops := 2000
	if s := os.Getenv("STRATA_MODEL_OPS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("STRATA_MODEL_OPS: %v", err)
		}
		ops = v
	}
	t.Logf("seed %d (replay: STRATA_SEED=%d go test -run TestModel ./fuse/), %d ops", seed, seed, ops)
	m := &modelRun{t: t, rnd: rand.New(rand.NewPCG(seed, seed^0x5eed)), real: mp, model: t.TempDir()}
	for i := 0; i < ops; i++ {
		m.step(i)
		if t.Failed() {
			t.Fatalf("diverged at step %d (seed %d)", i, seed)
		}
	}
	m.compareTrees()
	if t.Failed() {
		t.Fatalf("trees differ at the end (seed %d)", seed)
	}
}

type modelRun struct {
	t           *testing.T
	rnd         *rand.Rand
	real, model string
}

// names is the pool of entry names; few, so that operations collide.
var names = []string{"a", "b", "c", "d", "e"}

// randPath picks a relative path up to three levels deep. Most picks name
// something that exists, so that operations do something.
func (m *modelRun) randPath() string {
	p := ""
	for depth := 0; depth < 3; depth++ {
		p = filepath.Join(p, names[m.rnd.IntN(len(names))])
		st, err := os.Lstat(filepath.Join(m.model, p))
		if err != nil || !st.IsDir() || m.rnd.IntN(3) == 0 {
			break
		}
	}
	return p
}

// op is one random operation applied to a tree rooted at root; it returns
// the error and, for reads, the bytes read.
type op struct {
	name string
	do   func(root string) ([]byte, error)
	// touched are the paths whose state is compared after the step.
	touched []string
}

func (m *modelRun) step(i int) {
	o := m.randomOp()
	gotData, gotErr := o.do(m.real)
	wantData, wantErr := o.do(m.model)
	if errnoOf(gotErr) != errnoOf(wantErr) {
		m.t.Errorf("step %d %s: mount: %v; model: %v", i, o.name, gotErr, wantErr)
		return
	}
	if !bytes.Equal(gotData, wantData) {
		m.t.Errorf("step %d %s: read %d bytes %s, model %d bytes", i, o.name, len(gotData), firstDiff(gotData, wantData), len(wantData))
		return
	}
	for _, p := range o.touched {
		m.comparePath(fmt.Sprintf("step %d %s", i, o.name), p)
	}
}

func (m *modelRun) randomOp() op {
	p, q := m.randPath(), m.randPath()
	switch k := m.rnd.IntN(100); {
	case k < 25:
		return m.writeOp(p, false)
	case k < 30:
		return m.writeOp(p, true)
	case k < 37:
		size := int64(m.rnd.IntN(300 << 10))
		return op{fmt.Sprintf("truncate %s %d", p, size), func(r string) ([]byte, error) {
			return nil, os.Truncate(filepath.Join(r, p), size)
		}, []string{p}}
	case k < 45:
		return op{fmt.Sprintf("rename %s %s", p, q), func(r string) ([]byte, error) {
			return nil, os.Rename(filepath.Join(r, p), filepath.Join(r, q))
		}, []string{p, q}}
	case k < 50:
		return op{fmt.Sprintf("link %s %s", p, q), func(r string) ([]byte, error) {
			return nil, os.Link(filepath.Join(r, p), filepath.Join(r, q))
		}, []string{p, q}}
	case k < 58:
		return op{"unlink " + p, func(r string) ([]byte, error) {
			return nil, syscall.Unlink(filepath.Join(r, p))
		}, []string{p}}
	case k < 66:
		return op{"mkdir " + p, func(r string) ([]byte, error) {
			return nil, os.Mkdir(filepath.Join(r, p), 0o755)
		}, []string{p}}
	case k < 72:
		return op{"rmdir " + p, func(r string) ([]byte, error) {
			return nil, syscall.Rmdir(filepath.Join(r, p))
		}, []string{p}}
	case k < 78:
		mode := []os.FileMode{0o600, 0o644, 0o755, 0o700, 0o640, 0o4755}[m.rnd.IntN(6)]
		return op{fmt.Sprintf("chmod %s %o", p, mode), func(r string) ([]byte, error) {
			return nil, syscall.Chmod(filepath.Join(r, p), uint32(mode))
		}, []string{p}}
	case k < 82:
		return m.openUnlinkOp(p)
	default:
		return op{"read " + p, func(r string) ([]byte, error) {
			return os.ReadFile(filepath.Join(r, p))
		}, nil}
	}
}

// writeOp writes random bytes at a random offset (or appends), creating
// the file if needed, in one or a few write calls.
func (m *modelRun) writeOp(p string, appendMode bool) op {
	off := int64(m.rnd.IntN(320 << 10))
	data := make([]byte, 1+m.rnd.IntN(160<<10))
	for i := range data {
		data[i] = byte(m.rnd.Uint32())
	}
	pieces := 1 + m.rnd.IntN(3)
	flags := os.O_WRONLY | os.O_CREATE
	name := fmt.Sprintf("write %s off=%d len=%d pieces=%d", p, off, len(data), pieces)
	if appendMode {
		flags |= os.O_APPEND
		name = fmt.Sprintf("append %s len=%d pieces=%d", p, len(data), pieces)
	}
	return op{name, func(r string) ([]byte, error) {
		f, err := os.OpenFile(filepath.Join(r, p), flags, 0o644)
		if err != nil {
			return nil, err
		}
		step := (len(data) + pieces - 1) / pieces
		for pos := 0; pos < len(data) && err == nil; pos += step {
			end := min(len(data), pos+step)
			if appendMode {
				_, err = f.Write(data[pos:end])
			} else {
				_, err = f.WriteAt(data[pos:end], off+int64(pos))
			}
		}
		return nil, errorsJoin(err, f.Close())
	}, []string{p}}
}

// openUnlinkOp opens a file, unlinks it, and reads it through the open
// descriptor: the data must still be there.
func (m *modelRun) openUnlinkOp(p string) op {
	return op{"open-unlink-read " + p, func(r string) ([]byte, error) {
		f, err := os.Open(filepath.Join(r, p))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := syscall.Unlink(filepath.Join(r, p)); err != nil {
			return nil, err
		}
		return io.ReadAll(f)
	}, []string{p}}
}

func errorsJoin(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// comparePath checks that p has the same type, permissions, size, link
// count (files) and content in both trees, or is missing in both.
func (m *modelRun) comparePath(what, p string) {
	m.t.Helper()
	gst, gerr := os.Lstat(filepath.Join(m.real, p))
	wst, werr := os.Lstat(filepath.Join(m.model, p))
	if errnoOf(gerr) != errnoOf(werr) {
		// Tell a stale kernel cache (gone after the 1 s timeouts) from a
		// wrong answer of the file system.
		time.Sleep(1500 * time.Millisecond)
		_, later := os.Lstat(filepath.Join(m.real, p))
		m.t.Errorf("%s: lstat %s: mount %v (1.5 s later: %v), model %v", what, p, gerr, later, werr)
		return
	}
	if gerr != nil {
		return
	}
	if gst.Mode() != wst.Mode() {
		m.t.Errorf("%s: %s: mode %v, model %v", what, p, gst.Mode(), wst.Mode())
	}
	if !gst.Mode().IsRegular() {
		return
	}
	if gst.Size() != wst.Size() {
		m.t.Errorf("%s: %s: size %d, model %d", what, p, gst.Size(), wst.Size())
	}
	gn, wn := gst.Sys().(*syscall.Stat_t).Nlink, wst.Sys().(*syscall.Stat_t).Nlink
	if gn != wn {
		m.t.Errorf("%s: %s: nlink %d, model %d", what, p, gn, wn)
	}
	got, gerr := os.ReadFile(filepath.Join(m.real, p))
	want, werr := os.ReadFile(filepath.Join(m.model, p))
	if gerr != nil || werr != nil || !bytes.Equal(got, want) {
		m.t.Errorf("%s: %s: content %d bytes (%v) %s, model %d bytes (%v)", what, p, len(got), gerr, firstDiff(got, want), len(want), werr)
	}
}

// compareTrees walks both trees and compares every path.
func (m *modelRun) compareTrees() {
	list := func(root string) []string {
		var out []string
		filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				m.t.Errorf("walk %s: %v", path, err)
				return nil
			}
			rel, _ := filepath.Rel(root, path)
			out = append(out, rel)
			return nil
		})
		return out
	}
	got, want := list(m.real), list(m.model)
	if !slices.Equal(got, want) {
		m.t.Errorf("tree differs:\nmount: %v\nmodel: %v", got, want)
	}
	for _, p := range want {
		if p != "." {
			m.comparePath("final", p)
		}
	}
	m.t.Logf("final tree: %d entries", len(want))
}

func firstDiff(a, b []byte) string {
	for i := 0; i < min(len(a), len(b)); i++ {
		if a[i] != b[i] {
			return fmt.Sprintf("(first difference at byte %d)", i)
		}
	}
	return ""
}
