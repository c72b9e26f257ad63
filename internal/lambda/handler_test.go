package lambda

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/decode"
	"github.com/cdcflow/cdcflow/internal/sink"
	"github.com/cdcflow/cdcflow/internal/sink/duckdb"
)

const testKeysEnv = "orders=order_id;order_items=order_id,line_no"

func testKeys(t *testing.T) *change.Keys {
	t.Helper()
	k, err := ParseKeys(testKeysEnv)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func openDuck(t *testing.T, path string) *duckdb.Sink {
	t.Helper()
	s, err := duckdb.Open(context.Background(), duckdb.Options{Path: path, DeadLetterTable: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func newHandler(t *testing.T, s sink.Sink, o Options) *Handler {
	t.Helper()
	o.Decode = decode.Options{Keys: testKeys(t)}
	if o.RetryInitial == 0 {
		o.RetryInitial, o.RetryMax = 1, 1 // retries in tests do not wait
	}
	h, err := New(s, o)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func fixture(t *testing.T, name string) json.RawMessage {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func handle(t *testing.T, h *Handler, payload json.RawMessage) []string {
	t.Helper()
	resp, err := h.Handle(context.Background(), payload)
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	return failureIDs(t, resp)
}

// failureIDs renders the response's itemIdentifiers as JSON texts, checking
// the wire shape on the way.
func failureIDs(t *testing.T, resp Response) []string {
	t.Helper()
	b, err := json.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	var wire struct {
		BatchItemFailures []struct {
			ItemIdentifier json.RawMessage `json:"itemIdentifier"`
		} `json:"batchItemFailures"`
	}
	if err := json.Unmarshal(b, &wire); err != nil || wire.BatchItemFailures == nil {
		t.Fatalf("response %s: batchItemFailures must be a list (err %v)", b, err)
	}
	ids := []string{}
	for _, f := range wire.BatchItemFailures {
		ids = append(ids, string(f.ItemIdentifier))
	}
	return ids
}

func queryInt(t *testing.T, db *sql.DB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// contents summarises what a sink holds: events per table, dead letters by
// reason, and the merged rows of the tables named.
type contents struct {
	events map[string]int
	dead   map[string]int
}

func readContents(t *testing.T, db *sql.DB) contents {
	t.Helper()
	c := contents{events: map[string]int{}, dead: map[string]int{}}
	rows, err := db.Query("SELECT source_table, count(*) FROM cdc_events GROUP BY 1")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			t.Fatal(err)
		}
		c.events[k] = n
	}
	rows.Close()
	rows, err = db.Query("SELECT reason, count(*) FROM cdc_dead_letters GROUP BY 1")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			t.Fatal(err)
		}
		c.dead[k] = n
	}
	rows.Close()
	return c
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// TestHandleSources applies one real-shaped event of each kind, checks what
// the sink holds, then redelivers the same event.
func TestHandleSources(t *testing.T) {
	cases := []struct {
		fixture    string
		events     map[string]int
		dead       map[string]int
		deadSource string // stream_source of the dead letters
		checkpts   []change.Checkpoint
	}{
		{
			fixture: "kinesis_dsql.json",
			events:  map[string]int{"customers": 2, "orders": 3, "order_items": 2},
			dead:    map[string]int{change.ReasonUnknownFormat: 1, change.ReasonInvalidEnvelope: 1}, deadSource: "cdc-stream",
			checkpts: []change.Checkpoint{{Source: "cdc-stream", Partition: "shardId-000000000000",
				Applied: change.Position{Source: "cdc-stream", Partition: "shardId-000000000000", Offset: "4959" + strings.Repeat("0", 51) + "9"}}},
		},
		{
			fixture: "kinesis_dms.json",
			events:  map[string]int{"customers": 3, "orders": 6, "order_items": 3},
			dead:    map[string]int{},
			checkpts: []change.Checkpoint{{Source: "cdc-stream", Partition: "shardId-000000000000",
				Applied: change.Position{Source: "cdc-stream", Partition: "shardId-000000000000", Offset: "4959" + strings.Repeat("0", 50) + "13"}}},
		},
		{
			fixture: "msk_debezium.json",
			events:  map[string]int{"customers": 3, "orders": 6, "order_items": 3},
			dead:    map[string]int{change.ReasonMissingOp: 1, change.ReasonUnknownFormat: 1}, deadSource: "pg.public.app",
			checkpts: []change.Checkpoint{
				{Source: "pg.public.app", Partition: "0", Applied: change.Position{Source: "pg.public.app", Partition: "0", Offset: "112"}},
				{Source: "pg.public.app", Partition: "1", Applied: change.Position{Source: "pg.public.app", Partition: "1", Offset: "207"}},
			},
		},
		{
			fixture: "dynamodb.json",
			events:  map[string]int{"customers": 1, "orders": 5},
			dead:    map[string]int{},
			// No checkpoints: records are deduplicated by sequence number.
		},
	}
	for _, tc := range cases {
		t.Run(strings.TrimSuffix(tc.fixture, ".json"), func(t *testing.T) {
			s := openDuck(t, filepath.Join(t.TempDir(), "cdc.duckdb"))
			h := newHandler(t, s, Options{})
			ev := fixture(t, tc.fixture)
			if ids := handle(t, h, ev); len(ids) != 0 {
				t.Fatalf("batchItemFailures = %v, want none", ids)
			}
			got := readContents(t, s.DB())
			if !mapsEqual(got.events, tc.events) || !mapsEqual(got.dead, tc.dead) {
				t.Fatalf("sink holds events %v dead %v, want events %v dead %v", got.events, got.dead, tc.events, tc.dead)
			}
			if tc.deadSource != "" {
				if n := queryInt(t, s.DB(), "SELECT count(*) FROM cdc_dead_letters WHERE stream_source = ? AND stream_offset <> '' AND raw IS NOT NULL", tc.deadSource); n != total(tc.dead) {
					t.Errorf("%d dead letters carry their stream position and raw bytes, want %d", n, total(tc.dead))
				}
			}
			cps, err := s.Checkpoints(context.Background(), "")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(cps, tc.checkpts) {
				t.Errorf("checkpoints = %+v, want %+v", cps, tc.checkpts)
			}

			// The event source mapping redelivers the same event.
			if ids := handle(t, h, ev); len(ids) != 0 {
				t.Fatalf("redelivery: batchItemFailures = %v, want none", ids)
			}
			again := readContents(t, s.DB())
			if !mapsEqual(again.events, tc.events) || !mapsEqual(again.dead, tc.dead) {
				t.Errorf("after redelivery: events %v dead %v; want events %v dead %v", again.events, again.dead, tc.events, tc.dead)
			}
		})
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestDynamoDBRedeliveryMerged: a redelivered DynamoDB batch changes
// neither the log nor the merged tables.
func TestDynamoDBRedeliveryMerged(t *testing.T) {
	s := openDuck(t, filepath.Join(t.TempDir(), "cdc.duckdb"))
	h := newHandler(t, s, Options{})
	ev := fixture(t, "dynamodb.json")
	handle(t, h, ev)
	snapshot := func() string {
		var out []string
		for _, table := range []string{"customers", "orders"} {
			rows, err := s.DB().Query("SELECT CAST(to_json(t) AS VARCHAR) FROM " + table + " t ORDER BY ALL")
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var r string
				if err := rows.Scan(&r); err != nil {
					t.Fatal(err)
				}
				out = append(out, r)
			}
			rows.Close()
		}
		return strings.Join(out, "\n")
	}
	before := snapshot()
	if before == "" {
		t.Fatal("merged tables are empty after the first delivery")
	}
	logged := queryInt(t, s.DB(), "SELECT count(*) FROM cdc_events")
	handle(t, h, ev)
	if after := snapshot(); after != before {
		t.Errorf("merged tables changed on redelivery:\n%s\nwant\n%s", after, before)
	}
	if n := queryInt(t, s.DB(), "SELECT count(*) FROM cdc_events"); n != logged {
		t.Errorf("cdc_events holds %d rows after redelivery, want %d", n, logged)
	}
}

// flaky wraps a real sink and fails its next Apply calls with err
// (fails < 0: every call).
type flaky struct {
	*duckdb.Sink
	fails int
	err   error
	calls int
}

func (f *flaky) Apply(ctx context.Context, b *change.Batch) (change.ApplyResult, error) {
	f.calls++
	if f.fails != 0 {
		if f.fails > 0 {
			f.fails--
		}
		return change.ApplyResult{}, f.err
	}
	return f.Sink.Apply(ctx, b)
}

var errDown = errors.New("connection refused")

// TestSinkFailure: a sink that keeps failing gets the batch reported from
// its first record per partition, stores nothing, and the redelivered batch
// is applied once the sink is back.
func TestSinkFailure(t *testing.T) {
	cases := []struct {
		fixture string
		want    []string
	}{
		{"kinesis_dsql.json", []string{`"` + "4959" + strings.Repeat("0", 51) + "1" + `"`}},
		{"msk_debezium.json", []string{`{"partition":"pg.public.app-0","offset":100}`, `{"partition":"pg.public.app-1","offset":200}`}},
		// The fixture holds two tables' streams: each is reported from its first record.
		{"dynamodb.json", []string{`"100000000000000000001"`, `"100000000000000000002"`}},
	}
	for _, tc := range cases {
		t.Run(strings.TrimSuffix(tc.fixture, ".json"), func(t *testing.T) {
			s := openDuck(t, filepath.Join(t.TempDir(), "cdc.duckdb"))
			f := &flaky{Sink: s, fails: -1, err: errDown}
			h := newHandler(t, f, Options{MaxAttempts: 3})
			ev := fixture(t, tc.fixture)
			if ids := handle(t, h, ev); !slices.Equal(ids, tc.want) {
				t.Fatalf("batchItemFailures = %v, want %v", ids, tc.want)
			}
			if f.calls != 3 {
				t.Errorf("Apply called %d times, want 3 attempts", f.calls)
			}
			if c := readContents(t, s.DB()); total(c.events)+total(c.dead) != 0 {
				t.Fatalf("a failed batch left rows: %+v", c)
			}
			f.fails = 0
			if ids := handle(t, h, ev); len(ids) != 0 {
				t.Fatalf("after recovery: batchItemFailures = %v", ids)
			}
			if c := readContents(t, s.DB()); total(c.events) == 0 {
				t.Fatal("nothing applied after recovery")
			}
		})
	}
}

// TestSinkRecoversWithinInvocation: a transient failure retried within the
// invocation reports nothing.
func TestSinkRecoversWithinInvocation(t *testing.T) {
	s := openDuck(t, filepath.Join(t.TempDir(), "cdc.duckdb"))
	f := &flaky{Sink: s, fails: 2, err: errDown}
	h := newHandler(t, f, Options{MaxAttempts: 3})
	if ids := handle(t, h, fixture(t, "kinesis_dsql.json")); len(ids) != 0 {
		t.Fatalf("batchItemFailures = %v, want none", ids)
	}
	if got := total(readContents(t, s.DB()).events); got != 7 {
		t.Errorf("%d events stored, want 7", got)
	}
}

// TestPermanentFailsInvocation: an Apply error the sink calls permanent
// fails the invocation, so the mapping bisects the batch.
func TestPermanentFailsInvocation(t *testing.T) {
	s := openDuck(t, filepath.Join(t.TempDir(), "cdc.duckdb"))
	f := &flaky{Sink: s, fails: -1, err: sink.ErrPermanent}
	h := newHandler(t, f, Options{MaxAttempts: 3})
	_, err := h.Handle(context.Background(), fixture(t, "kinesis_dsql.json"))
	if !errors.Is(err, sink.ErrPermanent) || f.calls != 1 {
		t.Fatalf("Handle error = %v after %d calls, want sink.ErrPermanent after 1", err, f.calls)
	}
}

// TestHeldFragments: a DSQL oversized record whose pieces straddle two
// batches is reassembled: the first batch reports the first held piece,
// the redelivery from it completes the set without duplicating the rest.
func TestHeldFragments(t *testing.T) {
	s := openDuck(t, filepath.Join(t.TempDir(), "cdc.duckdb"))
	h := newHandler(t, s, Options{})
	ids := handle(t, h, fixture(t, "kinesis_dsql_held_1.json"))
	want := `"` + "4959" + strings.Repeat("0", 50) + "21" + `"`
	if !slices.Equal(ids, []string{want}) {
		t.Fatalf("batchItemFailures = %v, want [%s] (the first held piece)", ids, want)
	}
	if got := readContents(t, s.DB()).events; !mapsEqual(got, map[string]int{"orders": 2}) {
		t.Fatalf("after batch 1: events %v, want the 2 complete orders", got)
	}
	cps, err := s.Checkpoints(context.Background(), "cdc-stream")
	if err != nil || len(cps) != 1 || !cps[0].Held || cps[0].Resume.Offset != strings.Trim(want, `"`) {
		t.Fatalf("checkpoints = %+v (%v), want one Held at the first piece", cps, err)
	}
	if ids := handle(t, h, fixture(t, "kinesis_dsql_held_2.json")); len(ids) != 0 {
		t.Fatalf("batch 2: batchItemFailures = %v, want none", ids)
	}
	got := readContents(t, s.DB())
	if !mapsEqual(got.events, map[string]int{"orders": 2, "customers": 1, "order_items": 1}) || total(got.dead) != 0 {
		t.Fatalf("after batch 2: events %v dead %v, want orders 2, customers 1 (reassembled), order_items 1", got.events, got.dead)
	}
	if cps, _ := s.Checkpoints(context.Background(), "cdc-stream"); len(cps) != 1 || cps[0].Held {
		t.Errorf("checkpoints after batch 2 = %+v, want one, not held", cps)
	}
}

// TestBadEvents: events that are none of the three kinds fail the
// invocation; an empty batch succeeds.
func TestBadEvents(t *testing.T) {
	s := openDuck(t, filepath.Join(t.TempDir(), "cdc.duckdb"))
	h := newHandler(t, s, Options{})
	for _, tc := range []struct{ name, event, want string }{
		{"not_json", `not json`, "parse event"},
		{"sqs", `{"Records":[{"eventSource":"aws:sqs","messageId":"1","body":"x"}]}`, "aws:sqs"},
		{"s3_shape", `{"detail":{}}`, "not a Kinesis"},
		{"mixed", `{"Records":[{"eventSource":"aws:kinesis","kinesis":{}},{"eventSource":"aws:dynamodb","dynamodb":{}}]}`, "Records[1]"},
		{"kafka_records_null", `{"eventSource":"aws:kafka","records":null}`, "records"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.Handle(context.Background(), json.RawMessage(tc.event))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Handle error = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	resp, err := h.Handle(context.Background(), json.RawMessage(`{"Records":[]}`))
	if err != nil || resp.BatchItemFailures == nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("empty event: %+v, %v; want an empty failure list", resp, err)
	}
}
