package testgen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
)

// ExampleTables returns the small schema of the example streams in
// examples/data: customers(id), orders(order_id), order_items(order_id,
// line_no).
func ExampleTables() []*Table {
	return []*Table{
		mustTable("public", TableCustomers, []string{"id"},
			Column{Name: "id", Type: Text},
			Column{Name: "name", Type: Text},
			Column{Name: "email", Type: Text, Nullable: true},
			Column{Name: "vip", Type: Bool},
			Column{Name: "notes", Type: Text, Nullable: true},
			Column{Name: "updated_at", Type: Timestamp},
		),
		mustTable("public", TableOrders, []string{"order_id"},
			Column{Name: "order_id", Type: BigInt},
			Column{Name: "customer_id", Type: Text},
			Column{Name: "status", Type: Text},
			Column{Name: "total", Type: Decimal, Scale: 2},
			Column{Name: "created_at", Type: TimestampMicros},
			Column{Name: "shipping", Type: JSON, Nullable: true},
		),
		mustTable("public", TableOrderItems, []string{"order_id", "line_no"},
			Column{Name: "order_id", Type: BigInt},
			Column{Name: "line_no", Type: Int},
			Column{Name: "sku", Type: Text},
			Column{Name: "qty", Type: Int},
			Column{Name: "unit_price", Type: Decimal, Scale: 2},
		),
	}
}

// ExampleBase is the time of the example streams: transaction n commits at
// ExampleBase + n seconds + n*100ms (+1ns for the first).
var ExampleBase = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// exampleBigNote is the customers.notes value that DSQL sends fragmented.
func exampleBigNote() string {
	var b strings.Builder
	for i := 1; b.Len() < 2600; i++ {
		fmt.Fprintf(&b, "note line %02d: Grüße, \"quotes\", back\\slash, emoji 🚀\n", i)
	}
	return b.String()
}

// ExampleHistory returns the five transactions behind the example streams;
// with bigNote, transaction 4 sets a note of about 2.6 kB (DSQL sends it in
// fragments), else a short one. Transaction 1 is a snapshot read.
func ExampleHistory(bigNote bool) *History {
	n := func(s string) json.Number { return json.Number(s) }
	at := func(i int) time.Time {
		t := ExampleBase.Add(time.Duration(i)*1100*time.Millisecond - time.Second)
		if i == 1 {
			t = t.Add(1)
		}
		return t
	}
	note := "short note ✓"
	if bigNote {
		note = exampleBigNote()
	}
	b := NewBuilder(ExampleTables()...)
	_ = b.Tx(at(1),
		Change{Table: TableCustomers, Op: change.Read, Row: map[string]any{
			"id": "c-1", "name": "Zoë \"Z\" O'Neil 🚀", "email": "zoe@example.com", "vip": true,
			"notes": "line1\nline2 \\ backslash", "updated_at": "2024-01-02T03:04:05.1Z"}},
		Change{Table: TableOrders, Op: change.Read, Row: map[string]any{
			"order_id": n("1001"), "customer_id": "c-1", "status": "new", "total": n("19.99"),
			"created_at": "2024-01-02T03:04:05.123456Z",
			"shipping":   map[string]any{"city": "Zürich", "express": false, "weights": []any{n("1.5"), n("2")}}}},
		Change{Table: TableOrderItems, Op: change.Read, Row: map[string]any{
			"order_id": n("1001"), "line_no": n("1"), "sku": "SKU-1", "qty": n("2"), "unit_price": n("5.00")}},
	)
	_ = b.Tx(at(2),
		Change{Table: TableOrders, Op: change.Update, Row: map[string]any{"order_id": n("1001"), "status": "paid"}},
		Change{Table: TableCustomers, Op: change.Insert, Row: map[string]any{
			"id": "c-2", "name": "日本語 テスト", "email": nil, "vip": false, "notes": nil, "updated_at": "2024-01-02T03:04:06.2Z"}},
		Change{Table: TableOrders, Op: change.Insert, Row: map[string]any{
			"order_id": n("1002"), "customer_id": "c-2", "status": "new", "total": n("7.05"),
			"created_at": "2024-01-02T03:04:06.2Z", "shipping": nil}},
	)
	_ = b.Tx(at(3),
		Change{Table: TableOrders, Op: change.Delete, Row: map[string]any{"order_id": n("1002")}},
		Change{Table: TableOrderItems, Op: change.Insert, Row: map[string]any{
			"order_id": n("1001"), "line_no": n("2"), "sku": "SKU-2", "qty": n("1"), "unit_price": n("9.99")}},
	)
	_ = b.Tx(at(4),
		Change{Table: TableCustomers, Op: change.Update, Row: map[string]any{
			"id": "c-1", "vip": false, "notes": note, "updated_at": "2024-01-02T03:04:08.4Z"}},
	)
	_ = b.Tx(at(5),
		Change{Table: TableOrderItems, Op: change.Update, Row: map[string]any{"order_id": n("1001"), "line_no": n("1"), "qty": n("3")}},
		Change{Table: TableOrders, Op: change.Update, Row: map[string]any{"order_id": n("1001"), "status": "shipped", "total": n("24.99")}},
	)
	h, err := b.History()
	if err != nil {
		panic(err) // the script above is fixed
	}
	h.Seed = 20240102
	return h
}

// examplePoison returns one record of format f for a change of transaction 6
// that is not part of ExampleHistory, for deriving poison lines.
func examplePoison(f Format, withSchema bool, c Change) []byte {
	b := NewBuilder(ExampleTables()...)
	if err := b.Tx(ExampleBase.Add(6*1100*time.Millisecond-time.Second), c); err != nil {
		panic(err)
	}
	h, _ := b.History()
	h.Seed = 6 // another transaction id than the history's first
	recs := mustEncode(h, f, EncodeOptions{DebeziumSchema: withSchema})
	return recs[0].Data
}

func mustCut(b []byte, old string) []byte {
	out := bytes.Replace(b, []byte(old), nil, 1)
	if bytes.Equal(out, b) {
		panic("testgen: example poison: " + old + " not found")
	}
	return out
}

func lines(rs ...[]byte) []byte {
	var b bytes.Buffer
	for _, r := range rs {
		b.Write(r)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// ExampleFiles renders the committed example streams of examples/data,
// keyed by file name. examples/data.md explains every line.
func ExampleFiles() map[string][]byte {
	files := map[string][]byte{}

	// DSQL: records in commit order are
	// 0 c-1, 1 orders 1001, 2 items [1001,1] (tx1); 3 orders 1001 paid,
	// 4 c-2, 5 orders 1002 (tx2); 6 delete 1002, 7 items [1001,2] (tx3);
	// 8 chunked c-1, 9-11 its fragments 0-2 (tx4); 12 items [1001,1] qty 3,
	// 13 orders 1001 shipped (tx5).
	d := mustEncode(ExampleHistory(true), FormatDSQL, EncodeOptions{FragmentBytes: 1024})
	if len(d) != 14 || d[8].Kind != RecordChunked {
		panic(fmt.Sprintf("testgen: example DSQL stream has %d records", len(d)))
	}
	missingKey := mustCut(examplePoison(FormatDSQL, false, Change{Table: TableOrders, Op: change.Insert, Row: map[string]any{
		"order_id": json.Number("1003"), "customer_id": "c-9", "status": "new", "total": json.Number("1.00"),
		"created_at": "2024-01-02T03:04:10.6Z", "shipping": nil}}), `"order_id":1003,`)
	files["dsql.ndjson"] = lines(
		d[0].Data, d[1].Data, d[2].Data, d[4].Data, d[5].Data,
		d[11].Data, d[9].Data, // fragments 2 and 0 before their main record
		d[6].Data, d[7].Data,
		d[13].Data, d[3].Data, // tx5 before tx2 for orders 1001
		[]byte(`{"type":"full","op":"c","before":null,"after":{"order_id":1003,"customer_id":"c-9"`),
		d[8].Data, d[10].Data, d[12].Data,
		d[5].Data, // duplicate of the insert of 1002, after its delete
		missingKey,
	)

	// Kinesis get-records: the DSQL records of tx1-tx3, one shard, in order.
	files["kinesis-get-records.json"] = KinesisGetRecords(d[:8], 0, 0, ExampleBase.Add(300*time.Millisecond))

	// Debezium: 0-2 snapshot reads (tx1); 3 orders 1001 paid, 4 c-2,
	// 5 orders 1002 (tx2); 6 delete 1002, 7 tombstone, 8 items [1001,2] (tx3);
	// 9 c-1 (tx4); 10 items [1001,1] qty 3, 11 orders 1001 shipped (tx5).
	small := ExampleHistory(false)
	o := EncodeOptions{Tombstones: true}
	plain := EncodeDebezium(small, false, o)
	env := EncodeDebezium(small, true, o)
	missingOp := mustCut(examplePoison(FormatDebezium, false, Change{Table: TableOrderItems, Op: change.Insert, Row: map[string]any{
		"order_id": json.Number("1001"), "line_no": json.Number("3"), "sku": "SKU-3", "qty": json.Number("1"), "unit_price": json.Number("1.00")}}),
		`"op":"c",`)
	files["debezium.ndjson"] = lines(
		env[0].Data, env[1].Data, plain[2].Data,
		plain[4].Data, env[5].Data,
		plain[6].Data, plain[7].Data, plain[8].Data,
		env[9].Data,
		env[11].Data, plain[10].Data,
		plain[3].Data, // tx2's update of orders 1001 after tx5's: stale
		plain[3].Data, // and again: a duplicate
		missingOp,
	)

	// DMS: 0-2 load (tx1); 3 orders 1001 paid, 4 c-2, 5 orders 1002 (tx2);
	// 6 delete 1002, 7 items [1001,2] (tx3); 8 c-1 (tx4); 9 items [1001,1]
	// qty 3, 10 orders 1001 shipped (tx5).
	m := EncodeDMS(small, EncodeOptions{})
	files["dms.ndjson"] = lines(
		dmsControl(small.Table(TableOrders), DMSTimestamp(&small.Events()[0])),
		m[0].Data, m[1].Data, m[2].Data,
		m[4].Data, m[5].Data, m[6].Data, m[7].Data, m[8].Data,
		m[10].Data, m[3].Data, // tx5 before tx2 for orders 1001
		m[9].Data,
		m[5].Data, // duplicate of the insert of 1002, after its delete
	)

	// DynamoDB: c-1 and orders 1001 (tx1), orders 1001 paid and 1002 (tx2),
	// 1002 removed (tx3), 1001 shipped (tx5).
	y := EncodeDynamoDB(small, EncodeOptions{})
	files["dynamodb-lambda-event.json"] = DynamoDBLambdaEvent([]Record{y[0], y[1], y[3], y[5], y[6], y[10]})
	return files
}
