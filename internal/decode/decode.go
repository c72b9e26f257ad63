// Package decode turns raw records into change events: it unwraps envelopes
// (Lambda Kinesis/MSK/DynamoDB events, `aws kinesis get-records` output),
// detects the format per record, calls the format's decoder, reassembles DSQL
// oversized records, and turns every failure into a dead letter.
package decode

import (
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
)

// Formats accepted by Options.Format.
const (
	FormatAuto     = "auto"
	FormatDSQL     = "dsql"
	FormatDebezium = "debezium"
	FormatDMS      = "dms"
	FormatDynamoDB = "dynamodb"
)

// Options configure a Decoder.
type Options struct {
	Format           string        // one of the Format constants; "" means auto
	Keys             *change.Keys  // key columns per table
	MaxFragmentBytes int64         // memory bound for held DSQL fragments; 0 means 64 MiB
	FragmentTimeout  time.Duration // held fragments older than this are dead-lettered; 0 means 5m
}

// Output collects what decoding produced. Decoders append to it; the caller
// resets it between batches.
type Output struct {
	Events []change.Event
	Dead   []change.DeadLetter
}

// Reset empties o, keeping its capacity.
func (o *Output) Reset() {
	clear(o.Events)
	o.Events = o.Events[:0]
	clear(o.Dead)
	o.Dead = o.Dead[:0]
}

// Stats counts what a Decoder saw, for summaries and metrics.
type Stats struct {
	Records    int64            // raw records given to Decode (envelopes count once per inner record)
	Events     int64            // events emitted
	Skipped    map[string]int64 // records deliberately skipped, by reason (tombstones, control records)
	Dead       map[string]int64 // dead letters, by reason
	UnknownOps int64            // DSQL records with an unrecognised op, applied as upserts
	Held       int64            // DSQL pieces currently held for reassembly
}

// The Decoder's methods (New, Decode, Expire, Drain, OldestHeld,
// RememberCompleted, Stats) are
// in decoder.go. The contract:
//
//	func New(o Options) (*Decoder, error)
//	// Decode decodes one raw record (possibly an envelope of many) and
//	// appends events and dead letters to out. It never fails: a bad record
//	// is a dead letter. now drives fragment timeouts.
//	func (d *Decoder) Decode(r change.Raw, now time.Time, out *Output)
//	// Expire dead-letters held DSQL fragment sets older than the timeout.
//	func (d *Decoder) Expire(now time.Time, out *Output)
//	// Drain dead-letters everything still held (end of input).
//	func (d *Decoder) Drain(out *Output)
//	// OldestHeld returns the oldest held position in a partition: the
//	// checkpoint must not pass it.
//	func (d *Decoder) OldestHeld(source, partition string) (change.Position, bool)
//	// RememberCompleted marks chunk ids of DSQL sets stored before this
//	// decoder started as completed (sink.ChunkStore).
//	func (d *Decoder) RememberCompleted(ids []string)
//	// Park and Reassemble hand held DSQL pieces to a sink.PieceStore and
//	// complete sets from pieces read back from it.
//	func (d *Decoder) Park(before time.Time) []change.Piece
//	func (d *Decoder) Reassemble(pieces []change.Piece, now time.Time, out *Output)
//	func (d *Decoder) Stats() Stats
//
// A Decoder is not safe for concurrent use.
