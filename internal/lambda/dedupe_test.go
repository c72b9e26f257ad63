package lambda

import (
	"context"
	"database/sql"
	"encoding/json"
	"log/slog"
	"slices"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", to read the sink's tables

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/config"
	"github.com/cdcflow/cdcflow/internal/pgtest"
	"github.com/cdcflow/cdcflow/internal/sink"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// lostAck is a sink whose next lose Apply calls commit and then report an
// error, as when the connection drops before COMMIT's reply arrives or the
// function times out after committing.
type lostAck struct {
	sink.Sink
	lose int
}

func (l *lostAck) Apply(ctx context.Context, b *change.Batch) (change.ApplyResult, error) {
	res, err := l.Sink.Apply(ctx, b)
	if err == nil && l.lose > 0 {
		l.lose--
		return change.ApplyResult{}, errDown
	}
	return res, err
}

// dynamoRecords returns the records of testdata/dynamodb.json (6 good
// records: customers 1, orders 5) followed by a poison record of the orders
// stream with its own sequence number (eventName UPSERT: invalid_op).
func dynamoRecords(t *testing.T) []json.RawMessage {
	t.Helper()
	var ev struct{ Records []json.RawMessage }
	if err := json.Unmarshal(fixture(t, "dynamodb.json"), &ev); err != nil {
		t.Fatal(err)
	}
	var bad map[string]any
	if err := json.Unmarshal(ev.Records[1], &bad); err != nil {
		t.Fatal(err)
	}
	bad["eventName"] = "UPSERT"
	bad["dynamodb"].(map[string]any)["SequenceNumber"] = "100000000000000000012"
	raw, err := json.Marshal(bad)
	if err != nil {
		t.Fatal(err)
	}
	return append(ev.Records, raw)
}

// dynamoEvent wraps records in a DynamoDB Streams event.
func dynamoEvent(t *testing.T, records []json.RawMessage) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(map[string]any{"Records": records})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// openPostgres opens the sink the function would for a fresh database.
func openPostgres(t *testing.T) (sink.Sink, *sql.DB) {
	t.Helper()
	url := pgtest.Start(t)
	s, err := OpenSink(context.Background(), Config{SinkURL: config.SecretURL(url)}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return s, db
}

// TestDynamoDBExactlyOnce: however the event source mapping redelivers a
// DynamoDB Streams batch (the same event again, a retry after a commit whose
// reply was lost, a partial batch response, batches split differently),
// cdc_events holds exactly one row per good record and cdc_dead_letters one
// per poison record, in PostgreSQL and DuckDB.
func TestDynamoDBExactlyOnce(t *testing.T) {
	type delivery struct {
		records  []int    // indexes into dynamoRecords
		failures []string // expected batchItemFailures
	}
	all := []int{0, 1, 2, 3, 4, 5, 6}
	// Reported on failure: the first record of each stream (customers, orders).
	firsts := []string{`"100000000000000000001"`, `"100000000000000000002"`}
	cases := []struct {
		name        string
		lose        int // Apply calls that commit but report an error
		maxAttempts int
		deliveries  []delivery
	}{
		{name: "same_event_twice", deliveries: []delivery{{records: all}, {records: all}}},
		{name: "lost_ack_retried_in_invocation", lose: 1, maxAttempts: 3, deliveries: []delivery{{records: all}}},
		{name: "partial_failure_then_redelivery", lose: 1, maxAttempts: 1,
			deliveries: []delivery{{records: all, failures: firsts}, {records: all}}},
		{name: "overlapping_splits", deliveries: []delivery{
			{records: []int{0, 1, 2}}, {records: []int{2, 3, 4}}, {records: []int{1, 3, 5, 6}}, {records: all}}},
	}
	sinks := []struct {
		name string
		open func(t *testing.T) (sink.Sink, *sql.DB)
	}{
		{"postgres", openPostgres},
		{"duckdb", func(t *testing.T) (sink.Sink, *sql.DB) {
			s := openDuck(t, t.TempDir()+"/cdc.duckdb")
			return s, s.DB()
		}},
	}
	records := dynamoRecords(t)
	for _, sk := range sinks {
		for _, tc := range cases {
			t.Run(sk.name+"/"+tc.name, func(t *testing.T) {
				s, db := sk.open(t)
				h := newHandler(t, &lostAck{Sink: s, lose: tc.lose}, Options{MaxAttempts: tc.maxAttempts})
				for i, d := range tc.deliveries {
					var recs []json.RawMessage
					for _, j := range d.records {
						recs = append(recs, records[j])
					}
					want := d.failures
					if want == nil {
						want = []string{}
					}
					if ids := handle(t, h, dynamoEvent(t, recs)); !slices.Equal(ids, want) {
						t.Fatalf("delivery %d: batchItemFailures = %v, want %v", i+1, ids, want)
					}
				}
				got := readContents(t, db)
				wantEvents := map[string]int{"customers": 1, "orders": 5}
				wantDead := map[string]int{change.ReasonInvalidOp: 1}
				if !mapsEqual(got.events, wantEvents) || !mapsEqual(got.dead, wantDead) {
					t.Errorf("sink holds events %v dead %v; want events %v dead %v (one row per record)", got.events, got.dead, wantEvents, wantDead)
				}
				if n := queryInt(t, db, "SELECT count(DISTINCT stream_position) FROM cdc_events"); n != 6 {
					t.Errorf("cdc_events holds %d distinct positions, want 6", n)
				}
				if n := queryInt(t, db, "SELECT count(*) FROM _cdc_record_positions"); n != 7 {
					t.Errorf("_cdc_record_positions holds %d rows, want 7 (6 events, 1 dead letter)", n)
				}
			})
		}
	}
}
