package pipeline

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/deadletter"
	"github.com/cdcflow/cdcflow/internal/decode"
	"github.com/cdcflow/cdcflow/internal/source/file"
)

// runFile runs the pipeline over lines written to a file, with cfg
// adjusted by tune, and returns the summary, the error, the sink state and
// the file path.
func runFile(t *testing.T, st *memState, snk *memSink, path string, tune func(*Config)) (Summary, error) {
	t.Helper()
	if snk == nil {
		snk = &memSink{st: st}
	}
	cfg := baseConfig(openFiles(t, file.Options{}, path), newDecoder(t, decode.Options{}), snk)
	if tune != nil {
		tune(&cfg)
	}
	return Run(context.Background(), cfg)
}

// checkCheckpointsBehindStored asserts that at every commit, every record
// at or before a stored checkpoint's Applied (and before its Resume when
// Held) was stored: a checkpoint never runs ahead of the data.
func checkCheckpointsBehindStored(t *testing.T, st *memState, path string, recordLines []int, producesOutput func(line int) bool) {
	t.Helper()
	for ci, c := range st.commits {
		for _, cp := range c.cps {
			if cp.Source != path {
				continue
			}
			applied := lineOf(cp.Applied)
			for _, l := range recordLines {
				if l > applied || !producesOutput(l) {
					continue
				}
				if cp.Held && l >= lineOf(cp.Resume) {
					continue
				}
				pos := change.Position{Source: path, Offset: fmt.Sprint(l)}
				if !c.stored[pos.String()] && !storedIndexed(c.stored, pos.String()) {
					t.Errorf("commit %d stores checkpoint %+v but line %d is not stored", ci, cp, l)
				}
			}
		}
	}
}

func storedIndexed(stored map[string]bool, prefix string) bool {
	for k := range stored {
		if strings.HasPrefix(k, prefix+"#") {
			return true
		}
	}
	return false
}

func TestSummaryAndDeadLetterFile(t *testing.T) {
	lines := append(fullLines("orders", 4),
		`{"type":"full","op":"c"`, // invalid JSON
		`null`,                    // a Debezium tombstone: skipped
		full("customers", 9, ""),
	)
	path := writeLines(t, lines...)
	dlPath := filepath.Join(t.TempDir(), "dead.ndjson")
	dlf, err := deadletter.NewFile(dlPath)
	if err != nil {
		t.Fatal(err)
	}
	defer dlf.Close()
	st := newState()
	var progress []Progress
	src := openFiles(t, file.Options{BatchRecords: 2}, path)
	cfg := baseConfig(src, newDecoder(t, decode.Options{}), &memSink{st: st})
	cfg.BatchMaxEvents = 3
	cfg.DeadLetters = dlf
	cfg.Progress = func(p Progress) { progress = append(progress, p) }
	sum, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Records != 7 || sum.Events != 5 || sum.Applied != 5 || sum.Logged != 5 {
		t.Errorf("summary counts = %+v", sum)
	}
	if sum.Dead[change.ReasonInvalidJSON] != 1 || sum.DeadTotal() != 1 {
		t.Errorf("summary dead = %v", sum.Dead)
	}
	if sum.Skipped[change.SkipTombstone] != 1 {
		t.Errorf("summary skipped = %v", sum.Skipped)
	}
	if sum.Tables["public.orders"] != 4 || sum.Tables["public.customers"] != 1 {
		t.Errorf("summary tables = %v", sum.Tables)
	}
	if sum.Interrupted || sum.Batches < 2 || sum.Elapsed <= 0 {
		t.Errorf("summary = %+v", sum)
	}
	if int64(len(progress)) != sum.Batches {
		t.Errorf("progress called %d times for %d batches", len(progress), sum.Batches)
	}
	for i := 1; i < len(progress); i++ {
		if progress[i].Records < progress[i-1].Records || progress[i].Batches <= progress[i-1].Batches {
			t.Errorf("progress not monotonic: %+v then %+v", progress[i-1], progress[i])
		}
	}
	if last := progress[len(progress)-1]; last.Records != 7 || last.Events != 5 || last.Dead != 1 {
		t.Errorf("last progress = %+v", last)
	}
	if got := st.cps[partKey{path, ""}]; lineOf(got.Applied) != 7 || got.Held {
		t.Errorf("final checkpoint = %+v, want applied line 7", got)
	}
	if committed := src.Committed()[path]; lineOf(committed) != 7 {
		t.Errorf("source committed %v, want line 7", committed)
	}
	// The dead letter reached the file with its raw bytes and position.
	data, err := os.ReadFile(dlPath)
	if err != nil {
		t.Fatal(err)
	}
	var l deadletter.Line
	if err := json.Unmarshal(bytes.TrimSpace(data), &l); err != nil {
		t.Fatalf("dead-letter file %q: %v", data, err)
	}
	if l.Reason != change.ReasonInvalidJSON || string(l.Raw) != lines[4] || l.Position != path+":5" {
		t.Errorf("dead-letter line = %+v", l)
	}
}

func TestBatchLimits(t *testing.T) {
	// The size of one event, as the pipeline counts it.
	d := newDecoder(t, decode.Options{})
	var out decode.Output
	d.Decode(change.Raw{Data: []byte(full("orders", 1, ""))}, time.Now(), &out)
	if len(out.Events) != 1 {
		t.Fatalf("decoded %d events", len(out.Events))
	}
	size := int64(len(out.Events[0].Raw) + len(out.Events[0].After))

	var envRecs []string
	for i := 20; i < 25; i++ {
		envRecs = append(envRecs, fmt.Sprintf(`{"kinesis":{"data":%q,"sequenceNumber":"%d"}}`, base64.StdEncoding.EncodeToString([]byte(full("orders", i, ""))), i))
	}
	envelope := `{"Records":[` + strings.Join(envRecs, ",") + `]}`

	cases := []struct {
		name  string
		lines []string
		tune  func(*Config)
		want  []int // events per commit
	}{
		{"max events", fullLines("orders", 10), func(c *Config) { c.BatchMaxEvents = 3 }, []int{3, 3, 3, 1}},
		{"max bytes", fullLines("orders", 9), func(c *Config) { c.BatchMaxBytes = 2*size + 1 }, []int{3, 3, 3}},
		{"one record's output is never split", []string{full("orders", 1, ""), envelope, full("orders", 2, "")},
			func(c *Config) { c.BatchMaxEvents = 2 }, []int{6, 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := newState()
			path := writeLines(t, tc.lines...)
			if _, err := runFile(t, st, nil, path, tc.tune); err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, c := range st.commits {
				got = append(got, c.events)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("events per commit = %v, want %v", got, tc.want)
			}
			for i, c := range st.commits {
				if len(c.cps) != 1 {
					t.Errorf("commit %d has %d checkpoints, want 1", i, len(c.cps))
				}
			}
		})
	}
}

func TestMaxWaitAppliesWithoutMoreInput(t *testing.T) {
	src := newChanSource()
	seen := make(chan *change.Batch, 10)
	st := newState()
	cfg := baseConfig(src, newDecoder(t, decode.Options{}), &memSink{st: st, seen: seen})
	cfg.BatchMaxWait = 5 * time.Millisecond
	done := make(chan error, 1)
	go func() { _, err := Run(context.Background(), cfg); done <- err }()
	src.in <- raws("s", 1, full("orders", 1, ""), full("orders", 2, ""))
	b := guard(t, seen, "a batch applied by max wait")
	if len(b.Events) != 2 {
		t.Fatalf("batch has %d events, want 2", len(b.Events))
	}
	if err := guard(t, src.acks, "ack"); err != nil {
		t.Fatalf("ack(%v), want nil", err)
	}
	close(src.in)
	if err := guard(t, done, "Run to return"); err != nil {
		t.Fatal(err)
	}
}

func TestRetryThenSuccess(t *testing.T) {
	st := newState()
	snk := &memSink{st: st, fail: func(call int, _ *change.Batch) error {
		if call <= 2 {
			return errors.New("connection refused")
		}
		return nil
	}}
	path := writeLines(t, fullLines("orders", 5)...)
	sum, err := runFile(t, st, snk, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Retries != 2 || sum.Bisects != 0 || sum.DeadTotal() != 0 || len(st.events) != 5 || len(st.commits) != 1 {
		t.Fatalf("retries=%d bisects=%d dead=%v stored=%d commits=%d", sum.Retries, sum.Bisects, sum.Dead, len(st.events), len(st.commits))
	}
}

func TestBackoff(t *testing.T) {
	for attempt := 1; attempt < 80; attempt++ {
		want := min(10*time.Millisecond<<min(attempt-1, 20), time.Second)
		for i := 0; i < 50; i++ {
			if d := backoff(10*time.Millisecond, time.Second, attempt); d < 0 || d > want {
				t.Fatalf("backoff(attempt %d) = %v, want within [0, %v]", attempt, d, want)
			}
		}
	}
}

func TestSinkRejectionsBisected(t *testing.T) {
	cases := []struct {
		name    string
		bad     map[int]string // line -> extra fields making the sink reject it
		reasons int
	}{
		{"one permanent", map[int]string{13: `,"poison":true`}, 1},
		{"first and last", map[int]string{1: `,"poison":true`, 20: `,"poison":true`}, 2},
		{"permanent and transient", map[int]string{3: `,"poison":true`, 9: `,"flaky":true`, 17: `,"poison":true`}, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lines := make([]string, 20)
			for i := range lines {
				lines[i] = full("orders", i+1, tc.bad[i+1])
			}
			path := writeLines(t, lines...)
			var dlBuf bytes.Buffer
			dlw := deadletter.New(&dlBuf, "buffer")
			st := newState()
			sum, err := runFile(t, st, nil, path, func(c *Config) { c.DeadLetters = dlw; c.BatchMaxEvents = 8 })
			if err != nil {
				t.Fatal(err)
			}
			keys := st.storedKeys()
			for i := 1; i <= 20; i++ {
				k := fmt.Sprintf("orders/%d", i)
				want := 1
				if tc.bad[i] != "" {
					want = 0
				}
				if keys[k] != want {
					t.Errorf("row %d stored %d times, want %d", i, keys[k], want)
				}
			}
			if len(st.dead) != len(tc.bad) {
				t.Fatalf("stored %d dead letters, want %d", len(st.dead), len(tc.bad))
			}
			for _, d := range st.dead {
				l := lineOf(d.Position)
				if tc.bad[l] == "" || d.Reason != change.ReasonSinkRejected || string(d.Raw) != lines[l-1] || d.Position.Source != path {
					t.Errorf("dead letter %+v is not the rejected line", d)
				}
				if strings.Contains(tc.bad[l], "poison") && !strings.Contains(d.Detail, "cannot hold") {
					t.Errorf("dead letter detail %q lacks the sink error", d.Detail)
				}
			}
			if sum.Dead[change.ReasonSinkRejected] != int64(len(tc.bad)) || sum.Bisects == 0 {
				t.Errorf("summary dead=%v bisects=%d", sum.Dead, sum.Bisects)
			}
			if n := strings.Count(dlBuf.String(), `"reason":"sink_rejected"`); n != len(tc.bad) {
				t.Errorf("dead-letter writer got %d sink_rejected lines, want %d", n, len(tc.bad))
			}
			all := make([]int, 20)
			for i := range all {
				all[i] = i + 1
			}
			checkCheckpointsBehindStored(t, st, path, all, func(int) bool { return true })
			if got := st.cps[partKey{path, ""}]; lineOf(got.Applied) != 20 {
				t.Errorf("final checkpoint %+v, want line 20", got)
			}
		})
	}
}

func TestSinkDownNeverDeadLetters(t *testing.T) {
	st := newState()
	var mu sync.Mutex
	snk := &memSink{st: st, fail: func(call int, _ *change.Batch) error {
		mu.Lock()
		defer mu.Unlock()
		if call <= 60 {
			return errors.New("no route to host")
		}
		return nil
	}}
	path := writeLines(t, fullLines("orders", 8)...)
	sum, err := runFile(t, st, snk, path, func(c *Config) { c.MaxAttempts = 2 })
	if err != nil {
		t.Fatal(err)
	}
	if len(st.dead) != 0 || sum.DeadTotal() != 0 {
		t.Fatalf("a sink outage dead-lettered %v", st.dead)
	}
	keys := st.storedKeys()
	for i := 1; i <= 8; i++ {
		if n := keys[fmt.Sprintf("orders/%d", i)]; n != 1 {
			t.Errorf("row %d stored %d times", i, n)
		}
	}
	if sum.Retries == 0 {
		t.Error("no retries counted")
	}
}

func TestDeadLetterOnlyBatchRetriedUntilStored(t *testing.T) {
	st := newState()
	snk := &memSink{st: st, fail: func(call int, _ *change.Batch) error {
		if call <= 10 {
			return fmt.Errorf("disk full: %w", errors.ErrUnsupported)
		}
		return nil
	}}
	path := writeLines(t, `not json`)
	sum, err := runFile(t, st, snk, path, func(c *Config) { c.MaxAttempts = 2 })
	if err != nil {
		t.Fatal(err)
	}
	if len(st.dead) != 1 || st.dead[0].Reason != change.ReasonInvalidJSON && st.dead[0].Reason != change.ReasonUnknownFormat {
		t.Fatalf("dead = %+v", st.dead)
	}
	if sum.Retries != 10 || sum.Bisects != 0 {
		t.Fatalf("retries=%d bisects=%d, want 10 and 0", sum.Retries, sum.Bisects)
	}
}

func TestCheckpointNeverPassesHeld(t *testing.T) {
	lines := []string{
		full("orders", 1, ""),
		chunkedMain("docs", 2, "A", 2),
		full("orders", 3, ""),
		fragment(2, "A", 0),
		full("orders", 5, ""),
		fragment(2, "A", 1),
		full("orders", 7, ""),
	}
	path := writeLines(t, lines...)
	st := newState()
	if _, err := runFile(t, st, nil, path, func(c *Config) { c.BatchMaxEvents = 1 }); err != nil {
		t.Fatal(err)
	}
	var checked int
	for _, c := range st.commits {
		for _, cp := range c.cps {
			a := lineOf(cp.Applied)
			switch {
			case a >= 2 && a < 6:
				if !cp.Held || lineOf(cp.Resume) != 2 {
					t.Errorf("checkpoint %+v passes the held piece at line 2", cp)
				}
				checked++
			case cp.Held:
				t.Errorf("checkpoint %+v is held with nothing held", cp)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no checkpoint was stored while the piece was held")
	}
	var doc *change.Event
	for i := range st.events {
		if st.events[i].Table == "docs" {
			doc = &st.events[i]
		}
	}
	if doc == nil || lineOf(doc.Position) != 6 || !strings.Contains(string(doc.After), `"big":"xxxxxxxx"`) {
		t.Fatalf("reassembled event = %+v", doc)
	}
	checkCheckpointsBehindStored(t, st, path, []int{1, 3, 5, 6, 7}, func(int) bool { return true })
}

func TestDrainDeadLettersAtEnd(t *testing.T) {
	path := writeLines(t, full("orders", 1, ""), chunkedMain("docs", 2, "A", 2), fragment(2, "A", 0))
	st := newState()
	sum, err := runFile(t, st, nil, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Dead[change.ReasonFragmentTimeout] != 2 || len(st.dead) != 2 {
		t.Fatalf("dead = %v / %+v, want the two held pieces", sum.Dead, st.dead)
	}
	if cp := st.cps[partKey{path, ""}]; cp.Held || lineOf(cp.Applied) != 3 {
		t.Fatalf("final checkpoint %+v, want applied line 3, nothing held", cp)
	}
}

// boundedSource is a chanSource that declares an in-flight cap.
type boundedSource struct {
	*chanSource
	max int
}

func (s boundedSource) MaxInFlight() int { return s.max }

// TestFlushAtSourceCap: once the pipeline holds as many unacknowledged
// batches as the source allows (source.Bounded), it applies them at once
// instead of waiting for batch_max_wait, since the source reads no more
// until acks arrive.
func TestFlushAtSourceCap(t *testing.T) {
	src := boundedSource{newChanSource(), 2}
	seen := make(chan *change.Batch, 10)
	st := newState()
	cfg := baseConfig(src, newDecoder(t, decode.Options{}), &memSink{st: st, seen: seen})
	cfg.BatchMaxWait = time.Hour
	done := make(chan error, 1)
	go func() { _, err := Run(context.Background(), cfg); done <- err }()
	src.in <- raws("s", 1, full("orders", 1, ""))
	select {
	case b := <-seen:
		t.Fatalf("applied %d events below the cap and the batch limits", len(b.Events))
	case <-time.After(50 * time.Millisecond): // not a timing assertion: a negative check with slack
	}
	src.in <- raws("s", 2, full("orders", 2, ""))
	b := guard(t, seen, "a batch applied at the source's in-flight cap")
	if len(b.Events) != 2 {
		t.Fatalf("batch has %d events, want 2", len(b.Events))
	}
	for range 2 {
		if err := guard(t, src.acks, "ack"); err != nil {
			t.Fatalf("ack(%v), want nil", err)
		}
	}
	close(src.in)
	if err := guard(t, done, "Run to return"); err != nil {
		t.Fatal(err)
	}
}
