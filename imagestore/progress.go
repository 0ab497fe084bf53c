package imagestore

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// progressBar redraws one status line on a terminal: how far through the
// source the import is (when the source knows its size), files and bytes
// written, and the rate.
type progressBar struct {
	w     io.Writer
	src   Source
	stats *importStats
	start time.Time
	stop  chan struct{}
	done  sync.WaitGroup
}

func startProgress(w io.Writer, src Source, stats *importStats) *progressBar {
	p := &progressBar{w: w, src: src, stats: stats, start: time.Now(), stop: make(chan struct{})}
	if w == nil {
		return p
	}
	p.done.Go(func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.draw()
			case <-p.stop:
				p.draw()
				fmt.Fprintln(p.w)
				return
			}
		}
	})
	return p
}

func (p *progressBar) Stop() {
	if p.w == nil {
		return
	}
	close(p.stop)
	p.done.Wait()
}

func (p *progressBar) draw() {
	const width = 30
	done, total := p.src.Progress()
	bytes := p.stats.bytes.Load()
	secs := max(time.Since(p.start).Seconds(), 0.001)
	bar := ""
	if total > 0 {
		frac := min(float64(done)/float64(total), 1)
		n := int(frac * width)
		bar = fmt.Sprintf("[%s%s] %3.0f%% ", strings.Repeat("=", n), strings.Repeat(" ", width-n), frac*100)
	}
	fmt.Fprintf(p.w, "\r%s%d files, %s, %s/s   ", bar, p.stats.files.Load(), mib(bytes), mib(int64(float64(bytes)/secs)))
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
