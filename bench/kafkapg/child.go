package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// child is a cdcflow process.
type child struct {
	cmd     *exec.Cmd
	start   time.Time
	end     time.Time // set when it exited, before done is closed
	logPath string
	done    chan struct{}
	err     error
	hwm     atomic.Int64 // highest VmHWM seen, bytes
}

// usage is what a finished child used.
type usage struct {
	wall   time.Duration // start to exit
	cpu    time.Duration // user + system
	maxRSS int64         // bytes: the highest VmHWM sampled while it ran
}

// The child's peak RSS is sampled from /proc/<pid>/status (VmHWM) rather
// than taken from its rusage: Go starts children with CLONE_VFORK|CLONE_VM,
// so the kernel carries this (large) process's RSS high-water mark into the
// child's ru_maxrss at exec. VmHWM belongs to the child's own address
// space. Sampling every 20 ms can miss growth in the last 20 ms of a run.
const hwmEvery = 20 * time.Millisecond

func (c *child) sampleHWM() {
	t := time.NewTicker(hwmEvery)
	defer t.Stop()
	for {
		if v := readHWM(c.cmd.Process.Pid); v > c.hwm.Load() {
			c.hwm.Store(v)
		}
		select {
		case <-c.done:
			return
		case <-t.C:
		}
	}
}

// readHWM returns VmHWM of /proc/<pid>/status in bytes; 0 when unreadable.
func readHWM(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	return parseHWM(string(b))
}

func parseHWM(status string) int64 {
	for _, line := range strings.Split(status, "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

// startChild starts bin with args; its stdout and stderr go to logPath.
func startChild(bin string, args, env []string, logPath string) (*child, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	c := &child{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	c.start = time.Now()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	go c.sampleHWM()
	go func() {
		c.err = cmd.Wait()
		c.end = time.Now()
		f.Close()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// exited reports whether the child has exited.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// wait waits for the child to exit (sending SIGTERM first when terminate)
// and returns what it used; an unclean exit is an error naming its log.
func (c *child) wait(terminate bool) (usage, error) {
	if terminate && !c.exited() {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-c.done:
	case <-time.After(2 * time.Minute):
		_ = c.cmd.Process.Kill()
		<-c.done
		return usage{}, fmt.Errorf("%s did not exit within 2 minutes (killed); see %s", c.cmd.Path, c.logPath)
	}
	u := usage{wall: c.end.Sub(c.start), maxRSS: c.hwm.Load()}
	if ru, ok := c.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		u.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	if c.err != nil {
		tail, _ := os.ReadFile(c.logPath)
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return u, fmt.Errorf("%s: %v; log %s ends:\n%s", c.cmd.Path, c.err, c.logPath, tail)
	}
	return u, nil
}

// cpuNow returns the CPU the running child has used so far.
func (c *child) cpuNow() time.Duration {
	st, ok := readStat(c.pid())
	if !ok {
		return 0
	}
	return st.utime + st.stime
}

// readCheckpoints returns the applied offset per partition of topic from the
// sink's checkpoint table: a record at offset o of partition p is visible
// (committed with its event-log and merged rows) once the returned offset
// of p is >= o. Before the sink has created the table, nothing is.
func readCheckpoints(ctx context.Context, conn *pgx.Conn, topic string) (map[int32]int64, error) {
	rows, err := conn.Query(ctx, `SELECT "partition", applied_offset FROM _cdc_checkpoints WHERE source = $1`, topic)
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "42P01" { // undefined_table
			return map[int32]int64{}, nil
		}
		return nil, err
	}
	defer rows.Close()
	out := map[int32]int64{}
	for rows.Next() {
		var part, off string
		if err := rows.Scan(&part, &off); err != nil {
			return nil, err
		}
		p, err := strconv.ParseInt(part, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("checkpoint partition %q: %w", part, err)
		}
		o, err := strconv.ParseInt(off, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("checkpoint offset %q: %w", off, err)
		}
		out[int32(p)] = o
	}
	return out, rows.Err()
}

// waitApplied polls the checkpoints until every partition's applied offset
// reaches last[p] (the partition's last offset) and returns when that was
// seen, and when the first checkpoint was. The child must keep running.
func waitApplied(ctx context.Context, c *child, url, topic string, last map[int32]int64, timeout time.Duration) (first, done time.Time, err error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return first, done, err
	}
	defer conn.Close(ctx)
	deadline := time.Now().Add(timeout)
	for {
		cps, err := readCheckpoints(ctx, conn, topic)
		if err != nil {
			return first, done, err
		}
		now := time.Now()
		if first.IsZero() && len(cps) > 0 {
			first = now
		}
		complete := true
		for p, off := range last {
			if cps[p] < off {
				complete = false
			}
		}
		if complete {
			return first, now, nil
		}
		if c.exited() {
			return first, done, fmt.Errorf("cdcflow exited before applying everything; see %s", c.logPath)
		}
		if now.After(deadline) {
			return first, done, fmt.Errorf("not applied after %s (checkpoints %v, want %v); see %s", timeout, cps, last, c.logPath)
		}
		select {
		case <-ctx.Done():
			return first, done, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitReady polls the child's /readyz until it answers 200.
func waitReady(ctx context.Context, c *child, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if c.exited() {
			return fmt.Errorf("cdcflow exited during startup; see %s", c.logPath)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cdcflow not ready after %s; see %s", timeout, c.logPath)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// countRows returns the number of rows of table; -1 when it does not exist.
func countRows(ctx context.Context, url, table string) (int64, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var n int64
	err = conn.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize()).Scan(&n)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42P01" {
		return -1, nil
	}
	return n, err
}
