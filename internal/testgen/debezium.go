package testgen

import (
	"encoding/base64"
	"encoding/json"
	"math/big"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
)

// Debezium constants of the generated connector.
const (
	debeziumTopicPrefix = "pg"
	debeziumLSNBase     = 33_554_432
	debeziumTxBase      = 700
)

// debeziumEncoder renders Debezium PostgreSQL connector records:
//
//	{"before":…,"after":…,"source":{"version":"2.7.0.Final","connector":"postgresql",
//	 "name":"pg","ts_ms":…,"ts_us":…,"ts_ns":…,"snapshot":"false","db":"app",
//	 "sequence":"[…]","schema":"public","table":"…","txId":…,"lsn":…,"xmin":null},
//	 "transaction":null,"op":"c|u|d|r","ts_ms":…,"ts_us":…,"ts_ns":…}
//
// source.lsn orders changes: snapshot reads share the snapshot LSN, streamed
// changes have strictly increasing LSNs. Updates and deletes carry the full
// before image (REPLICA IDENTITY FULL). The Kafka key is the key columns as
// an object.
//
// Without the schema envelope, decimals are JSON numbers, JSON columns nested
// objects and timestamps strings: a decoder returns them unchanged. With the
// envelope the logical types are Debezium's defaults: Decimal as base64
// two's-complement bytes with the scale in the schema, io.debezium.data.Json
// as a string holding the JSON text, ZonedTimestamp as a string and
// MicroTimestamp as microseconds since the epoch. The project's decoder
// turns Decimal back into decimal text with exactly scale fraction digits and
// MicroTimestamp into RFC 3339 UTC text with six fraction digits, and leaves
// Json as its text: ExpectedState gives the resulting state.
type debeziumEncoder struct {
	o       EncodeOptions
	rng     *rand.Rand
	shards  int
	schemas map[*Table][2][]byte // value and key schema JSON
	tx      int64
	lag     int64
	prevLSN int64
	buf     []byte
}

func newDebeziumEncoder(o EncodeOptions, rng *rand.Rand, shards int) *debeziumEncoder {
	return &debeziumEncoder{o: o, rng: rng, shards: shards, schemas: map[*Table][2][]byte{}}
}

func (d *debeziumEncoder) encode(dst []Record, e *Event) []Record {
	if e.Tx != d.tx {
		d.tx = e.Tx
		d.lag = 2_000_000 + d.rng.Int64N(50_000_000)
	}
	lsn := int64(debeziumLSNBase)
	if e.Kind != KindSnapshot {
		lsn += e.Seq * 128
	}
	procNS := e.CommitNS + d.lag + int64(e.TxIndex)*1000
	schema := d.o.DebeziumSchema

	b := d.buf[:0]
	if schema {
		b = append(b, `{"schema":`...)
		b = append(b, d.schemaOf(e.Table)[0]...)
		b = append(b, `,"payload":`...)
	}
	b = append(b, `{"before":`...)
	b = d.appendRow(b, e.Table, e.Before, nil, schema)
	b = append(b, `,"after":`...)
	b = d.appendRow(b, e.Table, e.After, nil, schema)
	b = append(b, `,"source":{"version":"2.7.0.Final","connector":"postgresql","name":"`+debeziumTopicPrefix+`","ts_ms":`...)
	b = strconv.AppendInt(b, e.CommitNS/1e6, 10)
	b = append(b, `,"ts_us":`...)
	b = strconv.AppendInt(b, e.CommitNS/1e3, 10)
	b = append(b, `,"ts_ns":`...)
	b = strconv.AppendInt(b, e.CommitNS, 10)
	b = append(b, `,"snapshot":"`...)
	switch {
	case e.Kind != KindSnapshot:
		b = append(b, "false"...)
	case e.TxIndex == 0:
		b = append(b, "first"...)
	case e.TxIndex == e.TxSize-1:
		b = append(b, "last"...)
	default:
		b = append(b, "true"...)
	}
	b = append(b, `","db":"app","sequence":"[`...)
	if d.prevLSN == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, `\"`...)
		b = strconv.AppendInt(b, d.prevLSN, 10)
		b = append(b, `\"`...)
	}
	b = append(b, `,\"`...)
	b = strconv.AppendInt(b, lsn, 10)
	b = append(b, `\"]","schema":`...)
	b = appendString(b, e.Table.Schema)
	b = append(b, `,"table":`...)
	b = appendString(b, e.Table.Name)
	b = append(b, `,"txId":`...)
	b = strconv.AppendInt(b, debeziumTxBase+e.Tx, 10)
	b = append(b, `,"lsn":`...)
	b = strconv.AppendInt(b, lsn, 10)
	b = append(b, `,"xmin":null},"transaction":null,"op":"`...)
	b = append(b, string(e.Op)...)
	b = append(b, `","ts_ms":`...)
	b = strconv.AppendInt(b, procNS/1e6, 10)
	b = append(b, `,"ts_us":`...)
	b = strconv.AppendInt(b, procNS/1e3, 10)
	b = append(b, `,"ts_ns":`...)
	b = strconv.AppendInt(b, procNS, 10)
	b = append(b, '}')
	if schema {
		b = append(b, '}')
	}
	d.prevLSN = lsn
	rec := Record{Data: clone(b), Key: d.key(e), Shard: keyShard(e, d.shards), Table: e.Table.Name, Seq: e.Seq, Kind: RecordChange}
	d.buf = b
	dst = append(dst, rec)
	if d.o.Tombstones && e.Op == change.Delete {
		dst = append(dst, Record{Data: []byte("null"), Key: rec.Key, Shard: rec.Shard, Table: rec.Table, Seq: e.Seq, Kind: RecordTombstone})
	}
	return dst
}

// key returns the Kafka message key.
func (d *debeziumEncoder) key(e *Event) []byte {
	var b []byte
	if d.o.DebeziumSchema {
		b = append(b, `{"schema":`...)
		b = append(b, d.schemaOf(e.Table)[1]...)
		b = append(b, `,"payload":`...)
	}
	b = d.appendRow(b, e.Table, e.Image(), e.Table.KeyIndexes(), d.o.DebeziumSchema)
	if d.o.DebeziumSchema {
		b = append(b, '}')
	}
	return b
}

// appendRow appends row, converting values to their logical-type wire form
// when schema is set.
func (d *debeziumEncoder) appendRow(b []byte, t *Table, row []any, cols []int, schema bool) []byte {
	if !schema || row == nil {
		return appendRowOrNull(b, t, row, cols)
	}
	if cols == nil {
		cols = allColumns(t)
	}
	b = append(b, '{')
	for n, i := range cols {
		if n > 0 {
			b = append(b, ',')
		}
		c := t.Columns[i]
		b = appendString(b, c.Name)
		b = append(b, ':')
		b = appendDebeziumValue(b, c, row[i])
	}
	return append(b, '}')
}

// appendDebeziumValue writes v as the Debezium JSON converter writes a value
// of c's logical type.
func appendDebeziumValue(b []byte, c Column, v any) []byte {
	if v == nil {
		return append(b, "null"...)
	}
	switch c.Type {
	case Decimal:
		return appendString(b, DebeziumDecimal(string(v.(json.Number)), c.Scale))
	case JSON:
		return appendString(b, string(appendValue(nil, v)))
	case TimestampMicros:
		t, err := time.Parse(time.RFC3339Nano, v.(string))
		if err != nil {
			panic("testgen: timestamp column " + c.Name + ": " + err.Error())
		}
		return strconv.AppendInt(b, t.UnixMicro(), 10)
	}
	return appendValue(b, v)
}

// DebeziumDecimal returns the base64 of the big-endian two's-complement
// unscaled value of the decimal text s at scale, as Debezium's
// org.apache.kafka.connect.data.Decimal carries it ("19.99", 2 -> "B88=").
func DebeziumDecimal(s string, scale int) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	whole, frac, _ := strings.Cut(s, ".")
	for len(frac) < scale {
		frac += "0"
	}
	frac = frac[:scale]
	u, ok := new(big.Int).SetString(whole+frac, 10)
	if !ok {
		panic("testgen: bad decimal " + s)
	}
	if neg {
		u.Neg(u)
	}
	return base64.StdEncoding.EncodeToString(twosComplement(u))
}

// twosComplement returns the minimal big-endian two's-complement bytes of n
// (Java's BigInteger.toByteArray).
func twosComplement(n *big.Int) []byte {
	if n.Sign() >= 0 {
		b := n.Bytes()
		if len(b) == 0 || b[0]&0x80 != 0 {
			b = append([]byte{0}, b...)
		}
		return b
	}
	// -n = ~(n-1): take |n|-1, invert, and pad with 0xff when needed.
	m := new(big.Int).Sub(new(big.Int).Neg(n), big.NewInt(1))
	b := m.Bytes()
	for i := range b {
		b[i] = ^b[i]
	}
	if len(b) == 0 || b[0]&0x80 == 0 {
		b = append([]byte{0xff}, b...)
	}
	return b
}

func allColumns(t *Table) []int {
	cols := make([]int, len(t.Columns))
	for i := range cols {
		cols[i] = i
	}
	return cols
}

// schemaOf returns the envelope (value) and key schema JSON of t.
func (d *debeziumEncoder) schemaOf(t *Table) [2][]byte {
	if s, ok := d.schemas[t]; ok {
		return s
	}
	s := [2][]byte{DebeziumValueSchema(t), DebeziumKeySchema(t)}
	d.schemas[t] = s
	return s
}

func appendFieldSchema(b []byte, c Column, optional bool) []byte {
	opt := strconv.FormatBool(optional)
	switch c.Type {
	case BigInt:
		b = append(b, `{"type":"int64","optional":`+opt...)
	case Int:
		b = append(b, `{"type":"int32","optional":`+opt...)
	case Decimal:
		b = append(b, `{"type":"bytes","optional":`+opt+`,"name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{"scale":"`+strconv.Itoa(c.Scale)+`","connect.decimal.precision":"18"}`...)
	case Text:
		b = append(b, `{"type":"string","optional":`+opt...)
	case Bool:
		b = append(b, `{"type":"boolean","optional":`+opt...)
	case Timestamp:
		b = append(b, `{"type":"string","optional":`+opt+`,"name":"io.debezium.time.ZonedTimestamp","version":1`...)
	case TimestampMicros:
		b = append(b, `{"type":"int64","optional":`+opt+`,"name":"io.debezium.time.MicroTimestamp","version":1`...)
	case JSON:
		b = append(b, `{"type":"string","optional":`+opt+`,"name":"io.debezium.data.Json","version":1`...)
	case TextSet:
		b = append(b, `{"type":"array","items":{"type":"string","optional":true},"optional":`+opt...)
	default:
		panic("testgen: no Debezium schema for " + c.Type.String())
	}
	b = append(b, `,"field":`...)
	b = appendString(b, c.Name)
	return append(b, '}')
}

func appendStructSchema(b []byte, t *Table, cols []int, name string, optional bool, field string) []byte {
	b = append(b, `{"type":"struct","fields":[`...)
	for n, i := range cols {
		if n > 0 {
			b = append(b, ',')
		}
		b = appendFieldSchema(b, t.Columns[i], t.Columns[i].Nullable)
	}
	b = append(b, `],"optional":`+strconv.FormatBool(optional)+`,"name":`...)
	b = appendString(b, name)
	if field != "" {
		b = append(b, `,"field":`...)
		b = appendString(b, field)
	}
	return append(b, '}')
}

const debeziumSourceSchema = `{"type":"struct","fields":[` +
	`{"type":"string","optional":false,"field":"version"},` +
	`{"type":"string","optional":false,"field":"connector"},` +
	`{"type":"string","optional":false,"field":"name"},` +
	`{"type":"int64","optional":false,"field":"ts_ms"},` +
	`{"type":"string","optional":true,"name":"io.debezium.data.Enum","version":1,"parameters":{"allowed":"true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"},"default":"false","field":"snapshot"},` +
	`{"type":"string","optional":false,"field":"db"},` +
	`{"type":"string","optional":true,"field":"sequence"},` +
	`{"type":"int64","optional":true,"field":"ts_us"},` +
	`{"type":"int64","optional":true,"field":"ts_ns"},` +
	`{"type":"string","optional":false,"field":"schema"},` +
	`{"type":"string","optional":false,"field":"table"},` +
	`{"type":"int64","optional":true,"field":"txId"},` +
	`{"type":"int64","optional":true,"field":"lsn"},` +
	`{"type":"int64","optional":true,"field":"xmin"}` +
	`],"optional":false,"name":"io.debezium.connector.postgresql.Source","field":"source"}`

const debeziumTxSchema = `{"type":"struct","fields":[` +
	`{"type":"string","optional":false,"field":"id"},` +
	`{"type":"int64","optional":false,"field":"total_order"},` +
	`{"type":"int64","optional":false,"field":"data_collection_order"}` +
	`],"optional":true,"name":"event.block","version":1,"field":"transaction"}`

// DebeziumValueSchema returns the Kafka Connect JSON schema of t's change
// envelope, as the "schema" member of a value with schemas enabled.
func DebeziumValueSchema(t *Table) []byte {
	prefix := debeziumTopicPrefix + "." + t.Schema + "." + t.Name
	cols := allColumns(t)
	b := []byte(`{"type":"struct","fields":[`)
	b = appendStructSchema(b, t, cols, prefix+".Value", true, "before")
	b = append(b, ',')
	b = appendStructSchema(b, t, cols, prefix+".Value", true, "after")
	b = append(b, ","+debeziumSourceSchema+","+debeziumTxSchema+
		`,{"type":"string","optional":false,"field":"op"}`+
		`,{"type":"int64","optional":true,"field":"ts_ms"}`+
		`,{"type":"int64","optional":true,"field":"ts_us"}`+
		`,{"type":"int64","optional":true,"field":"ts_ns"}],"optional":false,"name":`...)
	b = appendString(b, prefix+".Envelope")
	return append(b, `,"version":2}`...)
}

// DebeziumKeySchema returns the Kafka Connect JSON schema of t's message key.
func DebeziumKeySchema(t *Table) []byte {
	return appendStructSchema(nil, t, t.KeyIndexes(), debeziumTopicPrefix+"."+t.Schema+"."+t.Name+".Key", false, "")
}

// DebeziumTopic returns the Kafka topic of t's changes ("pg.public.orders").
func DebeziumTopic(t *Table) string {
	return debeziumTopicPrefix + "." + t.Schema + "." + t.Name
}

// ExpectedState returns the state that decoding the records of format f
// (encoded with o) yields under the project's decoder contracts
// (docs/formats), given the history's final state s over tables. It is s,
// except with the Debezium schema envelope: io.debezium.data.Json columns
// stay the JSON text the record carries (the decoder converts only temporal
// and decimal types), and MicroTimestamp columns come back with exactly six
// fraction digits.
func ExpectedState(s State, tables []*Table, f Format, o EncodeOptions) State {
	if f != FormatDebezium || !o.DebeziumSchema {
		return s
	}
	out := make(State, len(s))
	for _, t := range tables {
		rows, ok := s[t.Name]
		if !ok {
			continue
		}
		conv := make(map[string]func(any) any)
		for _, c := range t.Columns {
			switch c.Type {
			case JSON:
				conv[c.Name] = func(v any) any { return string(appendValue(nil, v)) }
			case TimestampMicros:
				conv[c.Name] = func(v any) any {
					ts, err := time.Parse(time.RFC3339Nano, v.(string))
					if err != nil {
						panic("testgen: timestamp column: " + err.Error())
					}
					return ts.UTC().Format("2006-01-02T15:04:05.000000Z")
				}
			}
		}
		r := make(map[string]map[string]any, len(rows))
		for id, row := range rows {
			nr := make(map[string]any, len(row))
			for col, v := range row {
				if fn := conv[col]; fn != nil && v != nil {
					v = fn(v)
				}
				nr[col] = v
			}
			r[id] = nr
		}
		out[t.Name] = r
	}
	return out
}

// FinalFor returns ExpectedState of h's final state for format f and o.
func (h *History) FinalFor(f Format, o EncodeOptions) State {
	return ExpectedState(h.Final(), h.Tables, f, o)
}
