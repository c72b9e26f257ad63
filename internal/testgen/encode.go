package testgen

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
)

// Format names a CDC record format.
type Format string

// The formats.
const (
	FormatDSQL     Format = "dsql"
	FormatDebezium Format = "debezium"
	FormatDMS      Format = "dms"
	FormatDynamoDB Format = "dynamodb"
)

// Formats lists every Format.
var Formats = []Format{FormatDSQL, FormatDebezium, FormatDMS, FormatDynamoDB}

// RecordKind says what a Record carries.
type RecordKind uint8

// The record kinds.
const (
	RecordChange    RecordKind = iota + 1 // one complete change
	RecordChunked                         // DSQL: the main record of an oversized change
	RecordFragment                        // DSQL: one piece of an oversized change's image
	RecordTombstone                       // Debezium: the "null" value after a delete
	RecordControl                         // DMS: a control record (create-table)
)

var recordKindNames = [...]string{"", "change", "chunked", "fragment", "tombstone", "control"}

// String returns the kind's name ("change", "fragment", ...).
func (k RecordKind) String() string {
	if int(k) < len(recordKindNames) && k != 0 {
		return recordKindNames[k]
	}
	return fmt.Sprintf("RecordKind(%d)", int(k))
}

// Record is one encoded record as a transport would deliver it.
type Record struct {
	Data      []byte     // the record (one JSON document; "null" for a tombstone)
	Key       []byte     // the Kafka message key (Debezium); nil for the other formats
	Shard     int        // the shard or partition it is delivered on, from 0
	Table     string     // source table, for topic routing
	Seq       int64      // Event.Seq of the change it carries; 0 for control records
	Kind      RecordKind // what it carries
	Duplicate bool       // a re-delivery: Data is the same bytes as an earlier record
}

// EncodeOptions control how a history becomes records. Every random choice
// is derived from the history seed and Seed, so output is reproducible.
type EncodeOptions struct {
	Seed          int64   // varies delivery of one history (shards, duplicates, order, ids)
	Shards        int     // shards or partitions; 0 means 1
	DupRatio      float64 // chance that a record is delivered a second time, later on the same shard
	ReorderWindow int     // per shard, records are held in a window of this size and released in random order; 0 or 1 keeps commit order

	// DSQL.
	FragmentBytes      int    // after images longer than this become a chunked record plus fragments of at most this many bytes; 0 never
	KeepChunksTogether bool   // a chunked record and its fragments share one shard (else each record picks a random shard)
	UpdateOp           string // op of updates: "c" (the preview's behaviour, default) or "u"

	// Debezium.
	DebeziumSchema bool // wrap key and value in the {"schema":…,"payload":…} envelope
	Tombstones     bool // a "null" record with the same key after every delete

	// DMS.
	ControlRecords bool // a create-table control record before each table's first change
}

// encoder renders events of one format. It sets Shard on every record.
type encoder interface {
	encode(dst []Record, e *Event) []Record
}

func newEncoder(f Format, seed int64, o EncodeOptions) (encoder, error) {
	rng := rand.New(rand.NewPCG(uint64(seed), mix(uint64(o.Seed), hashString(string(f)))))
	shards := max(o.Shards, 1)
	switch f {
	case FormatDSQL:
		if o.UpdateOp != "" && o.UpdateOp != "c" && o.UpdateOp != "u" {
			return nil, fmt.Errorf("encode dsql: update op %q is not c or u", o.UpdateOp)
		}
		return &dsqlEncoder{o: o, rng: rng, shards: shards, seed: uint64(seed)}, nil
	case FormatDebezium:
		return newDebeziumEncoder(o, rng, shards), nil
	case FormatDMS:
		return &dmsEncoder{o: o, rng: rng, shards: shards, seen: map[string]bool{}}, nil
	case FormatDynamoDB:
		return &dynamoEncoder{o: o, rng: rng, shards: shards, seed: uint64(seed)}, nil
	}
	return nil, fmt.Errorf("encode: unknown format %q", f)
}

// Stream generates the history for seed and opts and delivers its records in
// format f to emit, one at a time, without keeping the history: memory is
// bounded by the key space and the reorder windows. It returns the generator,
// whose Final is the expected state. The records equal those of encoding
// Generate(seed, opts) with the same options.
func Stream(seed int64, opts Options, f Format, o EncodeOptions, emit func(Record) error) (*Generator, error) {
	enc, err := newEncoder(f, seed, o)
	if err != nil {
		return nil, err
	}
	g := NewGenerator(seed, opts)
	d := newDeliverer(seed, o, emit)
	var recs []Record
	for {
		tx := g.Next()
		if tx == nil {
			break
		}
		for i := range tx {
			recs = enc.encode(recs[:0], &tx[i])
			for _, r := range recs {
				if err := d.push(r); err != nil {
					return g, err
				}
			}
		}
	}
	return g, d.flush()
}

// Encode renders h in format f with the delivery options of o.
func Encode(h *History, f Format, o EncodeOptions) ([]Record, error) {
	enc, err := newEncoder(f, h.Seed, o)
	if err != nil {
		return nil, err
	}
	var out, recs []Record
	d := newDeliverer(h.Seed, o, func(r Record) error { out = append(out, r); return nil })
	for i := range h.events {
		recs = enc.encode(recs[:0], &h.events[i])
		for _, r := range recs {
			_ = d.push(r) // the collector never fails
		}
	}
	_ = d.flush()
	return out, nil
}

func mustEncode(h *History, f Format, o EncodeOptions) []Record {
	recs, err := Encode(h, f, o)
	if err != nil {
		panic(err)
	}
	return recs
}

// EncodeDSQL renders h as Aurora DSQL CDC records. It panics on an invalid
// UpdateOp.
func EncodeDSQL(h *History, o EncodeOptions) []Record { return mustEncode(h, FormatDSQL, o) }

// EncodeDebezium renders h as Debezium PostgreSQL connector records, with
// the schema envelope when withSchema is true.
func EncodeDebezium(h *History, withSchema bool, o EncodeOptions) []Record {
	o.DebeziumSchema = withSchema
	return mustEncode(h, FormatDebezium, o)
}

// EncodeDMS renders h as AWS DMS JSON records (Kinesis/Kafka target).
func EncodeDMS(h *History, o EncodeOptions) []Record { return mustEncode(h, FormatDMS, o) }

// EncodeDynamoDB renders h as DynamoDB Streams records in the Lambda event
// record shape.
func EncodeDynamoDB(h *History, o EncodeOptions) []Record { return mustEncode(h, FormatDynamoDB, o) }

// deliverer applies duplicates and in-shard reordering, streaming.
type deliverer struct {
	rng     *rand.Rand
	dup     float64
	window  int
	windows [][]Record
	emit    func(Record) error
}

func newDeliverer(seed int64, o EncodeOptions, emit func(Record) error) *deliverer {
	return &deliverer{
		rng:     rand.New(rand.NewPCG(uint64(seed)^0x9e3779b97f4a7c15, mix(uint64(o.Seed), 0xde11))),
		dup:     o.DupRatio,
		window:  o.ReorderWindow,
		windows: make([][]Record, max(o.Shards, 1)),
		emit:    emit,
	}
}

func (d *deliverer) duplicate(r Record) (Record, bool) {
	if r.Duplicate || d.dup <= 0 || d.rng.Float64() >= d.dup {
		return Record{}, false
	}
	r.Duplicate = true
	return r, true
}

func (d *deliverer) push(r Record) error {
	if d.window <= 1 {
		if err := d.emit(r); err != nil {
			return err
		}
		if c, ok := d.duplicate(r); ok {
			return d.emit(c)
		}
		return nil
	}
	d.windows[r.Shard] = append(d.windows[r.Shard], r)
	for len(d.windows[r.Shard]) >= d.window {
		if err := d.release(r.Shard); err != nil {
			return err
		}
	}
	return nil
}

// release emits a random record of shard s's window; an original may leave a
// duplicate behind in the window.
func (d *deliverer) release(s int) error {
	w := d.windows[s]
	i := d.rng.IntN(len(w))
	r := w[i]
	w[i] = w[len(w)-1]
	w[len(w)-1] = Record{}
	d.windows[s] = w[:len(w)-1]
	if err := d.emit(r); err != nil {
		return err
	}
	if c, ok := d.duplicate(r); ok {
		d.windows[s] = append(d.windows[s], c)
	}
	return nil
}

func (d *deliverer) flush() error {
	for s := range d.windows {
		for len(d.windows[s]) > 0 {
			if err := d.release(s); err != nil {
				return err
			}
		}
	}
	return nil
}

// keyShard spreads records by table and key, like a partitioner hashing the
// message key.
func keyShard(e *Event, shards int) int {
	if shards <= 1 {
		return 0
	}
	return int(hashString(e.Table.Name+"\x00"+e.RecordID) % uint64(shards))
}

func hashString(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// mix is splitmix64 over a^b: a well-spread deterministic id from two numbers.
func mix(a, b uint64) uint64 {
	z := a ^ (b * 0x9e3779b97f4a7c15)
	z += 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// clone copies b into an exactly sized slice.
func clone(b []byte) []byte { return append(make([]byte, 0, len(b)), b...) }
