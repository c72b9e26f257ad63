package testgen

import (
	"math/rand/v2"
	"strconv"
	"time"
)

// DMS constants of the generated task.
const dmsTxBase = 4000

// DMSTimestampLayout is the layout of DMS metadata.timestamp.
const DMSTimestampLayout = "2006-01-02T15:04:05.000000Z"

// dmsEncoder renders AWS DMS JSON records (Kinesis and Kafka targets):
//
//	{"data":{…row…},"metadata":{"timestamp":"2024-01-02T03:04:05.123456Z",
//	 "record-type":"data","operation":"insert|update|delete|load",
//	 "partition-key-type":"schema-table","schema-name":"public",
//	 "table-name":"…","transaction-id":123}}
//
// DMS timestamps have microsecond resolution and carry no sequence, so the
// encoder gives each change of a transaction its own microsecond: commit
// time plus TxIndex µs (the generator leaves room for it). Deletes carry the
// full old row in data. Snapshot reads are "load" records without a
// transaction id.
type dmsEncoder struct {
	o      EncodeOptions
	rng    *rand.Rand
	shards int
	seen   map[string]bool
	buf    []byte
}

var dmsOps = map[Kind]string{
	KindInsert: "insert", KindReinsert: "insert", KindKeyInsert: "insert",
	KindUpdate: "update", KindDelete: "delete", KindKeyDelete: "delete", KindSnapshot: "load",
}

// DMSTimestamp returns the metadata.timestamp the encoder gives e.
func DMSTimestamp(e *Event) string {
	us := e.CommitNS/1e3 + int64(e.TxIndex)
	return time.UnixMicro(us).UTC().Format(DMSTimestampLayout)
}

func (d *dmsEncoder) encode(dst []Record, e *Event) []Record {
	shard := keyShard(e, d.shards)
	ts := DMSTimestamp(e)
	if d.o.ControlRecords && !d.seen[e.Table.Name] {
		d.seen[e.Table.Name] = true
		dst = append(dst, Record{Data: dmsControl(e.Table, ts), Shard: shard, Table: e.Table.Name, Kind: RecordControl})
	}
	b := append(d.buf[:0], `{"data":`...)
	b = appendRow(b, e.Table, e.Image(), nil)
	b = append(b, `,"metadata":{"timestamp":"`...)
	b = append(b, ts...)
	b = append(b, `","record-type":"data","operation":"`...)
	b = append(b, dmsOps[e.Kind]...)
	b = append(b, `","partition-key-type":"schema-table","schema-name":`...)
	b = appendString(b, e.Table.Schema)
	b = append(b, `,"table-name":`...)
	b = appendString(b, e.Table.Name)
	if e.Kind != KindSnapshot {
		b = append(b, `,"transaction-id":`...)
		b = strconv.AppendInt(b, dmsTxBase+e.Tx, 10)
	}
	b = append(b, "}}"...)
	d.buf = b
	return append(dst, Record{Data: clone(b), Shard: shard, Table: e.Table.Name, Seq: e.Seq, Kind: RecordChange})
}

// dmsControl returns a create-table control record for t.
func dmsControl(t *Table, ts string) []byte {
	b := []byte(`{"control":{"table-def":{"columns":{`)
	for i, c := range t.Columns {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, c.Name)
		b = append(b, `:{"type":`...)
		b = appendString(b, dmsType(c))
		b = append(b, `,"nullable":`...)
		b = strconv.AppendBool(b, c.Nullable)
		b = append(b, '}')
	}
	b = append(b, `},"primary-key":[`...)
	for i, k := range t.Key {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
	}
	b = append(b, `]}},"metadata":{"timestamp":"`...)
	b = append(b, ts...)
	b = append(b, `","record-type":"control","operation":"create-table","partition-key-type":"task-id","schema-name":`...)
	b = appendString(b, t.Schema)
	b = append(b, `,"table-name":`...)
	b = appendString(b, t.Name)
	return append(b, "}}"...)
}

func dmsType(c Column) string {
	switch c.Type {
	case BigInt:
		return "INT8"
	case Int:
		return "INT4"
	case Decimal:
		return "NUMERIC"
	case Bool:
		return "BOOLEAN"
	case Timestamp, TimestampMicros:
		return "DATETIME"
	case JSON:
		return "NCLOB"
	}
	return "STRING"
}
