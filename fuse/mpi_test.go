package fuse

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mpiPackages are the Debian packages that TestMPISharedDataset needs.
const mpiPackages = "mpich libmpich-dev"

// TestMPISharedDataset runs a real MPI job (MPICH, 4 ranks on this host,
// testdata/mpi_dataset.c) on two mounts of one cluster, rank r on mount
// r%2: every rank reads a shared input dataset written beforehand through
// mount A and checks its FNV-1a hash, writes a file of its own, pwrites
// its block of one shared file (all ranks open it with O_CREAT at once)
// and writes its block of another shared file with MPI-IO
// (MPI_File_write_at_all, ROMIO's collective buffering). Everything is
// then checked byte for byte through the other mount and through a
// client started after the job.
func TestMPISharedDataset(t *testing.T) {
	needFUSE(t)
	mpicc, mpiexec := mpiTools(t)
	bin := filepath.Join(t.TempDir(), "mpi_dataset")
	if out, err := exec.Command(mpicc, "-O2", "-Wall", "-Werror", "-o", bin, filepath.Join("testdata", "mpi_dataset.c")).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", mpicc, err, out)
	}

	c := newCluster(t, nil)
	mps := [2]string{mount(t, c, nil), mount(t, c, nil)}
	t.Logf("mounts: A %s, B %s", mps[0], mps[1])
	const (
		ranks       = 4
		dir         = "job"
		inputSize   = 8<<20 + 777
		rankBase    = 3<<20 + 17 // rank r writes rankBase + r*rankStep bytes
		rankStep    = 100003
		sharedBlock = 2<<20 + 4321 // blocks straddle the 4 MiB chunk boundaries
		mpiioBlock  = 1<<20 + 999
	)
	must(t, os.Mkdir(filepath.Join(mps[0], dir), 0o755))
	input := splitmixStream(42, inputSize)
	must(t, os.WriteFile(filepath.Join(mps[0], dir, "input.dat"), input, 0o644))
	h := fnv.New64a()
	h.Write(input)
	sum := h.Sum64()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, mpiexec, "-launcher", "fork", "-n", strconv.Itoa(ranks), bin,
		mps[0], mps[1], dir, strconv.Itoa(inputSize), fmt.Sprintf("0x%016x", sum),
		strconv.Itoa(rankBase), strconv.Itoa(rankStep), strconv.Itoa(sharedBlock), strconv.Itoa(mpiioBlock))
	cmd.Env = append(os.Environ(), "HYDRA_LAUNCHER=fork")
	// mpiexec and its ranks in a process group of their own, killed
	// together at the deadline: a rank left behind would keep the mounts
	// busy.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	began := time.Now()
	err := cmd.Run()
	elapsed := time.Since(began).Round(time.Millisecond)
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (killed after %v)", ctx.Err(), elapsed)
	}
	if err != nil {
		t.Fatalf("mpiexec -n %d: %v\noutput:\n%s", ranks, err, out.Bytes())
	}
	t.Logf("MPI job: %v", elapsed)
	for r := 0; r < ranks; r++ {
		for _, line := range []string{
			fmt.Sprintf("rank %d: input %d bytes fnv1a 0x%016x ok", r, inputSize, sum),
			fmt.Sprintf("rank %d of %d: done", r, ranks),
		} {
			if !strings.Contains(out.String(), line+"\n") {
				t.Errorf("the job's output lacks %q:\n%s", line, out.Bytes())
			}
		}
	}

	fresh := newClient(t, c)
	// Rank r wrote through mount r%2: read its file through the other.
	for r := 0; r < ranks; r++ {
		name := filepath.Join(dir, fmt.Sprintf("rank-%d.dat", r))
		want := splitmixStream(100+uint64(r), rankBase+r*rankStep)
		other := mps[(r+1)%2]
		got, err := os.ReadFile(filepath.Join(other, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("rank %d's file through mount %c: %d bytes (%v), want %d %s", r, 'A'+(r+1)%2, len(got), err, len(want), firstDiff(got, want))
		}
		var buf bytes.Buffer
		if _, err := fresh.Get(ctx, "/"+name, &buf); err != nil || !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("rank %d's file through a fresh client: %d bytes (%v), want %d %s", r, buf.Len(), err, len(want), firstDiff(buf.Bytes(), want))
		}
	}
	for _, sf := range []struct {
		name  string
		block int
		seed  uint64
	}{
		{"shared.dat", sharedBlock, 200},
		{"mpiio.dat", mpiioBlock, 300},
	} {
		var want []byte
		for r := 0; r < ranks; r++ {
			want = append(want, splitmixStream(sf.seed+uint64(r), sf.block)...)
		}
		for who, got := range readEverywhere(ctx, t, fresh, mps, filepath.Join(dir, sf.name)) {
			if !bytes.Equal(got, want) {
				t.Errorf("%s through %s: %d bytes, want %d %s%s", sf.name, who, len(got), len(want), firstDiff(got, want),
					describeBlocks(got, want, sf.block, ranks))
			}
		}
	}
	// For the record: what the job left (ROMIO may add files of its own).
	ents, err := os.ReadDir(filepath.Join(mps[1], dir))
	must(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	t.Logf("files in %s: %v", dir, names)
}

// mpiTools finds MPICH's mpicc and mpiexec (hydra), or skips the test.
func mpiTools(t *testing.T) (mpicc, mpiexec string) {
	t.Helper()
	find := func(names ...string) string {
		for _, n := range names {
			if p, err := exec.LookPath(n); err == nil {
				return p
			}
		}
		return ""
	}
	// The .mpich names first: with Open MPI installed too, the plain
	// names may lead to it (Debian's alternatives).
	mpicc, mpiexec = find("mpicc.mpich", "mpicc"), find("mpiexec.mpich", "mpiexec.hydra", "mpiexec")
	if mpicc == "" || mpiexec == "" {
		t.Skipf("needs MPICH's mpicc and mpiexec (Debian packages: %s)", mpiPackages)
	}
	out, err := exec.Command(mpiexec, "--version").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("HYDRA")) {
		t.Skipf("%s is not MPICH's hydra (%v: %.200s); needs Debian packages %s", mpiexec, err, out, mpiPackages)
	}
	return mpicc, mpiexec
}

// splitmixStream is stream seed of testdata/mpi_dataset.c: the
// little-endian bytes of splitmix64 seeded with seed, n of them.
func splitmixStream(seed uint64, n int) []byte {
	b := make([]byte, (n+7)/8*8)
	s := seed
	for i := 0; i < len(b); i += 8 {
		s += 0x9e3779b97f4a7c15
		z := s
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		binary.LittleEndian.PutUint64(b[i:], z^z>>31)
	}
	return b[:n]
}
