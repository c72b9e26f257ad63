package change

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Op is the kind of change.
type Op string

// The operations. Sources that cannot tell an insert from an update (DSQL in
// preview) use Insert for both; sinks treat Insert, Update and Read alike as
// "the row now has this state".
const (
	Insert Op = "c"
	Update Op = "u"
	Delete Op = "d"
	Read   Op = "r" // snapshot read
)

// Valid reports whether o is one of the four operations.
func (o Op) Valid() bool {
	return o == Insert || o == Update || o == Delete || o == Read
}

// Raw is one record exactly as a transport delivered it.
type Raw struct {
	Data     []byte   // the record's bytes (a message value, a file line, a Kinesis record)
	Key      []byte   // the Kafka message key; nil when the transport has none
	Position Position // where the record sits in its stream
}

// Event is one normalized row change.
type Event struct {
	Schema     string   // source schema or database; "" when the source has none
	Table      string   // source table, without schema
	Op         Op       // c, u, d or r
	KeyColumns []string // the key's columns, in order
	Key        string   // record_id (see package doc)
	Before     json.RawMessage
	After      json.RawMessage
	Order      Order
	TxID       string   // source transaction id; "" when unknown
	Position   Position // stream position of the record that completed the event
	Raw        []byte   // the record's bytes

	// ChunkID is, for an event reassembled from the pieces of an oversized
	// DSQL record, its set's chunk id; "" otherwise. Sinks that implement
	// sink.ChunkStore store it with the event, so a restarted decoder knows
	// the set was completed (see sink.ChunkStore).
	ChunkID string
	// Parked marks an event reassembled from pieces parked in the sink by
	// several processes (sink.PieceStore). Its Position is that of one of
	// the pieces, possibly of a partition another process reads: such an
	// event is stored at most once by its ChunkID, never filtered or
	// checkpointed by its Position.
	Parked bool
}

// Image returns the row image that describes the event: After, or Before for
// deletes.
func (e *Event) Image() json.RawMessage {
	if e.Op == Delete {
		return e.Before
	}
	return e.After
}

// Clone returns a copy of e that shares no memory with the input buffers.
func (e Event) Clone() Event {
	e.Before = cloneBytes(e.Before)
	e.After = cloneBytes(e.After)
	e.Raw = cloneBytes(e.Raw)
	e.KeyColumns = append([]string(nil), e.KeyColumns...)
	return e
}

func cloneBytes[T ~[]byte](b T) T {
	if b == nil {
		return nil
	}
	return append(T(nil), b...)
}

// QualifiedTable returns schema.table, or table when there is no schema.
func (e *Event) QualifiedTable() string {
	if e.Schema == "" {
		return e.Table
	}
	return e.Schema + "." + e.Table
}

// Order is an event's place in its source's commit order.
//
// Most sources are ordered by commit time first and then by their own
// sequence (DSQL: emission time; DynamoDB: SequenceNumber). Sources with a
// log position that totally orders commits (Debezium's Postgres LSN, MySQL
// binlog file/position) set LogFirst: their Seq then decides before the commit
// time, so a snapshot read taken late never beats a change streamed after
// the snapshot point.
type Order struct {
	CommitNS int64  // commit time, ns since the Unix epoch (never negative)
	Seq      string // the source's own sequence, sortable as bytes (see SortableUint); "" when none
	LogFirst bool   // Seq is a log position that decides before CommitNS
}

// Key returns the order as a string whose byte order is the commit order.
// Sinks store it and sort on it, so SQL and Go agree.
//
// Layout: "T" + SortableUint(CommitNS) + " " + Seq, or with LogFirst
// "L" + Seq + " " + SortableUint(CommitNS). Seq never contains bytes <= ' '.
func (o Order) Key() string {
	ts := SortableUint(uint64(max(o.CommitNS, 0)))
	if o.LogFirst {
		return "L" + o.Seq + " " + ts
	}
	return "T" + ts + " " + o.Seq
}

// CompareOrder compares two commit orders the way comparing their Keys would,
// without allocating.
func CompareOrder(a, b Order) int {
	if a.LogFirst != b.LogFirst {
		if a.LogFirst { // "L" > "T" is false: 'L' < 'T'
			return -1
		}
		return 1
	}
	if a.LogFirst {
		if c := compareSeq(a.Seq, b.Seq); c != 0 {
			return c
		}
		return cmpInt(a.CommitNS, b.CommitNS)
	}
	if c := cmpInt(a.CommitNS, b.CommitNS); c != 0 {
		return c
	}
	return strings.Compare(a.Seq, b.Seq)
}

// compareSeq compares Seq values as they compare inside Key, where each is
// followed by a space: a proper prefix sorts first because ' ' is lower than
// every byte Seq may contain.
func compareSeq(a, b string) int { return strings.Compare(a, b) }

func cmpInt(a, b int64) int {
	a, b = max(a, 0), max(b, 0)
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Compare orders two events: by commit order, then by stream position.
// Events of the same key from one source compare as their commits did.
func Compare(a, b *Event) int {
	if c := CompareOrder(a.Order, b.Order); c != 0 {
		return c
	}
	return ComparePosition(a.Position, b.Position)
}

// SameChange reports whether a and b describe the same source change (a
// duplicate delivery), whatever their stream positions.
func SameChange(a, b *Event) bool {
	return a.Table == b.Table && a.Schema == b.Schema && a.Key == b.Key &&
		a.Op == b.Op && CompareOrder(a.Order, b.Order) == 0
}

// SortableUint encodes n as decimal digits prefixed by the digit count as two
// digits ("0242" for 42), so byte order equals numeric order.
func SortableUint(n uint64) string {
	var buf [22]byte
	return string(AppendSortableUint(buf[:0], n))
}

// AppendSortableUint appends SortableUint(n) to dst.
func AppendSortableUint(dst []byte, n uint64) []byte {
	var digits [20]byte
	d := strconv.AppendUint(digits[:0], n, 10)
	dst = append(dst, byte('0'+len(d)/10), byte('0'+len(d)%10))
	return append(dst, d...)
}

// SortableDecimal encodes a non-negative decimal integer of any length (a
// Kinesis or DynamoDB sequence number) like SortableUint. It returns false if
// s is not all digits or is longer than 99 digits.
func SortableDecimal(s string) (string, bool) {
	s = strings.TrimLeft(s, "0")
	if s == "" {
		s = "0"
	}
	if len(s) > 99 {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return "", false
		}
	}
	return string([]byte{byte('0' + len(s)/10), byte('0' + len(s)%10)}) + s, true
}

// Position is where a record sits in its stream.
type Position struct {
	Source    string // file path, Kafka topic or Kinesis stream
	Partition string // "" for files; Kafka partition number; Kinesis shard id
	Offset    string // decimal: line number (from 1), Kafka offset, Kinesis sequence number
	Index     int    // 0-based record index inside an envelope (a Lambda event, a KPL aggregate); 0 when none
	Indexed   bool   // Index is meaningful
}

// String renders the position for people: "file.ndjson:42", "file:42#3",
// "topic[3]@1234", "stream[shardId-000000000001]@4959...".
func (p Position) String() string {
	var b strings.Builder
	b.WriteString(p.Source)
	if p.Partition != "" {
		b.WriteString("[")
		b.WriteString(p.Partition)
		b.WriteString("]@")
	} else if p.Offset != "" {
		b.WriteString(":")
	}
	b.WriteString(p.Offset)
	if p.Indexed {
		b.WriteString("#")
		b.WriteString(strconv.Itoa(p.Index))
	}
	return b.String()
}

// MarshalText renders the position as String does.
func (p Position) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// Sortable returns a string whose byte order is the stream order within one
// partition: SortableDecimal(Offset) then the envelope index.
func (p Position) Sortable() string {
	off, ok := SortableDecimal(p.Offset)
	if !ok {
		off = p.Offset
	}
	if p.Indexed {
		return off + "#" + SortableUint(uint64(p.Index))
	}
	return off
}

// ComparePosition orders positions by source, partition, numeric offset and
// envelope index.
func ComparePosition(a, b Position) int {
	if c := strings.Compare(a.Source, b.Source); c != 0 {
		return c
	}
	if c := strings.Compare(a.Partition, b.Partition); c != 0 {
		return c
	}
	if c := compareDecimal(a.Offset, b.Offset); c != 0 {
		return c
	}
	if a.Indexed != b.Indexed {
		if a.Indexed {
			return 1
		}
		return -1
	}
	return cmpInt(int64(a.Index), int64(b.Index))
}

// compareDecimal compares two non-negative decimal strings numerically.
func compareDecimal(a, b string) int {
	a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
	if len(a) != len(b) {
		return cmpInt(int64(len(a)), int64(len(b)))
	}
	return strings.Compare(a, b)
}

// Poison is a record that cannot become an event. It is permanent: retrying
// never helps. Reason is a short stable code used for counting.
type Poison struct {
	Reason string // e.g. ReasonInvalidJSON
	Field  string // the JSON path at fault, "" when none
	Detail string
}

// Common poison reasons. Decoders may add their own snake_case codes.
const (
	ReasonInvalidJSON     = "invalid_json"
	ReasonUnknownFormat   = "unknown_format"
	ReasonMissingKey      = "missing_key"
	ReasonMissingOp       = "missing_op"
	ReasonInvalidOp       = "invalid_op"
	ReasonMissingTable    = "missing_table"
	ReasonMissingTime     = "missing_timestamp"
	ReasonMissingImage    = "missing_image"
	ReasonInvalidValue    = "invalid_value"
	ReasonInvalidEnvelope = "invalid_envelope"
	ReasonFragmentTimeout = "fragment_timeout"
	ReasonFragmentLimit   = "fragment_memory_limit"
	ReasonFragmentInvalid = "fragment_invalid"
	ReasonSinkRejected    = "sink_rejected"
)

func (p *Poison) Error() string {
	msg := p.Reason
	if p.Field != "" {
		msg += " at " + p.Field
	}
	if p.Detail != "" {
		msg += ": " + p.Detail
	}
	return msg
}

// Poisonf returns a *Poison with a formatted detail.
func Poisonf(reason, field, format string, args ...any) *Poison {
	return &Poison{Reason: reason, Field: field, Detail: fmt.Sprintf(format, args...)}
}

// Skip marks a record that is deliberately not an event and not an error:
// a Debezium tombstone, a DMS control record. It is counted by Reason.
type Skip struct{ Reason string }

func (s *Skip) Error() string { return "skipped: " + s.Reason }

// Skip reasons.
const (
	SkipTombstone = "tombstone"
	SkipControl   = "control_record"
	SkipFragment  = "fragment_pending" // a piece held until its set is complete
)
