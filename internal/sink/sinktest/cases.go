package sinktest

import (
	"context"
	"fmt"
	"math/rand"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/sink"
	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

// Run runs the conformance suite against h.
func Run(t *testing.T, h Harness) {
	cases := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"basic", testBasic},
		{"reapply_idempotent", testReapply},
		{"crash_before_ack", testCrashBeforeAck},
		{"late_older_update", testLateOlderUpdate},
		{"no_resurrection", testNoResurrection},
		{"reinsert_after_delete", testReinsertAfterDelete},
		{"duplicates", testDuplicates},
		{"within_batch_dedup", testWithinBatchDedup},
		{"shuffled_delivery", testShuffled},
		{"primary_key_change", testKeyChange},
		{"composite_keys", testCompositeKeys},
		{"new_column", testNewColumn},
		{"type_widening", testWidening},
		{"pinned_type_conflict", testPinnedConflict},
		{"poison_isolation", testPoison},
		{"nulls_unicode", testNullsUnicode},
		{"wide_rows", testWideRows},
		{"checkpoints", testCheckpoints},
		{"soft_delete", testSoftDelete},
		{"chunk_ids", testChunkIDs},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, h) })
	}
}

func row(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func testBasic(t *testing.T, h Harness) {
	e := newEnv(t, h, Config{})
	s := NewStream("orders.ndjson", "")
	res := e.apply(s.Batch(
		s.Put("orders", "1", 100, `{"id":1,"status":"new","total":10}`),
		s.Put("orders", "2", 110, `{"id":2,"status":"new","total":20}`),
		s.Put("orders", "3", 120, `{"id":3,"status":"new","total":30}`),
		s.Update("orders", "1", 130, `{"id":1,"status":"paid","total":10}`),
		s.Delete("orders", "3", 140),
	))
	if res.Logged != 5 || res.Applied != 3 || res.Stale != 2 || res.Tables["orders"] != 5 {
		t.Errorf("result = %+v, want logged 5, applied 3 (latest per key), stale 2, tables[orders] 5", res)
	}
	e.checkState("orders", map[string]map[string]string{
		"1": row("status", "paid", "total", "10"),
		"2": row("status", "new", "total", "20"),
	}, "status", "total")
	if n := e.logCount(); n != 5 {
		t.Errorf("event log has %d rows, want 5", n)
	}
	if !isKind(e.columnType("orders", "total"), sqlgen.BigInt) || !isKind(e.columnType("orders", "status"), sqlgen.Varchar) {
		t.Errorf("types: total %s, status %s; want BIGINT and text", e.columnType("orders", "total"), e.columnType("orders", "status"))
	}
	// Log rows carry the ordering columns and sequence-numbered ids.
	if n := e.count("SELECT count(DISTINCT event_id) FROM " + sqlgen.QuoteIdent(sqlgen.EventsTable) + " WHERE commit_order <> '' AND stream_order <> ''"); n != 5 {
		t.Errorf("distinct event_id with ordering columns = %d, want 5", n)
	}
}

func testReapply(t *testing.T, h Harness) {
	e := newEnv(t, h, Config{})
	s := NewStream("topic", "0")
	b := s.Batch(
		s.Put("items", "a", 100, `{"id":"a","qty":1}`),
		s.Put("items", "b", 100, `{"id":"b","qty":2}`),
		s.Update("items", "a", 200, `{"id":"a","qty":3}`),
		s.Delete("items", "b", 300),
	)
	e.apply(b)
	want := map[string]map[string]string{"a": row("qty", "3")}
	e.checkState("items", want, "qty")
	logged := e.logCount()

	// Raw re-apply: the log grows, merged state does not change.
	res := e.apply(b)
	if res.Applied != 0 || res.Duplicates != 2 {
		t.Errorf("raw re-apply result = %+v, want applied 0, duplicates 2 (the stored winners)", res)
	}
	e.checkState("items", want, "qty")

	// A pipeline skips what its checkpoint covers: nothing is left to apply.
	cps, err := e.s.(sink.PositionStore).Checkpoints(context.Background(), "topic")
	if err != nil {
		t.Fatal(err)
	}
	skipped := SkipApplied(b, cps)
	if len(skipped.Events) != 0 {
		t.Fatalf("after checkpoint skipping %d events remain, want 0", len(skipped.Events))
	}
	e.apply(skipped)
	if n := e.logCount(); n != 2*logged {
		t.Errorf("log rows = %d, want %d (one raw re-apply, one empty)", n, 2*logged)
	}
	e.checkState("items", want, "qty")
}

func testCrashBeforeAck(t *testing.T, h Harness) {
	e := newEnv(t, h, Config{})
	s := NewStream("stream", "shardId-000000000001")
	b := s.Batch(
		s.Put("users", "u1", 100, `{"id":"u1","name":"Ann"}`),
		s.Put("users", "u2", 100, `{"id":"u2","name":"Bob"}`),
		s.Delete("users", "u2", 200),
	)
	e.apply(b)
	before := e.merged("users", "name")
	// The process dies before acking: the source redelivers the batch to a new sink.
	e.reopen()
	cps, err := e.s.(sink.PositionStore).Checkpoints(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(cps) != 1 || !reflect.DeepEqual(cps[0], b.Checkpoints[0]) {
		t.Fatalf("checkpoints after reopen = %+v, want %+v", cps, b.Checkpoints)
	}
	e.apply(b)
	sameRows(t, "users after redelivery", e.merged("users", "name"), before)
	e.checkState("users", map[string]map[string]string{"u1": row("name", "Ann")}, "name")
	// event_id keeps growing across restarts: no id is reused.
	if n, d := e.logCount(), e.count("SELECT count(DISTINCT event_id) FROM "+sqlgen.QuoteIdent(sqlgen.EventsTable)); n != 6 || d != 6 {
		t.Errorf("log rows %d, distinct event_id %d; want 6 and 6", n, d)
	}
	// New events after the restart apply normally.
	e.apply(s.Batch(s.Put("users", "u3", 300, `{"id":"u3","name":"Cy"}`)))
	e.checkState("users", map[string]map[string]string{"u1": row("name", "Ann"), "u3": row("name", "Cy")}, "name")
}

func testLateOlderUpdate(t *testing.T, h Harness) {
	e := newEnv(t, h, Config{})
	s := NewStream("f", "")
	e.apply(s.Batch(s.Put("t", "1", 200, `{"id":1,"v":"new"}`)))
	res := e.apply(s.Batch(s.Update("t", "1", 100, `{"id":1,"v":"old"}`)))
	if res.Stale != 1 || res.Applied != 0 || res.Logged != 1 {
		t.Errorf("late older update result = %+v, want logged 1, stale 1", res)
	}
	e.checkState("t", map[string]map[string]string{"1": row("v", "new")}, "v")
}

func testNoResurrection(t *testing.T, h Harness) {
	e := newEnv(t, h, Config{})
	s := NewStream("f", "")
	e.apply(s.Batch(s.Put("t", "1", 100, `{"id":1,"v":"a"}`), s.Put("t", "2", 100, `{"id":2,"v":"b"}`)))
	e.apply(s.Batch(s.Delete("t", "1", 300), s.Delete("t", "9", 300))) // 9 was never seen
	res := e.apply(s.Batch(s.Update("t", "1", 200, `{"id":1,"v":"late"}`), s.Put("t", "9", 100, `{"id":9,"v":"late"}`)))
	if res.Stale != 2 || res.Applied != 0 {
		t.Errorf("late inserts after delete result = %+v, want stale 2", res)
	}
	e.checkState("t", map[string]map[string]string{"2": row("v", "b")}, "v")
	e.reopen() // tombstones survive a restart
	e.apply(s.Batch(s.Put("t", "1", 250, `{"id":1,"v":"later"}`)))
	e.checkState("t", map[string]map[string]string{"2": row("v", "b")}, "v")
}

func testReinsertAfterDelete(t *testing.T, h Harness) {
	e := newEnv(t, h, Config{})
	s := NewStream("f", "")
	e.apply(s.Batch(s.Put("t", "1", 100, `{"id":1,"v":"a"}`)))
	e.apply(s.Batch(s.Delete("t", "1", 200)))
	e.checkState("t", map[string]map[string]string{}, "v")
	res := e.apply(s.Batch(s.Put("t", "1", 300, `{"id":1,"v":"again"}`)))
	if res.Applied != 1 {
		t.Errorf("re-insert result = %+v, want applied 1", res)
	}
	e.checkState("t", map[string]map[string]string{"1": row("v", "again")}, "v")
	// Delete and re-insert inside one batch: the newest wins.
	e.apply(s.Batch(s.Delete("t", "1", 400), s.Put("t", "1", 500, `{"id":1,"v":"third"}`)))
	e.checkState("t", map[string]map[string]string{"1": row("v", "third")}, "v")
}

func testDuplicates(t *testing.T, h Harness) {
	e := newEnv(t, h, Config{})
	s := NewStream("k", "3")
	ev := s.Put("t", "1", 100, `{"id":1,"v":"a"}`)
	e.apply(s.Batch(ev))
	res := e.apply(s.Batch(s.Redeliver(ev)))
	if res.Duplicates != 1 || res.Applied != 0 {
		t.Errorf("redelivered event result = %+v, want duplicates 1", res)
	}
	del := s.Delete("t", "1", 200)
	e.apply(s.Batch(del))
	res = e.apply(s.Batch(s.Redeliver(del), s.Redeliver(ev)))
	if res.Duplicates != 1 || res.Stale != 1 || res.Applied != 0 {
		t.Errorf("redelivered delete + insert result = %+v, want duplicates 1, stale 1", res)
	}
	e.checkState("t", map[string]map[string]string{}, "v")
}

func testWithinBatchDedup(t *testing.T, h Harness) {
	e := newEnv(t, h, Config{})
	s := NewStream("k", "0")
	v3 := s.Put("t", "1", 300, `{"id":1,"v":"three"}`)
	res := e.apply(s.Batch(
		s.Put("t", "1", 100, `{"id":1,"v":"one"}`),
		v3,
		s.Put("t", "1", 200, `{"id":1,"v":"two"}`),
		s.Redeliver(v3),
		s.Put("t", "2", 100, `{"id":2,"v":"x"}`),
	))
	if res.Applied != 2 || res.Duplicates != 1 || res.Stale != 2 {
		t.Errorf("result = %+v, want applied 2, duplicates 1, stale 2", res)
	}
	e.checkState("t", map[string]map[string]string{"1": row("v", "three"), "2": row("v", "x")}, "v")
}

// testShuffled delivers a history of changes duplicated, shuffled and split
// into random batches, and expects the state of in-order delivery.
func testShuffled(t *testing.T, h Harness) {
	for seed := int64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			e := newEnv(t, h, Config{})
			s := NewStream("shuffled", "0")
			var history []change.Event
			want := map[string]map[string]string{}
			ns := int64(1000)
			for i := 0; i < 60; i++ {
				key := strconv.Itoa(rng.Intn(6))
				ns += int64(1 + rng.Intn(3))
				if rng.Intn(4) == 0 {
					history = append(history, s.Delete("t", key, ns))
					delete(want, key)
				} else {
					v := fmt.Sprintf("v%d", i)
					history = append(history, s.Put("t", key, ns, fmt.Sprintf(`{"id":%q,"v":%q}`, key, v)))
					want[key] = row("v", v)
				}
			}
			var delivery []change.Event
			for _, ev := range history {
				delivery = append(delivery, ev)
				if rng.Intn(3) == 0 {
					delivery = append(delivery, s.Redeliver(ev))
				}
			}
			rng.Shuffle(len(delivery), func(i, j int) { delivery[i], delivery[j] = delivery[j], delivery[i] })
			// Make sure a put exists so the table is created even if all keys end deleted.
			delivery = append([]change.Event{s.Put("t", "seed", 1, `{"id":"seed","v":"s"}`)}, delivery...)
			want["seed"] = row("v", "s")
			for len(delivery) > 0 {
				n := min(len(delivery), 1+rng.Intn(12))
				e.apply(&change.Batch{Events: delivery[:n]})
				delivery = delivery[n:]
			}
			e.checkState("t", want, "v")
		})
	}
}

func testKeyChange(t *testing.T, h Harness) {
	e := newEnv(t, h, Config{})
	s := NewStream("f", "")
	e.apply(s.Batch(s.Put("acct", "10", 100, `{"id":10,"owner":"ann"}`)))
	// UPDATE acct SET id = 11: the source emits a delete of the old key and an
	// insert of the new one, in the same transaction.
	e.apply(s.Batch(s.Delete("acct", "10", 200), s.Put("acct", "11", 200, `{"id":11,"owner":"ann"}`)))
	e.checkState("acct", map[string]map[string]string{"11": row("owner", "ann", "id", "11")}, "owner", "id")
}

func testCompositeKeys(t *testing.T, h Harness) {
	e := newEnv(t, h, Config{})
	s := NewStream("f", "")
	cols := []string{"order_id", "line"}
	a := s.Composite("lines", cols, []string{"7", `"a"`}, 100, `{"order_id":7,"line":"a","qty":1}`)
	b := s.Composite("lines", cols, []string{"7", `"b"`}, 100, `{"order_id":7,"line":"b","qty":2}`)
	a2 := s.Composite("lines", cols, []string{"7", `"a"`}, 200, `{"order_id":7,"line":"a","qty":5}`)
	e.apply(s.Batch(a, b))
	e.apply(s.Batch(a2))
	e.checkState("lines", map[string]map[string]string{
		`[7,"a"]`: row("qty", "5", "line", "a"),
		`[7,"b"]`: row("qty", "2", "line", "b"),
	}, "qty", "line")
}

func testNewColumn(t *testing.T, h Harness) {
	e := newEnv(t, h, Config{})
	s := NewStream("f", "")
	e.apply(s.Batch(s.Put("p", "1", 100, `{"id":1,"name":"a"}`)))
	if got := e.columnType("p", "age"); got != "" {
		t.Fatalf("column age exists before it appears (%s)", got)
	}
	e.apply(s.Batch(
		s.Put("p", "2", 200, `{"id":2,"name":"b","age":30}`),
		s.Put("p", "3", 210, `{"id":3,"name":"c","age":null,"nick":null}`),
	))
	if !isKind(e.columnType("p", "age"), sqlgen.BigInt) {
		t.Errorf("age type = %q, want BIGINT", e.columnType("p", "age"))
	}
	if got := e.columnType("p", "nick"); got != "" {
		t.Errorf("all-null column nick was created as %s; it should wait for a value", got)
	}
	e.checkState("p", map[string]map[string]string{
		"1": row("name", "a", "age", Null),
		"2": row("name", "b", "age", "30"),
		"3": row("name", "c", "age", Null),
	}, "name", "age")
	e.reopen() // the new column is remembered
	e.apply(s.Batch(s.Put("p", "4", 300, `{"id":4,"name":"d","age":40}`)))
	e.checkState("p", map[string]map[string]string{
		"1": row("age", Null), "2": row("age", "30"), "3": row("age", Null), "4": row("age", "40"),
	}, "age")
}

func testWidening(t *testing.T, h Harness) {
	e := newEnv(t, h, Config{})
	s := NewStream("f", "")
	e.apply(s.Batch(s.Put("w", "1", 100, `{"id":1,"amount":5,"flag":true,"at":"2024-01-02T03:04:05Z"}`)))
	if !isKind(e.columnType("w", "amount"), sqlgen.BigInt) || !isKind(e.columnType("w", "flag"), sqlgen.Boolean) || !isKind(e.columnType("w", "at"), sqlgen.Timestamp) {
		t.Fatalf("inferred types amount %s flag %s at %s; want BIGINT BOOLEAN TIMESTAMP", e.columnType("w", "amount"), e.columnType("w", "flag"), e.columnType("w", "at"))
	}
	e.apply(s.Batch(s.Put("w", "2", 200, `{"id":2,"amount":2.25,"flag":false}`)))
	if !isKind(e.columnType("w", "amount"), sqlgen.Decimal) {
		t.Errorf("amount after 2.25 = %s, want a decimal", e.columnType("w", "amount"))
	}
	e.checkState("w", map[string]map[string]string{"1": row("flag", "true"), "2": row("flag", "false")}, "flag")
	// A fraction that fits the decimal does not widen it.
	before := e.columnType("w", "amount")
	e.apply(s.Batch(s.Put("w", "3", 300, `{"id":3,"amount":7}`)))
	if got := e.columnType("w", "amount"); got != before {
		t.Errorf("amount widened from %s to %s for a value that fits", before, got)
	}
	// Text in a numeric, boolean or timestamp column widens it to text.
	e.apply(s.Batch(s.Put("w", "4", 400, `{"id":4,"amount":"n/a","flag":"maybe","at":"soon"}`)))
	for _, c := range []string{"amount", "flag", "at"} {
		if !isKind(e.columnType("w", c), sqlgen.Varchar) {
			t.Errorf("%s after a string = %s, want text", c, e.columnType("w", c))
		}
	}
	m := e.merged("w", "amount", "flag")
	if m["4"]["amount"] != "n/a" || m["4"]["flag"] != "maybe" || m["2"]["amount"] == Null {
		t.Errorf("values after widening = %v", m)
	}
	// An object in a scalar column widens it to JSON; objects stay JSON.
	e.apply(s.Batch(s.Put("w", "5", 500, `{"id":5,"meta":{"a":[1,2]}}`), s.Put("w", "6", 510, `{"id":6,"meta":"text"}`)))
	if !isKind(e.columnType("w", "meta"), sqlgen.JSON) {
		t.Errorf("meta = %s, want JSON", e.columnType("w", "meta"))
	}
	e.checkState("w", map[string]map[string]string{
		"1": row("id", "1"), "2": row("id", "2"), "3": row("id", "3"), "4": row("id", "4"),
		"5": row("meta", `{"a":[1,2]}`), "6": row("meta", `"text"`),
	}, "id", "meta")
}

func testPinnedConflict(t *testing.T, h Harness) {
	e := newEnv(t, h, Config{Columns: map[string]map[string]string{"inv": {"qty": "BIGINT", "price": "DECIMAL(10,2)"}}})
	s := NewStream("f", "")
	res := e.apply(s.Batch(
		s.Put("inv", "1", 100, `{"id":1,"qty":5,"price":"9.90"}`),
		s.Put("inv", "2", 100, `{"id":2,"qty":"lots","price":1}`),
		s.Put("inv", "3", 100, `{"id":3,"qty":"42","price":1.234}`),
		s.Put("inv", "4", 100, `{"id":4,"qty":7,"price":2.5}`),
	))
	if res.Dead[ReasonTypeConflict] != 2 || res.Logged != 2 || res.Applied != 2 {
		t.Errorf("result = %+v, want 2 type_conflict dead letters, 2 logged and applied", res)
	}
	if got := e.deadLetters(); got[ReasonTypeConflict] != 2 {
		t.Errorf("stored dead letters = %v, want 2 %s", got, ReasonTypeConflict)
	}
	if !isKind(e.columnType("inv", "qty"), sqlgen.BigInt) {
		t.Errorf("pinned qty = %s, want BIGINT (never widened)", e.columnType("inv", "qty"))
	}
	// The table is not stalled: later rows apply.
	e.apply(s.Batch(s.Put("inv", "5", 200, `{"id":5,"qty":"12","price":"3"}`)))
	e.checkState("inv", map[string]map[string]string{
		"1": row("qty", "5", "price", "9.90"),
		"4": row("qty", "7", "price", "2.50"),
		"5": row("qty", "12", "price", "3.00"),
	}, "qty", "price")
}

// ReasonTypeConflict and ReasonInvalidIdentifier are the dead-letter reasons
// of rows a sink rejects.
const (
	ReasonTypeConflict      = "type_conflict"
	ReasonInvalidIdentifier = "invalid_identifier"
)

func testPoison(t *testing.T, h Harness) {
	e := newEnv(t, h, Config{})
	s := NewStream("k", "1")
	b := s.Batch(
		s.Put("good", "1", 100, `{"id":1,"v":"ok"}`),
		s.Put("bad\x00table", "1", 100, `{"id":1}`),
		s.Put("good", "2", 100, `{"id":2,"_cdc_op":"x"}`),
		s.Put("good", "3", 100, `{"id":3,"bad\ncol":1}`),
		s.Put(strings.Repeat("x", 64), "1", 100, `{"id":1}`),
		s.Put("good", "5", 100, "{\"id\":5,\"v\":\"bad \xff utf-8\"}"),
		s.Put("good", "6", 100, `{"id":6,"v":"lone \ud800 surrogate"}`),
		s.Put("good", "4", 100, `{"id":4,"v":"fine"}`),
	)
	b.Dead = []change.DeadLetter{{Reason: change.ReasonInvalidJSON, Detail: "unexpected end", Format: "dsql", Position: s.next(), Raw: []byte("{")}}
	res := e.apply(b)
	if res.Dead[ReasonInvalidIdentifier] != 4 || res.Dead[change.ReasonInvalidValue] != 2 || res.Dead[change.ReasonInvalidJSON] != 1 || res.Applied != 2 {
		t.Errorf("result = %+v, want 4 invalid_identifier, 2 invalid_value, 1 invalid_json dead letters and 2 applied", res)
	}
	if got := e.deadLetters(); got[ReasonInvalidIdentifier] != 4 || got[change.ReasonInvalidValue] != 2 || got[change.ReasonInvalidJSON] != 1 {
		t.Errorf("stored dead letters = %v", got)
	}
	e.checkState("good", map[string]map[string]string{"1": row("v", "ok"), "4": row("v", "fine")}, "v")
	if n := e.count("SELECT count(*) FROM " + sqlgen.QuoteIdent(sqlgen.DeadLettersTable) + " WHERE position <> '' AND raw IS NOT NULL AND detail <> ''"); n != 7 {
		t.Errorf("dead letters with position, raw and detail = %d, want 7", n)
	}
	cps, err := e.s.(sink.PositionStore).Checkpoints(context.Background(), "k")
	if err != nil || len(cps) != 1 {
		t.Errorf("checkpoint stored with the poisoned batch: %v, %v", cps, err)
	}
}

func testNullsUnicode(t *testing.T, h Harness) {
	e := newEnv(t, h, Config{})
	s := NewStream("f", "")
	e.apply(s.Batch(
		s.Put("τάξη", "ключ", 100, `{"id":"ключ","名前":"héllo 🌍","quote\"d":"it's","n":null,"e":"","doc":{"a":[1]}}`),
		s.Put("τάξη", "k2", 100, `{"id":"k2","名前":null,"quote\"d":"x\\y\u00e9z","doc":null}`),
	))
	// JSON null reads as SQL NULL in the view too, not as the JSON value null.
	e.checkState("τάξη", map[string]map[string]string{
		"ключ": row("名前", "héllo 🌍", `quote"d`, "it's", "e", ""),
		"k2":   row("名前", Null, `quote"d`, "x\\yéz", "e", Null, "doc", Null),
	}, "名前", `quote"d`, "e", "doc")
}

func testWideRows(t *testing.T, h Harness) {
	e := newEnv(t, h, Config{})
	s := NewStream("f", "")
	var b strings.Builder
	b.WriteString(`{"id":1`)
	cols := make([]string, 200)
	want := row()
	for i := range cols {
		cols[i] = fmt.Sprintf("c%03d", i)
		fmt.Fprintf(&b, `,%q:%d`, cols[i], i*i)
		want[cols[i]] = strconv.Itoa(i * i)
	}
	b.WriteString("}")
	e.apply(s.Batch(s.Put("wide", "1", 100, b.String())))
	e.checkState("wide", map[string]map[string]string{"1": want}, cols...)
}

func testCheckpoints(t *testing.T, h Harness) {
	e := newEnv(t, h, Config{})
	ps := e.s.(sink.PositionStore)
	cp := func(src, part, off string, idx int, indexed, held bool, resume string) change.Checkpoint {
		c := change.Checkpoint{Source: src, Partition: part, Held: held,
			Applied: change.Position{Source: src, Partition: part, Offset: off, Index: idx, Indexed: indexed}}
		if held {
			c.Resume = change.Position{Source: src, Partition: part, Offset: resume}
		}
		return c
	}
	first := []change.Checkpoint{
		cp("topic", "0", "41", 0, false, false, ""),
		cp("topic", "1", "7", 3, true, true, "5"),
		cp("stream", "shardId-000000000002", "49590338271490256608559692538361571095921575989136588898", 0, false, false, ""),
		cp("file.ndjson", "", "12", 0, false, false, ""),
	}
	e.apply(&change.Batch{Checkpoints: first})
	e.apply(&change.Batch{Checkpoints: []change.Checkpoint{cp("topic", "0", "99", 0, false, false, "")}})
	want := append([]change.Checkpoint{cp("topic", "0", "99", 0, false, false, "")}, first[1])
	got, err := ps.Checkpoints(context.Background(), "topic")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Checkpoints(topic) = %+v\nwant %+v", got, want)
	}
	e.reopen()
	all, err := e.s.(sink.PositionStore).Checkpoints(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 4 {
		t.Fatalf("Checkpoints(\"\") = %d checkpoints, want 4", len(all))
	}
	for _, c := range all {
		if c.Source == "stream" && !reflect.DeepEqual(c, first[2]) {
			t.Errorf("stream checkpoint = %+v, want %+v", c, first[2])
		}
		if c.Source == "file.ndjson" && !reflect.DeepEqual(c, first[3]) {
			t.Errorf("file checkpoint = %+v, want %+v", c, first[3])
		}
	}
	if none, err := e.s.(sink.PositionStore).Checkpoints(context.Background(), "unknown"); err != nil || len(none) != 0 {
		t.Errorf("Checkpoints(unknown) = %v, %v; want none", none, err)
	}
}

func testSoftDelete(t *testing.T, h Harness) {
	e := newEnv(t, h, Config{SoftDelete: true})
	s := NewStream("f", "")
	e.apply(s.Batch(s.Put("sd", "1", 100, `{"id":1,"v":"a"}`), s.Put("sd", "2", 100, `{"id":2,"v":"b"}`)))
	e.apply(s.Batch(s.Delete("sd", "1", 200), s.Delete("sd", "3", 200)))
	want := map[string]map[string]string{
		"1": row("v", "a", sqlgen.ColDeleted, "true", sqlgen.ColOp, "d"),
		"2": row("v", "b", sqlgen.ColDeleted, "false", sqlgen.ColOp, "c"),
		"3": row("v", Null, sqlgen.ColDeleted, "true", sqlgen.ColOp, "d"),
	}
	sameRows(t, "sd", e.merged("sd", "v", sqlgen.ColDeleted, sqlgen.ColOp), want)
	// The view hides deleted rows.
	sameRows(t, "sd_current", e.view("sd", "v"), map[string]map[string]string{"2": row("v", "b")})
	// An older insert does not undelete; a newer one does.
	res := e.apply(s.Batch(s.Put("sd", "3", 150, `{"id":3,"v":"late"}`)))
	if res.Stale != 1 {
		t.Errorf("older insert after soft delete = %+v, want stale 1", res)
	}
	e.apply(s.Batch(s.Put("sd", "1", 300, `{"id":1,"v":"back"}`)))
	want["1"] = row("v", "back", sqlgen.ColDeleted, "false", sqlgen.ColOp, "c")
	// Inserted and deleted within one batch: the row keeps its last values.
	e.apply(s.Batch(s.Put("sd", "4", 400, `{"id":4,"v":"brief"}`), s.Delete("sd", "4", 410)))
	want["4"] = row("v", "brief", sqlgen.ColDeleted, "true", sqlgen.ColOp, "d")
	sameRows(t, "sd", e.merged("sd", "v", sqlgen.ColDeleted, sqlgen.ColOp), want)
}

// testChunkIDs: chunk ids of reassembled DSQL events are stored with them
// and read back incrementally, newest first, across a reopen
// (sink.ChunkStore).
func testChunkIDs(t *testing.T, h Harness) {
	e := newEnv(t, h, Config{})
	cs, ok := e.s.(sink.ChunkStore)
	if !ok {
		t.Fatal("sink does not implement sink.ChunkStore")
	}
	ctx := context.Background()
	s := NewStream("stream", "shardId-000000000001")
	withChunk := func(ev change.Event, id string) change.Event { ev.ChunkID = id; return ev }
	e.apply(s.Batch(withChunk(s.Put("docs", "1", 100, `{"id":"1"}`), "c-1"), s.Put("docs", "2", 100, `{"id":"2"}`)))
	e.apply(s.Batch(withChunk(s.Put("docs", "3", 100, `{"id":"3"}`), "c-3")))
	e.reopen()
	cs = e.s.(sink.ChunkStore)
	ids, next, err := cs.CompletedChunks(ctx, 0, 10)
	if err != nil || !reflect.DeepEqual(ids, []string{"c-3", "c-1"}) {
		t.Fatalf("CompletedChunks(0, 10) = %v, %v; want [c-3 c-1]", ids, err)
	}
	if ids, _, err := cs.CompletedChunks(ctx, 0, 1); err != nil || !reflect.DeepEqual(ids, []string{"c-3"}) {
		t.Errorf("CompletedChunks(0, 1) = %v, %v; want the newest, [c-3]", ids, err)
	}
	if ids, again, err := cs.CompletedChunks(ctx, next, 10); err != nil || len(ids) != 0 || again != next {
		t.Errorf("CompletedChunks(%d, 10) = %v, %d, %v; want none, %d", next, ids, again, err, next)
	}
	e.apply(s.Batch(withChunk(s.Put("docs", "4", 100, `{"id":"4"}`), "c-4")))
	if ids, _, err := cs.CompletedChunks(ctx, next, 10); err != nil || !reflect.DeepEqual(ids, []string{"c-4"}) {
		t.Errorf("CompletedChunks after a new batch = %v, %v; want [c-4]", ids, err)
	}
}
