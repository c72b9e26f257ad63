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
