package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/decode"
	"github.com/cdcflow/cdcflow/internal/sink"
	"github.com/cdcflow/cdcflow/internal/source"
	"github.com/cdcflow/cdcflow/internal/source/file"
)

// ---- records (real Aurora DSQL CDC JSON, decoded by the real decoder) ----

func dsqlSource(table string, ts int64) string {
	return fmt.Sprintf(`{"version":"1.0","ts_ns":%d,"txId":"tx%d","schema":"public","table":%q,"db":"postgres","cluster":"c1"}`, ts, ts, table)
}

// full is a DSQL insert of row id into table; ts orders commits.
func full(table string, id int, extra string) string {
	ts := int64(1705318200000000000) + int64(id)
	after := fmt.Sprintf(`{"id":%d%s}`, id, extra)
	return fmt.Sprintf(`{"type":"full","op":"c","before":null,"after":%s,"source":%s,"ts_ns":%d}`, after, dsqlSource(table, ts), ts+1)
}

// chunkedMain is the main record of an oversized insert of row id, whose
// after image comes in n fragments of chunk chunk.
func chunkedMain(table string, id int, chunk string, n int) string {
	ts := int64(1705318200000000000) + int64(id)
	return fmt.Sprintf(`{"type":"chunked","op":"c","before":null,"after":null,"source":%s,"ts_ns":%d,"chunked":{"chunk_id":%q,"fragments":%d,"field":"after"}}`,
		dsqlSource(table, ts), ts+1, chunk, n)
}

// fragment returns fragment i of 2 of row id's after image.
func fragment(id int, chunk string, i int) string {
	parts := []string{fmt.Sprintf(`{\"id\":%d,`, id), `\"big\":\"xxxxxxxx\"}`}
	return fmt.Sprintf(`{"type":"fragment","chunk_id":%q,"index":%d,"data":"%s"}`, chunk, i, parts[i])
}

func writeLines(t *testing.T, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "in.ndjson")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func fullLines(table string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = full(table, i+1, "")
	}
	return out
}

// ---- an in-memory sink with failure injection ----

// memState is what a memSink has durably stored; it survives "restarts"
// (a new memSink on the same state).
type memState struct {
	events  []change.Event
	dead    []change.DeadLetter
	cps     map[partKey]change.Checkpoint
	commits []commit
	chunks  []string // chunk ids of stored events (sink.ChunkStore)
}

// commit is one successful Apply, with what was stored after it.
type commit struct {
	events, dead int
	cps          []change.Checkpoint
	stored       map[string]bool // positions (String) of stored events and dead letters
}

func newState() *memState { return &memState{cps: map[partKey]change.Checkpoint{}} }

// memSink stores batches in memory, all or nothing per Apply. Events whose
// after image has "poison":true are rejected with sink.ErrPermanent, ones
// with "flaky":true with a transient error. fail, when set, can fail any
// call before anything is stored; crash, when set, can fail a call after
// storing it (an ambiguous commit).
type memSink struct {
	mu    sync.Mutex
	st    *memState
	calls int
	fail  func(call int, b *change.Batch) error
	crash func(call int, b *change.Batch) error
	seen  chan *change.Batch // optional: every committed batch
}

var (
	_ sink.Sink          = (*memSink)(nil)
	_ sink.PositionStore = (*memSink)(nil)
	_ sink.ChunkStore    = (*memSink)(nil)
)

func (s *memSink) Apply(ctx context.Context, b *change.Batch) (change.ApplyResult, error) {
	s.mu.Lock()
	s.calls++
	call := s.calls
	if err := ctx.Err(); err != nil {
		s.mu.Unlock()
		return change.ApplyResult{}, err
	}
	if s.fail != nil {
		if err := s.fail(call, b); err != nil {
			s.mu.Unlock()
			return change.ApplyResult{}, err
		}
	}
	for i := range b.Events {
		if bytes.Contains(b.Events[i].After, []byte(`"poison":true`)) {
			s.mu.Unlock()
			return change.ApplyResult{}, fmt.Errorf("insert %s key %s: column amount cannot hold the value: %w", b.Events[i].Table, b.Events[i].Key, sink.ErrPermanent)
		}
		if bytes.Contains(b.Events[i].After, []byte(`"flaky":true`)) {
			s.mu.Unlock()
			return change.ApplyResult{}, errors.New("connection reset by peer")
		}
	}
	res := change.ApplyResult{Dead: map[string]int{}, Tables: map[string]int{}}
	for i := range b.Events {
		if b.Events[i].ChunkID != "" {
			s.st.chunks = append(s.st.chunks, b.Events[i].ChunkID)
		}
		s.st.events = append(s.st.events, b.Events[i].Clone())
		res.Logged++
		res.Applied++
		res.Tables[b.Events[i].QualifiedTable()]++
	}
	for _, d := range b.Dead {
		d.Raw = bytes.Clone(d.Raw)
		s.st.dead = append(s.st.dead, d)
		res.Dead[d.Reason]++
	}
	for _, cp := range b.Checkpoints {
		s.st.cps[partKey{cp.Source, cp.Partition}] = cp
	}
	c := commit{events: len(b.Events), dead: len(b.Dead), cps: append([]change.Checkpoint(nil), b.Checkpoints...), stored: map[string]bool{}}
	for _, e := range s.st.events {
		c.stored[e.Position.String()] = true
	}
	for _, d := range s.st.dead {
		c.stored[d.Position.String()] = true
	}
	s.st.commits = append(s.st.commits, c)
	var err error
	if s.crash != nil {
		err = s.crash(call, b)
	}
	s.mu.Unlock()
	if s.seen != nil {
		cp := &change.Batch{Events: append([]change.Event(nil), b.Events...), Dead: append([]change.DeadLetter(nil), b.Dead...),
			Checkpoints: append([]change.Checkpoint(nil), b.Checkpoints...)}
		s.seen <- cp
	}
	return res, err
}

func (s *memSink) Checkpoints(_ context.Context, src string) ([]change.Checkpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []change.Checkpoint
	for _, cp := range s.st.cps {
		if src == "" || cp.Source == src {
			out = append(out, cp)
		}
	}
	return out, nil
}

func (s *memSink) Close(context.Context) error { return nil }

// CompletedChunks implements sink.ChunkStore: sequence numbers are indexes
// into memState.chunks, plus one.
func (s *memSink) CompletedChunks(_ context.Context, after int64, limit int) ([]string, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := slices.Clone(s.st.chunks[after:])
	slices.Reverse(ids)
	if len(ids) > limit {
		ids = ids[:limit]
	}
	return ids, int64(len(s.st.chunks)), nil
}

// storedKeys counts stored events by table/key.
func (st *memState) storedKeys() map[string]int {
	m := map[string]int{}
	for _, e := range st.events {
		m[e.Table+"/"+e.Key]++
	}
	return m
}

// ---- a source fed by the test ----

// chanSource delivers the batches the test sends on in (closing in ends the
// input) and reports acks on acks. It is not a Resumer.
type chanSource struct {
	in    chan []change.Raw
	acks  chan error
	reads chan struct{} // one value per Read call, if set
	mu    sync.Mutex
	seq   int
	acked int
}

func newChanSource() *chanSource {
	return &chanSource{in: make(chan []change.Raw), acks: make(chan error, 100)}
}

func (s *chanSource) Read(ctx context.Context) ([]change.Raw, source.AckFunc, error) {
	if s.reads != nil {
		s.reads <- struct{}{}
	}
	select {
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case b, ok := <-s.in:
		if !ok {
			return nil, nil, source.ErrEndOfInput
		}
		s.mu.Lock()
		s.seq++
		seq := s.seq
		s.mu.Unlock()
		return b, func(_ context.Context, err error) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			if seq != s.acked+1 {
				return fmt.Errorf("ack %d out of order (last %d)", seq, s.acked)
			}
			s.acked = seq
			s.acks <- err
			return nil
		}, nil
	}
}

func (s *chanSource) Close(context.Context) error { return nil }

func (s *chanSource) ackedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked
}

func raws(src string, first int, lines ...string) []change.Raw {
	out := make([]change.Raw, len(lines))
	for i, l := range lines {
		out[i] = change.Raw{Data: []byte(l), Position: change.Position{Source: src, Partition: "0", Offset: strconv.Itoa(first + i)}}
	}
	return out
}

// ---- running ----

func newDecoder(t *testing.T, o decode.Options) *decode.Decoder {
	t.Helper()
	d, err := decode.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func openFiles(t *testing.T, opts file.Options, paths ...string) *file.Source {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	s, err := file.Open(paths, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func quietLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// baseConfig returns a config with fast retries and a long max wait, so
// tests decide when batches end.
func baseConfig(src source.Source, dec *decode.Decoder, snk sink.Sink) Config {
	return Config{
		Source: src, Decoder: dec, Sink: snk,
		BatchMaxEvents: 1000, BatchMaxWait: time.Hour,
		MaxAttempts: 3, RetryInitial: time.Millisecond, RetryMax: 2 * time.Millisecond,
		ShutdownTimeout: 5 * time.Second, ExpireEvery: time.Hour,
		Logger: quietLogger(),
	}
}

// guard fails the test if ch yields nothing for a long time: a deadlock
// guard, not a timing assertion.
func guard[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func lineOf(p change.Position) int {
	n, _ := strconv.Atoi(p.Offset)
	return n
}
