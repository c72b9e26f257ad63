package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/pgtest"
	"github.com/cdcflow/cdcflow/internal/sink"
	"github.com/cdcflow/cdcflow/internal/sink/sinktest"
	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

func ctxb() context.Context { return context.Background() }

func apply(t testing.TB, s *Sink, b *change.Batch) change.ApplyResult {
	t.Helper()
	res, err := s.Apply(ctxb(), b)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return res
}

func TestEncodingMatchesChange(t *testing.T) {
	positions := []change.Position{
		{Source: "a.ndjson", Offset: "42"},
		{Source: "a.json", Offset: "3", Index: 5, Indexed: true},
		{Source: "orders", Partition: "3", Offset: "1234"},
		{Source: "stream", Partition: "shardId-000000000001", Offset: "49590338271490256608559692538361571095921575989136588898", Index: 12, Indexed: true},
		{Source: "f", Offset: "0009"},
		{Source: "f", Offset: "x12"},
		{Source: "", Offset: ""},
	}
	for _, p := range positions {
		if got := string(appendPosition(nil, p)); got != p.String() {
			t.Errorf("appendPosition(%+v) = %q, want %q", p, got, p.String())
		}
		want := p.Source + "\x01" + p.Partition + "\x01" + p.Sortable()
		if got := string(appendStreamOrder(nil, p)); got != want {
			t.Errorf("appendStreamOrder(%+v) = %q, want %q", p, got, want)
		}
	}
	for _, ns := range []int64{0, 999, 1000, 1705318200123456789} {
		b := appendTimestampNS(nil, ns)
		us := int64(0)
		for _, c := range b[4:] {
			us = us<<8 | int64(c)
		}
		if want := time.Unix(0, ns).UTC().Truncate(time.Microsecond).UnixMicro() - pgEpochMicros; us != want {
			t.Errorf("appendTimestampNS(%d) = %d µs, want %d", ns, us, want)
		}
	}
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{`{"a":"\u0000"}`, true},
		{`{"a":"x\\u0000"}`, false},
		{`{"a":"x\\\u0000"}`, true},
		{`{"a":"\u00001"}`, true},
		{`{"a":"\u0001"}`, false},
		{`{"\u0000":1}`, true},
	} {
		if got := hasNulEscape([]byte(tc.in)); got != tc.want {
			t.Errorf("hasNulEscape(%s) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if got := cleanText("a\x00b\xffc"); got != `a\u0000b`+"\uFFFD"+"c" {
		t.Errorf("cleanText = %q", got)
	}
}

// TestLogRows checks every column the binary COPY writes against what the
// events hold: unicode, NULLs, LogFirst orders, envelope indexes.
func TestLogRows(t *testing.T) {
	s := openTest(t, Options{DeadLetterTable: true})
	events := []change.Event{
		{Schema: "", Table: "τάξη", Op: change.Insert, Key: "ключ 🌍", After: json.RawMessage(`{"id":"ключ 🌍","名前":"héllo","n":null,"q":"it's \"q\"","bs":"x\\u0000y"}`),
			Order: change.Order{CommitNS: 1705318200123456789}, Position: change.Position{Source: "f.ndjson", Offset: "7"}},
		{Schema: "sales", Table: "τάξη", Op: change.Delete, Key: "k2", Before: json.RawMessage(`{"id":"k2"}`), TxID: "tx-9",
			Order:    change.Order{CommitNS: 1705318200000000001, Seq: change.SortableUint(77), LogFirst: true},
			Position: change.Position{Source: "topic", Partition: "2", Offset: "1234", Index: 3, Indexed: true}},
		{Schema: "public", Table: "τάξη", Op: change.Delete, Key: "k3", Order: change.Order{CommitNS: 5},
			Position: change.Position{Source: "topic", Partition: "2", Offset: "1235"}},
	}
	res := apply(t, s, &change.Batch{Events: events})
	if res.Logged != 3 {
		t.Fatalf("result %+v, want 3 logged", res)
	}
	db := s.testDB(t)
	got := fmtRows(t, db, `SELECT source_table, operation, record_id, event_data::text,
		to_char(commit_timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), source_schema, commit_ts_ns::text, seq, tx_id,
		stream_position, commit_order, stream_order, (ingested_at > now() - interval '1 hour')::text
		FROM cdc_events ORDER BY event_id`)
	var want []string
	for _, e := range events {
		data := "<NULL>"
		if img := e.Image(); img != nil {
			var v any
			if err := json.Unmarshal(img, &v); err != nil {
				t.Fatal(err)
			}
			data = "json"
		}
		null := func(s string) string {
			if s == "" {
				return "<NULL>"
			}
			return s
		}
		want = append(want, strings.Join([]string{e.Table, string(e.Op), e.Key, data,
			time.Unix(0, e.Order.CommitNS).UTC().Format("2006-01-02 15:04:05.000000"), null(e.Schema),
			strconv.FormatInt(e.Order.CommitNS, 10), null(e.Order.Seq), null(e.TxID),
			e.Position.String(), e.Order.Key(), e.Position.Source + "\x01" + e.Position.Partition + "\x01" + e.Position.Sortable(), "true"}, "|"))
	}
	if len(got) != len(want) {
		t.Fatalf("rows:\n%v\nwant\n%v", got, want)
	}
	for i := range got {
		g := strings.Split(got[i], "|")
		w := strings.Split(want[i], "|")
		if w[3] == "json" {
			var a, b any
			if err := json.Unmarshal([]byte(g[3]), &a); err != nil {
				t.Fatalf("row %d event_data %q: %v", i, g[3], err)
			}
			json.Unmarshal(events[i].Image(), &b)
			if fmt.Sprint(a) != fmt.Sprint(b) {
				t.Errorf("row %d event_data = %v, want %v", i, a, b)
			}
			g[3] = "json"
		}
		if strings.Join(g, "|") != strings.Join(w, "|") {
			t.Errorf("row %d:\n got %q\nwant %q", i, strings.Join(g, "|"), strings.Join(w, "|"))
		}
	}
	// event_id comes from the sequence: distinct and increasing.
	if n := scalar[int](t, db, "SELECT count(DISTINCT event_id) FROM cdc_events WHERE event_id > 0"); n != 3 {
		t.Errorf("distinct positive event_id = %d, want 3", n)
	}
	// The merged table holds the literal backslash-u text; the view reads it too.
	if v := scalar[string](t, db, `SELECT bs FROM "τάξη" WHERE _cdc_record_id = $1`, "ключ 🌍"); v != `x\u0000y` {
		t.Errorf("merged bs = %q", v)
	}
	if v := scalar[string](t, db, `SELECT "名前" FROM "τάξη_current"`); v != "héllo" {
		t.Errorf("view 名前 = %q", v)
	}
}

// TestNulRejected: PostgreSQL text and jsonb cannot hold NUL; such events
// become dead letters and the rest of the batch is stored.
func TestNulRejected(t *testing.T) {
	st := sinktest.NewStream("k", "0")
	good := st.Put("t", "1", 100, `{"id":1,"v":"ok"}`)
	nulValue := st.Put("t", "2", 100, `{"id":2,"v":"a\u0000b"}`)
	nulName := st.Put("t", "3", 100, `{"id":3,"a\u0000":1}`)
	nulKey := st.Put("t", "4\x00", 100, `{"id":4}`)
	nulBefore := st.Delete("t", "5", 100)
	nulBefore.Before = json.RawMessage(`{"id":"5\u0000"}`)
	escaped := st.Put("t", "6", 100, `{"id":6,"v":"a\\u0000b"}`)
	b := st.Batch(good, nulValue, nulName, nulKey, nulBefore, escaped)

	s := openTest(t, Options{DeadLetterTable: true})
	res := apply(t, s, b)
	if res.Dead[change.ReasonInvalidValue] != 4 || res.Logged != 2 || res.Applied != 2 {
		t.Fatalf("result %+v, want 4 invalid_value dead letters, 2 logged and applied", res)
	}
	db := s.testDB(t)
	if n := scalar[int](t, db, "SELECT count(*) FROM cdc_dead_letters WHERE reason = 'invalid_value' AND raw IS NOT NULL AND position <> ''"); n != 4 {
		t.Errorf("stored dead letters = %d, want 4", n)
	}
	if rid := scalar[string](t, db, `SELECT record_id FROM cdc_dead_letters WHERE detail LIKE 'record_id%'`); rid != `4\u0000` {
		t.Errorf("dead letter record_id = %q, want the NUL rendered as \\u0000", rid)
	}

	// Without the dead-letter table the batch fails permanently, naming the event.
	s2 := openTest(t, Options{})
	_, err := s2.Apply(ctxb(), b)
	if !errors.Is(err, sink.ErrPermanent) || !strings.Contains(err.Error(), nulValue.Position.String()) {
		t.Fatalf("apply without dead-letter table = %v, want ErrPermanent naming %s", err, nulValue.Position)
	}
	if n := logCount(t, s2.testDB(t)); n != 0 {
		t.Errorf("failed batch left %d log rows", n)
	}
}

// TestDataErrorPermanent: a value PostgreSQL itself rejects (a number
// outside jsonb's numeric range) fails the batch with ErrPermanent and the
// server's SQLSTATE, so the pipeline isolates it.
func TestDataErrorPermanent(t *testing.T) {
	s := openTest(t, Options{LogOnly: true, DeadLetterTable: true})
	st := sinktest.NewStream("k", "0")
	_, err := s.Apply(ctxb(), st.Batch(st.Put("t", "1", 100, `{"id":1,"v":1e1000000}`)))
	var pe *pgconn.PgError
	if !errors.Is(err, sink.ErrPermanent) || !errors.As(err, &pe) || !strings.HasPrefix(pe.Code, "22") {
		t.Fatalf("apply = %v, want ErrPermanent wrapping a class 22 error", err)
	}
	// The sink carries on.
	apply(t, s, st.Batch(st.Put("t", "2", 100, `{"id":2,"v":1}`)))
}

// TestRedeliverySkipped: events and dead letters at or before a stored
// checkpoint are dropped inside the transaction, so every delivered record
// is logged exactly once, across reopen and overlapping batches.
func TestRedeliverySkipped(t *testing.T) {
	s := openTest(t, Options{DeadLetterTable: true})
	db := s.testDB(t)
	st := sinktest.NewStream("topic", "0")
	e1 := st.Put("t", "1", 100, `{"id":1,"v":"a"}`)
	e2 := st.Put("t", "2", 100, `{"id":2,"v":"b"}`)
	dl := change.DeadLetter{Reason: change.ReasonInvalidJSON, Detail: "bad", Position: change.Position{Source: "topic", Partition: "0", Offset: "3"}, Raw: []byte("{")}
	st.Put("t", "x", 1, `{}`) // offset 3 is the dead letter's record
	e4 := st.Update("t", "1", 200, `{"id":1,"v":"a2"}`)
	b1 := st.Batch(e1, e2, e4)
	b1.Dead = []change.DeadLetter{dl}
	if res := apply(t, s, b1); res.Logged != 3 || res.Dead[change.ReasonInvalidJSON] != 1 {
		t.Fatalf("first apply %+v", res)
	}
	res := apply(t, s, b1)
	if res.Logged != 0 || len(res.Dead) != 0 {
		t.Errorf("redelivered batch result %+v, want nothing logged or dead-lettered", res)
	}
	// A new sink (a restart) sees the same checkpoint.
	s2 := openTest(t, Options{URL: s.opts.URL, Schema: s.opts.Schema, DeadLetterTable: true})
	if res := apply(t, s2, b1); res.Logged != 0 {
		t.Errorf("redelivery after reopen logged %d", res.Logged)
	}
	// An overlapping batch stores only what is new.
	e5 := st.Put("t", "5", 300, `{"id":5,"v":"e"}`)
	if res := apply(t, s2, st.Batch(e2, e4, e5)); res.Logged != 1 || res.Applied != 1 {
		t.Errorf("overlapping batch result %+v, want 1 logged and applied", res)
	}
	if n, d := logCount(t, db), scalar[int](t, db, "SELECT count(DISTINCT stream_position) FROM cdc_events"); n != 4 || d != 4 {
		t.Errorf("log rows %d, distinct positions %d; want 4 and 4 (one per delivered record)", n, d)
	}
	if n := scalar[int](t, db, "SELECT count(*) FROM cdc_dead_letters"); n != 1 {
		t.Errorf("dead letters = %d, want 1", n)
	}
	// A lagging writer's older checkpoint never moves the stored one back.
	old := change.Checkpoint{Source: "topic", Partition: "0", Applied: e2.Position}
	apply(t, s2, &change.Batch{Events: []change.Event{e2}, Checkpoints: []change.Checkpoint{old}})
	cps := must[[]change.Checkpoint](t)(s2.Checkpoints(ctxb(), "topic"))
	if len(cps) != 1 || cps[0].Applied != e5.Position {
		t.Errorf("checkpoints %+v, want applied at %s", cps, e5.Position)
	}
}

// TestHeldFragmentsKept: behind a Held checkpoint, fragment dead letters at
// or after Resume are kept (those pieces were held, not stored); other
// records up to Applied are dropped.
func TestHeldFragmentsKept(t *testing.T) {
	s := openTest(t, Options{DeadLetterTable: true})
	pos := func(off int) change.Position {
		return change.Position{Source: "dsql", Partition: "shard-1", Offset: strconv.Itoa(off)}
	}
	cp := change.Checkpoint{Source: "dsql", Partition: "shard-1", Applied: pos(10), Held: true, Resume: pos(5)}
	apply(t, s, &change.Batch{Checkpoints: []change.Checkpoint{cp}})
	b := &change.Batch{
		Events: []change.Event{
			{Table: "t", Op: change.Insert, Key: "1", After: json.RawMessage(`{"id":1}`), Position: pos(7)},
			{Table: "t", Op: change.Insert, Key: "2", After: json.RawMessage(`{"id":2}`), Position: pos(11)},
		},
		Dead: []change.DeadLetter{
			{Reason: change.ReasonFragmentTimeout, Position: pos(6), Raw: []byte("piece")},
			{Reason: change.ReasonFragmentLimit, Position: pos(4), Raw: []byte("piece")},
			{Reason: change.ReasonInvalidJSON, Position: pos(8), Raw: []byte("{")},
		},
		Checkpoints: []change.Checkpoint{{Source: "dsql", Partition: "shard-1", Applied: pos(11)}},
	}
	res := apply(t, s, b)
	if res.Logged != 1 || res.Dead[change.ReasonFragmentTimeout] != 1 || len(res.Dead) != 1 {
		t.Fatalf("result %+v, want 1 logged (offset 11) and the fragment_timeout dead letter at 6 kept", res)
	}
}

// TestStdinNotSkipped: a stream that cannot resume (stdin, "-") restarts
// its positions every run; its stored checkpoint never drops records.
func TestStdinNotSkipped(t *testing.T) {
	s := openTest(t, Options{DeadLetterTable: true})
	for run := 0; run < 2; run++ {
		st := sinktest.NewStream("-", "")
		b := st.Batch(st.Put("t", strconv.Itoa(run), int64(100+run), `{"id":1}`))
		if res := apply(t, s, b); res.Logged != 1 {
			t.Fatalf("run %d logged %d, want 1", run, res.Logged)
		}
	}
}

// TestTwoWritersExactlyOnce runs two sinks (two daemons) on one schema that
// both apply every batch of the same partitions at the same time: the
// partition lock and the stored checkpoint make each record stored once,
// including the first batch of a partition, which has no checkpoint row to
// lock yet.
func TestTwoWritersExactlyOnce(t *testing.T) {
	schema := newSchema()
	open := func() *Sink { return openTest(t, Options{Schema: schema, DeadLetterTable: true}) }
	var a, b *Sink
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a = open() }() // both create the schema at once
	go func() { defer wg.Done(); b = open() }()
	wg.Wait()
	if t.Failed() {
		return
	}
	// Create the table first, so the race below involves no DDL (whose
	// table lock would serialize the writers by itself).
	setup := sinktest.NewStream("setup", "0")
	apply(t, a, setup.Batch(setup.Put("t", "0", 1, `{"id":"0","n":0}`)))
	b.Close(ctxb())
	b = open()

	const partitions, rounds, size = 4, 4, 40
	var batches [][]*change.Batch // per partition
	for p := 0; p < partitions; p++ {
		st := sinktest.NewStream("topic", strconv.Itoa(p))
		var bs []*change.Batch
		for i := 0; i < rounds; i++ {
			var evs []change.Event
			for j := 0; j < size; j++ {
				n := i*size + j
				k := strconv.Itoa(p*1000 + n%30)
				evs = append(evs, st.Put("t", k, int64(n+10), fmt.Sprintf(`{"id":%q,"n":%d}`, k, n)))
			}
			bs = append(bs, st.Batch(evs...))
		}
		batches = append(batches, bs)
	}
	errs := make(chan error, 2*partitions*rounds)
	for _, s := range []*Sink{a, b} {
		wg.Add(1)
		go func(s *Sink) {
			defer wg.Done()
			for _, bs := range batches {
				for _, bt := range bs {
					if _, err := s.Apply(ctxb(), bt); err != nil {
						errs <- err
					}
				}
			}
		}(s)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("apply: %v", err)
	}
	db := a.testDB(t)
	want := partitions * rounds * size
	if n, d := logCount(t, db)-1, scalar[int](t, db, "SELECT count(DISTINCT stream_position) FROM cdc_events WHERE stream_position LIKE 'topic%'"); n != want || d != want {
		t.Errorf("log rows %d, distinct positions %d; want %d and %d", n, d, want, want)
	}
	if n := scalar[int](t, db, `SELECT count(*) FROM t WHERE n >= $1`, rounds*size-30); n != partitions*30 {
		t.Errorf("merged rows holding their last value = %d, want %d", n, partitions*30)
	}
}

// TestTwoWritersSchema: a writer whose registry is stale (another writer
// added or widened columns) reloads it and plans the batch again.
func TestTwoWritersSchema(t *testing.T) {
	schema := newSchema()
	a := openTest(t, Options{Schema: schema, DeadLetterTable: true})
	b := openTest(t, Options{Schema: schema, DeadLetterTable: true})
	sa, sb := sinktest.NewStream("a", "0"), sinktest.NewStream("b", "0")
	apply(t, a, sa.Batch(sa.Put("t", "1", 100, `{"id":1,"x":1}`)))
	apply(t, b, sb.Batch(sb.Put("t", "2", 200, `{"id":2,"y":"text"}`)))         // b did not know t
	apply(t, a, sa.Batch(sa.Put("t", "3", 300, `{"id":3,"y":2.5,"x":2}`)))      // a did not know y, which is text
	apply(t, b, sb.Batch(sb.Put("t", "4", 400, `{"id":4,"x":"wide","y":"z"}`))) // b widens x
	db := a.testDB(t)
	got := fmtRows(t, db, `SELECT column_name, column_type FROM _cdc_columns WHERE table_name = 't' ORDER BY ordinal`)
	if strings.Join(got, ",") != "id|BIGINT,x|VARCHAR,y|VARCHAR" {
		t.Errorf("registry = %v", got)
	}
	got = fmtRows(t, db, `SELECT _cdc_record_id, x, y FROM t ORDER BY 1`)
	if strings.Join(got, ",") != "1|1|<NULL>,2|<NULL>|text,3|2|2.5,4|wide|z" {
		t.Errorf("merged rows = %v", got)
	}
	got = fmtRows(t, db, `SELECT record_id, x, y FROM t_current ORDER BY 1`)
	if strings.Join(got, ",") != "1|1|<NULL>,2|<NULL>|text,3|2|2.5,4|wide|z" {
		t.Errorf("view rows = %v", got)
	}
}

// TestParamCapChunking: a batch whose checkpoints need more bind parameters
// than one statement may carry is stored in chunks.
func TestParamCapChunking(t *testing.T) {
	width := len(sqlgen.CheckpointColumns)
	n := sqlgen.MaxParams/width + 300 // one statement would need > 65535 parameters
	if n*width <= sqlgen.MaxParams {
		t.Fatalf("test batch needs only %d parameters", n*width)
	}
	cps := make([]change.Checkpoint, n)
	for i := range cps {
		p := change.Position{Source: "big", Partition: strconv.Itoa(i), Offset: strconv.Itoa(i * 10)}
		cps[i] = change.Checkpoint{Source: "big", Partition: p.Partition, Applied: p}
	}
	s := openTest(t, Options{DeadLetterTable: true})
	apply(t, s, &change.Batch{Checkpoints: cps})
	got := must[[]change.Checkpoint](t)(s.Checkpoints(ctxb(), "big"))
	if len(got) != n {
		t.Fatalf("stored %d checkpoints, want %d", len(got), n)
	}
	for _, c := range got {
		i, _ := strconv.Atoi(c.Partition)
		if c.Applied != cps[i].Applied {
			t.Fatalf("checkpoint %s = %+v, want %+v", c.Partition, c.Applied, cps[i].Applied)
		}
	}
	if q := sqlgen.UpsertValuesRows(dialect, "x", []string{"a", "b"}, 1, 3); !strings.Contains(q, "($5, $6) ON CONFLICT") {
		t.Errorf("UpsertValuesRows numbering: %s", q)
	}
}

// TestServerRestart stops PostgreSQL while the sink runs: Apply fails with
// a retryable error, and once the server is back a later Apply stores the
// batch, with nothing lost.
func TestServerRestart(t *testing.T) {
	var logs bytes.Buffer
	s := openTest(t, Options{DeadLetterTable: true, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	st := sinktest.NewStream("topic", "1")
	apply(t, s, st.Batch(st.Put("t", "1", 100, `{"id":1,"v":"a"}`)))
	b2 := st.Batch(st.Put("t", "2", 200, `{"id":2,"v":"b"}`), st.Update("t", "1", 300, `{"id":1,"v":"a2"}`))

	pgtest.Stop(t)
	restarted := false
	defer func() {
		if !restarted {
			pgtest.Restart(t)
		}
	}()
	for i := 0; i < 2; i++ { // a dead connection, then a refused one
		_, err := s.Apply(ctxb(), b2)
		if err == nil {
			t.Fatal("apply succeeded with the server stopped")
		}
		if errors.Is(err, sink.ErrPermanent) {
			t.Fatalf("apply error is permanent, want retryable: %v", err)
		}
		assertNoSecret(t, s.opts.URL, err.Error())
	}
	if _, err := s.Checkpoints(ctxb(), ""); err == nil {
		t.Fatal("checkpoints succeeded with the server stopped")
	}
	pgtest.Restart(t)
	restarted = true

	res := apply(t, s, b2)
	if res.Logged != 2 || res.Applied != 2 {
		t.Errorf("apply after restart %+v, want 2 logged and applied", res)
	}
	db := s.testDB(t)
	if got := fmtRows(t, db, "SELECT _cdc_record_id, v FROM t ORDER BY 1"); strings.Join(got, ",") != "1|a2,2|b" {
		t.Errorf("merged rows = %v", got)
	}
	if n := logCount(t, db); n != 3 {
		t.Errorf("log rows = %d, want 3", n)
	}
	if !strings.Contains(logs.String(), "reconnected") {
		t.Errorf("no reconnect logged: %s", logs.String())
	}
	assertNoSecret(t, s.opts.URL, logs.String())
}

// assertNoSecret fails when text holds the URL or its password.
func assertNoSecret(t *testing.T, rawURL, text string) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := u.User.Password()
	if pw == "" {
		t.Fatal("test URL has no password")
	}
	if strings.Contains(text, pw) || strings.Contains(text, rawURL) {
		t.Errorf("secret leaked: %s", text)
	}
}

func TestSecretsRedacted(t *testing.T) {
	good := testURL(t)
	u, _ := url.Parse(good)
	wrong := *u
	wrong.User = url.UserPassword(u.User.Username(), "Wr0ng-s3cret-pass")
	port := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	}()
	for _, tc := range []struct {
		name, url, secret string
	}{
		{"wrong password", wrong.String(), "Wr0ng-s3cret-pass"},
		{"refused", "postgres://cdcflow:Refused-s3cret@127.0.0.1:" + port + "/db?sslmode=disable&connect_timeout=5", "Refused-s3cret"},
		{"key=value refused", "host=127.0.0.1 port=" + port + " user=cdcflow password=Kv-s3cret-pw sslmode=disable", "Kv-s3cret-pw"},
		{"unparsable", "postgres://cdcflow:Unparsable-s3cret@127.0.0.1:notaport/db", "Unparsable-s3cret"},
		{"unparsable query", "postgres://h/db?password=Query-s3cret&sslmode=bogus", "Query-s3cret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			opts := Options{URL: tc.url, Schema: newSchema(), Logger: slog.New(slog.NewTextHandler(&logs, nil))}
			_, err := Open(ctxb(), opts)
			if err == nil {
				t.Fatal("open succeeded")
			}
			for _, text := range []string{err.Error(), fmt.Sprintf("%v %+v %s", err, err, err), logs.String(), fmt.Sprint(opts), fmt.Sprintf("%+v %#v", opts, opts)} {
				if strings.Contains(text, tc.secret) {
					t.Errorf("secret in %q", text)
				}
			}
		})
	}
	s := openTest(t, Options{})
	for _, text := range []string{s.String(), fmt.Sprint(s), fmt.Sprintf("%+v", s.opts)} {
		assertNoSecret(t, good, text)
	}
}

func TestClassify(t *testing.T) {
	pg := func(code, constraint string) error {
		return fmt.Errorf("merge: %w", &pgconn.PgError{Code: code, ConstraintName: constraint, Message: "x"})
	}
	for _, tc := range []struct {
		name      string
		err       error
		permanent bool
	}{
		{"serialization failure", pg("40001", ""), false},
		{"deadlock", pg("40P01", ""), false},
		{"admin shutdown", pg("57P01", ""), false},
		{"too many connections", pg("53300", ""), false},
		{"connection failure", pg("08006", ""), false},
		{"undefined column", pg("42703", ""), false},
		{"disk full", pg("53100", ""), false},
		{"untranslatable character", pg("22P05", ""), true},
		{"numeric overflow", pg("22003", ""), true},
		{"not null violation", pg("23502", ""), true},
		{"unique violation", pg("23505", "orders_pkey"), true},
		{"catalog race", pg("23505", "pg_type_typname_nsp_index"), false},
		{"connection reset", &net.OpError{Op: "read", Err: errors.New("connection reset by peer")}, false},
		{"eof", io.ErrUnexpectedEOF, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := errors.Is(classify(tc.err), sink.ErrPermanent)
			if got != tc.permanent {
				t.Errorf("classify(%v) permanent = %v, want %v", tc.err, got, tc.permanent)
			}
		})
	}
}

// TestRejectWithoutDeadLetterTable: a row the sink rejects fails Apply with
// ErrPermanent naming the position, and nothing of the batch is stored.
func TestRejectWithoutDeadLetterTable(t *testing.T) {
	s := openTest(t, Options{Tables: map[string]TableOptions{"t": {Columns: map[string]string{"n": "BIGINT"}}}})
	st := sinktest.NewStream("k", "0")
	bad := st.Put("t", "2", 100, `{"id":2,"n":"many"}`)
	_, err := s.Apply(ctxb(), st.Batch(st.Put("t", "1", 100, `{"id":1,"n":1}`), bad))
	if !errors.Is(err, sink.ErrPermanent) || !strings.Contains(err.Error(), bad.Position.String()) || !strings.Contains(err.Error(), ReasonTypeConflict) {
		t.Fatalf("apply = %v, want ErrPermanent naming %s and %s", err, bad.Position, ReasonTypeConflict)
	}
	db := s.testDB(t)
	if n := logCount(t, db); n != 0 {
		t.Errorf("log rows = %d after a failed batch", n)
	}
	if cps := must[[]change.Checkpoint](t)(s.Checkpoints(ctxb(), "")); len(cps) != 0 {
		t.Errorf("checkpoints stored by a failed batch: %v", cps)
	}
}

func TestOptionsValidated(t *testing.T) {
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{URL: "postgres://h/db", TableNaming: "weird"}, "table_naming"},
		{Options{URL: "postgres://h/db", Schema: "pg_catalog"}, "reserved"},
		{Options{URL: "postgres://h/db", Schema: "_cdc_x"}, "reserved prefix"},
		{Options{}, "url: must be set"},
		{Options{URL: "postgres://h/db", Tables: map[string]TableOptions{"t": {Columns: map[string]string{"c": "MONEY"}}}}, "tables.t.columns.c"},
	} {
		_, err := Open(ctxb(), tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%+v) = %v, want an error about %s", tc.opts, err, tc.want)
		}
	}
}

// TestViewCastsPinnedIntegers: a pinned integer column converts "5.0" and
// "1e2" leniently; the view must read them too (PostgreSQL has no TRY_CAST).
func TestViewCastsPinnedIntegers(t *testing.T) {
	s := openTest(t, Options{DeadLetterTable: true, Tables: map[string]TableOptions{"t": {Columns: map[string]string{"q": "BIGINT", "i": "INTEGER"}}}})
	st := sinktest.NewStream("k", "0")
	apply(t, s, st.Batch(st.Put("t", "1", 1, `{"id":1,"q":5.0,"i":"1e2"}`), st.Put("t", "2", 1, `{"id":2,"q":" 7 ","i":3}`)))
	db := s.testDB(t)
	want := "1|5|100,2|7|3"
	if got := fmtRows(t, db, "SELECT _cdc_record_id, q, i FROM t ORDER BY 1"); strings.Join(got, ",") != want {
		t.Errorf("merged = %v, want %s", got, want)
	}
	if got := fmtRows(t, db, "SELECT record_id, q, i FROM t_current ORDER BY 1"); strings.Join(got, ",") != want {
		t.Errorf("view = %v, want %s", got, want)
	}
}

// TestFailedApplyLeavesNothing: an error after every write of a batch rolls
// back all of it (log, dead letters, new table, registry, merged rows,
// tombstones, checkpoint), and the sink's own schema knowledge too.
func TestFailedApplyLeavesNothing(t *testing.T) {
	s := openTest(t, Options{DeadLetterTable: true})
	st := sinktest.NewStream("k", "0")
	b := st.Batch(st.Put("t", "1", 100, `{"id":1,"v":"a"}`), st.Delete("t", "2", 100), st.Put("bad\x00", "3", 1, `{}`))
	s.beforeCommit = func(context.Context, pgx.Tx) error { return errors.New("injected failure") }
	if _, err := s.Apply(ctxb(), b); err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("apply = %v, want the injected failure", err)
	}
	db := s.testDB(t)
	for _, q := range []string{
		"SELECT count(*) FROM cdc_events", "SELECT count(*) FROM cdc_dead_letters", "SELECT count(*) FROM _cdc_tables",
		"SELECT count(*) FROM _cdc_tombstones", "SELECT count(*) FROM _cdc_checkpoints",
		"SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name IN ('t', 't_current')",
	} {
		if n := scalar[int](t, db, q); n != 0 {
			t.Errorf("%s = %d after a rolled-back batch", q, n)
		}
	}
	s.beforeCommit = nil
	res := apply(t, s, b)
	if res.Logged != 2 || res.Applied != 2 || res.Dead[ReasonInvalidIdentifier] != 1 {
		t.Fatalf("retry result %+v, want 2 logged and applied, 1 invalid_identifier", res)
	}
	if got := fmtRows(t, db, "SELECT _cdc_record_id, v FROM t"); strings.Join(got, ",") != "1|a" {
		t.Errorf("merged = %v", got)
	}
}
