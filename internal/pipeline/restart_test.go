package pipeline

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/decode"
	"github.com/cdcflow/cdcflow/internal/source"
	"github.com/cdcflow/cdcflow/internal/source/file"
)

// crashingSink stores call crashAt and then behaves as a dead process: the
// call returns an error (the caller cannot know it was stored) and every
// later call fails. It cancels the run so the test can restart it.
func crashingSink(st *memState, crashAt int, cancel context.CancelFunc) *memSink {
	var mu sync.Mutex
	down := false
	return &memSink{
		st: st,
		fail: func(call int, _ *change.Batch) error {
			mu.Lock()
			defer mu.Unlock()
			if down {
				return errors.New("process is gone")
			}
			return nil
		},
		crash: func(call int, _ *change.Batch) error {
			mu.Lock()
			defer mu.Unlock()
			if call == crashAt {
				down = true
				cancel()
				return errors.New("connection lost after commit")
			}
			return nil
		},
	}
}

func envelopeOf(records ...string) string {
	var parts []string
	for i, r := range records {
		parts = append(parts, fmt.Sprintf(`{"kinesis":{"data":%q,"sequenceNumber":"%d"}}`, base64.StdEncoding.EncodeToString([]byte(r)), i))
	}
	return `{"Records":[` + strings.Join(parts, ",") + `]}`
}

// TestRestartAfterCrashAtEveryCommit crashes the first run right after each
// possible commit (stored, but neither acknowledged nor known to be stored)
// and restarts from the sink's checkpoints: every row and dead letter must be
// stored exactly once.
func TestRestartAfterCrashAtEveryCommit(t *testing.T) {
	lines := []string{
		full("orders", 1, ""),
		chunkedMain("docs", 2, "A", 2),
		envelopeOf(full("orders", 10, ""), full("orders", 11, "")),
		`{"type":"full"`, // invalid: one dead letter
		fragment(2, "A", 0),
		full("orders", 5, ""),
		fragment(2, "A", 1),
		full("orders", 7, ""),
		full("orders", 8, ""),
	}
	path := writeLines(t, lines...)
	tune := func(c *Config) { c.BatchMaxEvents = 2; c.ShutdownTimeout = 20 * time.Millisecond }
	wantKeys := []string{"orders/1", "orders/10", "orders/11", "orders/5", "orders/7", "orders/8", "docs/2"}

	// A clean run tells how many commits there are.
	clean := newState()
	if _, err := runFile(t, clean, nil, path, tune); err != nil {
		t.Fatal(err)
	}
	n := len(clean.commits)
	if n < 4 {
		t.Fatalf("only %d commits; the test needs several", n)
	}
	heldAtCrash := 0
	for crashAt := 1; crashAt <= n; crashAt++ {
		t.Run(fmt.Sprintf("crash after commit %d of %d", crashAt, n), func(t *testing.T) {
			st := newState()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cfg := baseConfig(openFiles(t, file.Options{BatchRecords: 3}, path), newDecoder(t, decode.Options{}), crashingSink(st, crashAt, cancel))
			tune(&cfg)
			if _, err := Run(ctx, cfg); err == nil {
				t.Fatal("first run survived the crash")
			}
			if st.cps[partKey{path, ""}].Held {
				heldAtCrash++
			}
			sum, err := runFile(t, st, nil, path, tune)
			if err != nil {
				t.Fatalf("restart: %v", err)
			}
			keys := st.storedKeys()
			for _, k := range wantKeys {
				if keys[k] != 1 {
					t.Errorf("%s stored %d times, want once", k, keys[k])
				}
			}
			if len(keys) != len(wantKeys) {
				t.Errorf("stored keys %v, want %v", keys, wantKeys)
			}
			if len(st.dead) != 1 || lineOf(st.dead[0].Position) != 4 {
				t.Errorf("dead letters %+v, want only line 4", st.dead)
			}
			if cp := st.cps[partKey{path, ""}]; lineOf(cp.Applied) != len(lines) || cp.Held {
				t.Errorf("final checkpoint %+v", cp)
			}
			if sum.Records == 0 && crashAt < n {
				t.Error("restart read nothing")
			}
		})
	}
	if heldAtCrash == 0 {
		t.Error("no crash point stored a held checkpoint; the test no longer covers resuming from a held piece")
	}
}

// TestRestartKeepsDeadLettersOfHeldPieces: a piece held when the checkpoint
// was stored is not stored; if the restarted run gives up on it, its dead
// letter is kept even though it lies before the stored Applied position.
func TestRestartKeepsDeadLettersOfHeldPieces(t *testing.T) {
	path := writeLines(t, full("orders", 1, ""), chunkedMain("docs", 2, "A", 2), full("orders", 3, ""))
	st := newState()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	snk := crashingSink(st, 1, cancel)
	cfg := baseConfig(openFiles(t, file.Options{}, path), newDecoder(t, decode.Options{}), snk)
	cfg.ShutdownTimeout = 20 * time.Millisecond
	cfg.BatchMaxEvents = 2 // the first commit holds lines 1-3, with line 2 held
	if _, err := Run(ctx, cfg); err == nil {
		t.Fatal("first run survived the crash")
	}
	cp := st.cps[partKey{path, ""}]
	if !cp.Held || lineOf(cp.Resume) != 2 || lineOf(cp.Applied) != 3 {
		t.Fatalf("stored checkpoint %+v, want applied 3 held from 2", cp)
	}
	if len(st.dead) != 0 {
		t.Fatalf("dead letters before restart: %+v", st.dead)
	}
	sum, err := runFile(t, st, nil, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.dead) != 1 || st.dead[0].Reason != change.ReasonFragmentTimeout || lineOf(st.dead[0].Position) != 2 {
		t.Fatalf("dead letters %+v, want the held piece at line 2", st.dead)
	}
	if keys := st.storedKeys(); keys["orders/1"] != 1 || keys["orders/3"] != 1 {
		t.Fatalf("stored %v", keys)
	}
	if sum.AlreadyStored != 1 { // orders/3, re-read from the held position
		t.Fatalf("AlreadyStored = %d, want 1", sum.AlreadyStored)
	}
}

// replaySource is a transport without Resume that redelivers from its own
// committed position, as a Kafka consumer group does after a crash.
type replaySource struct {
	raws      []change.Raw
	next      int
	committed *int // shared across runs: the broker's committed offset
	batch     int
	mu        sync.Mutex
}

func (s *replaySource) Read(ctx context.Context) ([]change.Raw, source.AckFunc, error) {
	if s.next >= len(s.raws) {
		return nil, nil, source.ErrEndOfInput
	}
	end := min(s.next+s.batch, len(s.raws))
	b := s.raws[s.next:end]
	s.next = end
	return b, func(_ context.Context, err error) error {
		if err == nil {
			s.mu.Lock()
			*s.committed = end
			s.mu.Unlock()
		}
		return nil
	}, nil
}

func (s *replaySource) Close(context.Context) error { return nil }

func TestRedeliveryAfterLostAckDropsStored(t *testing.T) {
	all := raws("topic", 100, fullLines("orders", 10)...)
	committed := 0
	st := newState()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The sink stores call 2 but the process dies before acking it.
	cfg := baseConfig(&replaySource{raws: all, committed: &committed, batch: 2}, newDecoder(t, decode.Options{}), crashingSink(st, 2, cancel))
	cfg.BatchMaxEvents = 2
	cfg.ShutdownTimeout = 20 * time.Millisecond
	if _, err := Run(ctx, cfg); err == nil {
		t.Fatal("first run survived the crash")
	}
	if committed != 2 || len(st.events) != 4 {
		t.Fatalf("after the crash: committed %d records, stored %d events; want 2 and 4", committed, len(st.events))
	}
	// The broker redelivers from its committed offset: records 3-4 again.
	cfg = baseConfig(&replaySource{raws: all, next: committed, committed: &committed, batch: 2}, newDecoder(t, decode.Options{}), &memSink{st: st})
	sum, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if sum.AlreadyStored != 2 || sum.Events != 6 {
		t.Fatalf("AlreadyStored=%d Events=%d, want 2 and 6", sum.AlreadyStored, sum.Events)
	}
	for k, n := range st.storedKeys() {
		if n != 1 {
			t.Errorf("%s stored %d times", k, n)
		}
	}
	if len(st.storedKeys()) != 10 || committed != 10 {
		t.Fatalf("stored %d keys, committed %d", len(st.storedKeys()), committed)
	}
}

func TestStdinCheckpointNotReused(t *testing.T) {
	st := newState()
	for run, ids := range [][]int{{1, 2, 3}, {4, 5, 6}} {
		var in strings.Builder
		for _, id := range ids {
			in.WriteString(full("orders", id, "") + "\n")
		}
		src := openFiles(t, file.Options{Stdin: strings.NewReader(in.String())}, "-")
		sum, err := Run(context.Background(), baseConfig(src, newDecoder(t, decode.Options{}), &memSink{st: st}))
		if err != nil {
			t.Fatal(err)
		}
		if sum.Events != 3 || sum.AlreadyStored != 0 {
			t.Fatalf("run %d: events %d, already stored %d; a new stdin is a new stream", run, sum.Events, sum.AlreadyStored)
		}
	}
	if len(st.storedKeys()) != 6 {
		t.Fatalf("stored %v", st.storedKeys())
	}
}

func TestGracefulCancelAppliesInFlight(t *testing.T) {
	src := newChanSource()
	src.reads = make(chan struct{}, 10)
	st := newState()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := baseConfig(src, newDecoder(t, decode.Options{}), &memSink{st: st})
	type result struct {
		sum Summary
		err error
	}
	done := make(chan result, 1)
	go func() { s, err := Run(ctx, cfg); done <- result{s, err} }()
	guard(t, src.reads, "first Read")
	src.in <- raws("s", 1, full("orders", 1, ""), full("orders", 2, ""), full("orders", 3, ""))
	guard(t, src.reads, "second Read") // the loop owns the first batch now
	if len(st.events) != 0 {
		t.Fatal("applied before the batch was full or old")
	}
	cancel()
	res := guard(t, done, "Run to return")
	if res.err != nil {
		t.Fatalf("graceful stop returned %v", res.err)
	}
	if !res.sum.Interrupted || res.sum.Events != 3 {
		t.Fatalf("summary %+v", res.sum)
	}
	if len(st.events) != 3 {
		t.Fatalf("stored %d events, want the 3 in flight", len(st.events))
	}
	if err := guard(t, src.acks, "ack"); err != nil {
		t.Fatalf("in-flight batch acked with %v, want nil", err)
	}
}

func TestCancelWithSinkDownNacks(t *testing.T) {
	src := newChanSource()
	src.reads = make(chan struct{}, 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	snk := &memSink{st: newState(), fail: func(int, *change.Batch) error { return errors.New("connection refused") }}
	cfg := baseConfig(src, newDecoder(t, decode.Options{}), snk)
	cfg.ShutdownTimeout = 20 * time.Millisecond
	done := make(chan error, 1)
	go func() { _, err := Run(ctx, cfg); done <- err }()
	guard(t, src.reads, "first Read")
	src.in <- raws("s", 1, full("orders", 1, ""))
	guard(t, src.reads, "second Read")
	cancel()
	err := guard(t, done, "Run to return")
	if err == nil || !strings.Contains(err.Error(), "shutdown deadline") {
		t.Fatalf("Run = %v, want a shutdown deadline error", err)
	}
	if ack := guard(t, src.acks, "nack"); !errors.Is(ack, errStopped) {
		t.Fatalf("batch acked with %v, want a negative ack", ack)
	}
	if len(snk.st.events) != 0 {
		t.Fatal("stored while down")
	}
}

// TestAcksWithheldWhileHeld: a source without Resume commits where it is
// acked, so a batch holding a DSQL piece is acknowledged only once the piece
// is no longer held.
func TestAcksWithheldWhileHeld(t *testing.T) {
	src := newChanSource()
	seen := make(chan *change.Batch, 10)
	st := newState()
	cfg := baseConfig(src, newDecoder(t, decode.Options{}), &memSink{st: st, seen: seen})
	cfg.BatchMaxWait = time.Millisecond
	done := make(chan error, 1)
	go func() { _, err := Run(context.Background(), cfg); done <- err }()

	src.in <- raws("s", 1, chunkedMain("docs", 2, "A", 2))
	if b := guard(t, seen, "checkpoint of the held piece"); !b.Checkpoints[0].Held {
		t.Fatalf("checkpoint %+v not held", b.Checkpoints[0])
	}
	src.in <- raws("s", 2, full("orders", 1, ""))
	guard(t, seen, "second batch")
	if n := src.ackedCount(); n != 0 {
		t.Fatalf("%d batches acked while a piece of the first is held", n)
	}
	src.in <- raws("s", 3, fragment(2, "A", 0), fragment(2, "A", 1))
	guard(t, seen, "third batch")
	for i := 0; i < 3; i++ {
		if err := guard(t, src.acks, "ack"); err != nil {
			t.Fatalf("ack %d = %v", i, err)
		}
	}
	close(src.in)
	if err := guard(t, done, "Run"); err != nil {
		t.Fatal(err)
	}
}

func TestExpireDeadLettersHeldPieces(t *testing.T) {
	src := newChanSource()
	seen := make(chan *change.Batch, 10)
	st := newState()
	cfg := baseConfig(src, newDecoder(t, decode.Options{FragmentTimeout: time.Nanosecond}), &memSink{st: st, seen: seen})
	cfg.ExpireEvery = time.Millisecond
	cfg.BatchMaxWait = time.Millisecond
	done := make(chan Summary, 1)
	go func() { s, _ := Run(context.Background(), cfg); done <- s }()
	src.in <- raws("s", 1, chunkedMain("docs", 2, "A", 2))
	for {
		b := guard(t, seen, "the expired piece's dead letter")
		if len(b.Dead) == 1 {
			if b.Dead[0].Reason != change.ReasonFragmentTimeout || b.Checkpoints[0].Held {
				t.Fatalf("batch %+v", b)
			}
			break
		}
	}
	if err := guard(t, src.acks, "ack after expiry"); err != nil {
		t.Fatal(err)
	}
	close(src.in)
	if sum := guard(t, done, "Run"); sum.Dead[change.ReasonFragmentTimeout] != 1 {
		t.Fatalf("summary dead %v", sum.Dead)
	}
}

func TestCovered(t *testing.T) {
	p := func(off string, idx int, indexed bool) change.Position {
		return change.Position{Source: "f", Offset: off, Index: idx, Indexed: indexed}
	}
	cases := []struct {
		p, applied change.Position
		want       bool
	}{
		{p("9", 0, false), p("10", 0, false), true},
		{p("10", 0, false), p("10", 0, false), true},
		{p("11", 0, false), p("10", 0, false), false},
		{p("10", 7, true), p("10", 0, false), true}, // a whole envelope line was applied
		{p("10", 7, true), p("10", 3, true), false},
		{p("10", 3, true), p("10", 3, true), true},
		{p("100", 0, false), p("99", 0, false), false}, // numeric, not textual
		{change.Position{Source: "g", Offset: "1"}, p("10", 0, false), false},
	}
	for _, tc := range cases {
		if got := covered(tc.p, tc.applied); got != tc.want {
			t.Errorf("covered(%s, %s) = %v, want %v", tc.p, tc.applied, got, tc.want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	_, err := Run(context.Background(), Config{Decoder: newDecoder(t, decode.Options{}), Sink: &memSink{st: newState()}})
	if err == nil || !strings.Contains(err.Error(), "Source") {
		t.Fatalf("err = %v", err)
	}
	_, err = Run(context.Background(), Config{Source: newChanSource(), Decoder: newDecoder(t, decode.Options{}), Sink: &memSink{st: newState()}, MaxAttempts: -1})
	if err == nil || !strings.Contains(err.Error(), "negative") {
		t.Fatalf("err = %v", err)
	}
}

// TestChunksOfOtherWriterReloaded: a set completed and stored by another
// process (a previous owner of a partition) after this run started is
// recognised when this run first reads the partition holding a redelivered
// piece of it: the stored chunk ids are reloaded, so the piece is dropped
// instead of being held and dead-lettered as fragment_timeout.
func TestChunksOfOtherWriterReloaded(t *testing.T) {
	src := newChanSource()
	st := newState()
	seen := make(chan *change.Batch, 10)
	snk := &memSink{st: st, seen: seen}
	cfg := baseConfig(src, newDecoder(t, decode.Options{}), snk)
	cfg.BatchMaxWait = time.Millisecond
	done := make(chan error, 1)
	go func() { _, err := Run(context.Background(), cfg); done <- err }()

	src.in <- raws("s", 1, full("orders", 1, ""))
	guard(t, seen, "first batch")
	// Another writer stores set S (its main record and both fragments).
	other := newDecoder(t, decode.Options{})
	var out decode.Output
	for _, r := range raws("s2", 1, chunkedMain("docs", 2, "S", 2), fragment(2, "S", 0), fragment(2, "S", 1)) {
		other.Decode(r, time.Now(), &out)
	}
	if len(out.Events) != 1 || out.Events[0].ChunkID != "S" {
		t.Fatalf("other writer decoded %+v, want set S's event", out.Events)
	}
	if _, err := snk.Apply(context.Background(), &change.Batch{Events: out.Events}); err != nil {
		t.Fatal(err)
	}
	guard(t, seen, "other writer's batch")
	// A redelivered piece of S, in a partition this run has not read yet.
	late := raws("s2", 3, fragment(2, "S", 1))
	src.in <- late
	close(src.in)
	if err := guard(t, done, "Run to return"); err != nil {
		t.Fatal(err)
	}
	if len(st.dead) != 0 {
		t.Errorf("dead letters %+v, want none: the piece belongs to a stored set", st.dead)
	}
	if len(st.events) != 2 {
		t.Errorf("stored %d events, want 2 (orders 1 and S once)", len(st.events))
	}
}
