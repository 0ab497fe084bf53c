package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/internal/linearize"
	"github.com/strata-hpc/strata/internal/pki"
	"github.com/strata-hpc/strata/internal/rpcerr"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// `strata drill history` (hidden: a tool of the fault tests) runs a client
// workload until SIGINT/SIGTERM or --duration, then writes what happened as
// JSON: every register operation with its call and return times (for a
// linearizability check), every failure, and the bulk bytes verified.
//
// Registers are an xattr on each of --keys files: a write is SetXattr (one
// raft command), a read is GetXattr (a linearizable read through the
// leader). Bulk files are written with random bytes, read back at once,
// and all read back again at the end.

// historyReport is the JSON the subcommand writes.
type historyReport struct {
	Ops           []linearize.Op `json:"ops"`
	Failed        int            `json:"failed"`
	Errors        []string       `json:"errors,omitempty"` // the first few
	BulkFiles     int            `json:"bulk_files"`
	BulkBytes     int64          `json:"bulk_bytes"`
	BulkVerified  int64          `json:"bulk_bytes_verified"`
	StallMaxMs    float64        `json:"stall_max_ms"`
	DurationMs    float64        `json:"duration_ms"`
	ClientTimeout string         `json:"op_timeout"`
}

type historyOptions struct {
	meta, dir, out       string
	keys, workers, bulkW int
	bulkSize             int
	duration, opTimeout  time.Duration
}

func runDrillHistory(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("drill history", stderr)
	var o historyOptions
	var asJSON bool
	fs.StringVar(&o.meta, "meta", envDefault("meta", defaultMetaAddrs()), "metaserver addresses (or the service IP)")
	fs.StringVar(&o.dir, "dir", "/.history", "directory of the workload's files")
	fs.StringVar(&o.out, "out", "", "write the report to this file instead of stdout")
	fs.IntVar(&o.keys, "keys", 3, "registers (files)")
	fs.IntVar(&o.workers, "workers", 4, "register clients")
	fs.IntVar(&o.bulkW, "bulk-workers", 1, "bulk writers")
	fs.IntVar(&o.bulkSize, "bulk-size", 256<<10, "bytes per bulk file (stored 1+0: above 128 KiB a single dataserver can hold it)")
	fs.DurationVar(&o.duration, "duration", 2*time.Minute, "stop after this long even without a signal")
	fs.DurationVar(&o.opTimeout, "op-timeout", 30*time.Second, "an operation not done in this time counts as failed")
	fs.BoolVar(&asJSON, "json", true, "write JSON (the only format)")
	tf := addTLSFlags(fs, true)
	if err := parse(fs, args, 0, 0, "drill history [flags]"); err != nil {
		return err
	}
	if o.keys < 1 || o.workers < 1 || o.bulkW < 0 || o.bulkSize < 1 || o.opTimeout <= 0 {
		return usageErr("--keys and --workers must be at least 1, --bulk-size and --op-timeout positive")
	}
	warn, _ := newLogger(stderr, "warn")
	id, err := tf.identity(pki.RoleClient, warn)
	if err != nil {
		return err
	}
	c, err := client.New(client.Config{MetaAddrs: splitList(o.meta), Logger: slog.New(slog.DiscardHandler), TLS: id})
	if err != nil {
		return err
	}
	defer c.Close()
	inos, err := setupRegisters(ctx, c, o)
	if err != nil {
		return err
	}
	fmt.Fprintln(stderr, "drill history: workload running")
	h := &history{o: o, c: c, start: time.Now()}
	runCtx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	h.run(runCtx, inos)
	rep := h.report()
	fmt.Fprintf(stderr, "drill history: %d register ops, %d bulk files, %d failed; verifying\n", len(rep.Ops), rep.BulkFiles, rep.Failed)
	// Verification runs after the stop signal, so on a fresh context.
	vctx, vcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer vcancel()
	rep.BulkVerified = h.verify(vctx)
	return writeJSON(rep, o.out, stdout)
}

func setupRegisters(ctx context.Context, c *client.Client, o historyOptions) ([]uint64, error) {
	if err := c.MkdirAll(ctx, o.dir, 0o755); err != nil {
		return nil, err
	}
	inos := make([]uint64, o.keys)
	for k := range inos {
		p := fmt.Sprintf("%s/key%d", o.dir, k)
		attr, err := c.Put(ctx, p, bytes.NewReader(nil), client.PutOptions{})
		if err != nil {
			return nil, err
		}
		inos[k] = attr.GetIno()
	}
	return inos, nil
}

func writeJSON(v any, path string, stdout io.Writer) error {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return err
	}
	if path == "" {
		_, err = stdout.Write(append(b, '\n'))
		return err
	}
	if err := os.WriteFile(path+".tmp", b, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(path+".tmp", path)
}

// history is the running workload and what it recorded.
type history struct {
	o     historyOptions
	c     *client.Client
	start time.Time

	mu     sync.Mutex
	ops    []linearize.Op
	failed int
	errs   []string
	stall  time.Duration
	bulk   map[string][]byte
}

func (h *history) now() int64 { return time.Since(h.start).Nanoseconds() }

func (h *history) run(ctx context.Context, inos []uint64) {
	h.bulk = map[string][]byte{}
	var wg sync.WaitGroup
	for id := 0; id < h.o.workers; id++ {
		wg.Add(1)
		go func() { defer wg.Done(); h.registerWorker(ctx, id, inos) }()
	}
	for id := 0; id < h.o.bulkW; id++ {
		wg.Add(1)
		go func() { defer wg.Done(); h.bulkWorker(ctx, id) }()
	}
	wg.Wait()
}

// fail records a failed operation.
func (h *history) fail(what string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failed++
	if len(h.errs) < 10 {
		h.errs = append(h.errs, fmt.Sprintf("%.3fs: %s: %v", time.Since(h.start).Seconds(), what, err))
	}
}

func (h *history) took(d time.Duration) {
	h.mu.Lock()
	h.stall = max(h.stall, d)
	h.mu.Unlock()
}

// registerWorker reads and writes random registers until ctx ends. Each
// operation runs on a context of its own, so that stopping the workload
// never cuts one short: an operation either completes or fails.
func (h *history) registerWorker(ctx context.Context, id int, inos []uint64) {
	r := mrand.New(mrand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
	for seq := 1; ctx.Err() == nil; seq++ {
		key := r.IntN(len(inos))
		op := linearize.Op{Client: id, Key: strconv.Itoa(key), Write: r.IntN(2) == 0}
		if op.Write {
			op.Value = fmt.Sprintf("c%d-%d", id, seq)
		}
		octx, cancel := context.WithTimeout(context.Background(), h.o.opTimeout)
		op.Call = h.now()
		val, err := h.registerOp(octx, inos[key], op)
		op.Return = h.now()
		cancel()
		h.took(time.Duration(op.Return - op.Call))
		if err != nil {
			h.fail(fmt.Sprintf("register %d (write=%v)", key, op.Write), err)
			if !op.Write {
				continue // a failed read observed nothing
			}
			op.Pending = true // the write may still take effect
			h.mu.Lock()
			h.ops = append(h.ops, op)
			h.mu.Unlock()
			return // a client with an operation in doubt issues no more
		}
		if !op.Write {
			op.Value = val
		}
		h.mu.Lock()
		h.ops = append(h.ops, op)
		h.mu.Unlock()
	}
}

func (h *history) registerOp(ctx context.Context, ino uint64, op linearize.Op) (string, error) {
	if op.Write {
		return "", h.c.SetXattr(ctx, ino, "user.reg", []byte(op.Value), 0)
	}
	v, err := h.c.GetXattr(ctx, ino, "user.reg")
	if rpcerr.ErrnoOf(err) == syscall.ENODATA || errors.Is(err, syscall.ENODATA) {
		return "", nil // never written
	}
	return string(v), err
}

// bulkWorker writes files of random bytes and reads each back at once.
func (h *history) bulkWorker(ctx context.Context, id int) {
	pol := &stratapb.StripePolicy{DataShards: 1, ParityShards: 0, ChunkSize: 4 << 20, SmallThreshold: 128 << 10}
	for n := 0; ctx.Err() == nil; n++ {
		p := fmt.Sprintf("%s/bulk%d-%d", h.o.dir, id, n)
		data := make([]byte, h.o.bulkSize)
		rand.Read(data)
		octx, cancel := context.WithTimeout(context.Background(), h.o.opTimeout)
		t0 := time.Now()
		_, err := h.c.Put(octx, p, bytes.NewReader(data), client.PutOptions{Policy: pol})
		var got bytes.Buffer
		if err == nil {
			_, err = h.c.Get(octx, p, &got)
			if err == nil && !bytes.Equal(got.Bytes(), data) {
				err = fmt.Errorf("read back %d bytes that differ from the %d written", got.Len(), len(data))
			}
		}
		cancel()
		h.took(time.Since(t0))
		if err != nil {
			h.fail("bulk "+p, err)
			continue
		}
		h.mu.Lock()
		h.bulk[p] = data
		h.mu.Unlock()
	}
}

// verify reads every bulk file again and returns the bytes that matched.
func (h *history) verify(ctx context.Context) int64 {
	h.mu.Lock()
	files := h.bulk
	h.mu.Unlock()
	var ok int64
	for p, want := range files {
		var got bytes.Buffer
		_, err := h.c.Get(ctx, p, &got)
		if err == nil && !bytes.Equal(got.Bytes(), want) {
			err = fmt.Errorf("%d bytes differ from the %d written", got.Len(), len(want))
		}
		if err != nil {
			h.fail("verify "+p, err)
			continue
		}
		ok += int64(len(want))
	}
	return ok
}

func (h *history) report() historyReport {
	h.mu.Lock()
	defer h.mu.Unlock()
	rep := historyReport{Ops: h.ops, Failed: h.failed, Errors: h.errs, BulkFiles: len(h.bulk),
		StallMaxMs: float64(h.stall.Microseconds()) / 1000, DurationMs: msSince(h.start), ClientTimeout: h.o.opTimeout.String()}
	for _, d := range h.bulk {
		rep.BulkBytes += int64(len(d))
	}
	return rep
}
