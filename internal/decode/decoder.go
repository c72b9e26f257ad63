package decode

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/decode/debezium"
	"github.com/cdcflow/cdcflow/internal/decode/dms"
	"github.com/cdcflow/cdcflow/internal/decode/dsql"
	"github.com/cdcflow/cdcflow/internal/decode/dynamodb"
)

// Defaults for Options.
const (
	DefaultMaxFragmentBytes = 64 << 20
	DefaultFragmentTimeout  = 5 * time.Minute
)

// Decoder decodes raw records of one pipeline. See the contract in decode.go.
type Decoder struct {
	format string
	keys   *change.Keys
	dsql   *dsql.Decoder
	stats  Stats
}

// New returns a Decoder for o.
func New(o Options) (*Decoder, error) {
	format := o.Format
	if format == "" {
		format = FormatAuto
	}
	switch format {
	case FormatAuto, FormatDSQL, FormatDebezium, FormatDMS, FormatDynamoDB:
	default:
		return nil, fmt.Errorf("decode.format: %q is not one of auto, dsql, debezium, dms, dynamodb", o.Format)
	}
	maxBytes := o.MaxFragmentBytes
	if maxBytes <= 0 {
		maxBytes = DefaultMaxFragmentBytes
	}
	timeout := o.FragmentTimeout
	if timeout <= 0 {
		timeout = DefaultFragmentTimeout
	}
	return &Decoder{
		format: format,
		keys:   o.Keys,
		dsql:   dsql.NewDecoder(o.Keys, maxBytes, timeout),
		stats:  Stats{Skipped: map[string]int64{}, Dead: map[string]int64{}},
	}, nil
}

// Decode decodes one raw record, which may be an envelope of many, and
// appends events and dead letters to out. It never fails: a record that
// cannot become an event is a dead letter.
func (d *Decoder) Decode(r change.Raw, now time.Time, out *Output) {
	items, ok := unwrap(r)
	if !ok {
		d.decodeOne(r, now, out)
		return
	}
	for _, it := range items {
		if it.err != nil {
			d.stats.Records++
			d.dead(out, it.raw, "", it.err)
			continue
		}
		d.decodeOne(it.raw, now, out)
	}
}

func (d *Decoder) decodeOne(r change.Raw, now time.Time, out *Output) {
	d.stats.Records++
	format := d.format
	if format == FormatAuto {
		format = Detect(r.Data)
		if format == "" {
			d.dead(out, r, "", &change.Poison{Reason: change.ReasonUnknownFormat,
				Detail: "record matches none of dsql, debezium, dms, dynamodb" + jsonHint(r.Data)})
			return
		}
	}
	n := len(out.Events)
	var err error
	switch format {
	case FormatDSQL:
		out.Events, err = d.dsql.Decode(out.Events, r, now)
		d.takeDSQLDead(out)
	case FormatDebezium:
		out.Events, err = debezium.Decode(out.Events, r, d.keys)
	case FormatDMS:
		out.Events, err = dms.Decode(out.Events, r, d.keys)
	case FormatDynamoDB:
		out.Events, err = dynamodb.Decode(out.Events, r, d.keys)
	}
	d.stats.Events += int64(len(out.Events) - n)
	if err == nil {
		return
	}
	var skip *change.Skip
	var poison *change.Poison
	switch {
	case errors.As(err, &skip):
		if skip.Reason != change.SkipFragment {
			d.stats.Skipped[skip.Reason]++
		}
	case errors.As(err, &poison):
		d.dead(out, r, format, poison)
	default:
		d.dead(out, r, format, &change.Poison{Reason: change.ReasonInvalidValue, Detail: err.Error()})
	}
}

// jsonHint explains the most common reason a record is unrecognised.
func jsonHint(data []byte) string {
	t := bytes.TrimSpace(data)
	if len(t) == 0 || t[0] != '{' {
		return " (not a JSON object)"
	}
	return ""
}

func (d *Decoder) dead(out *Output, r change.Raw, format string, p *change.Poison) {
	d.stats.Dead[p.Reason]++
	out.Dead = append(out.Dead, change.DeadLetter{
		Reason: p.Reason, Detail: p.Error(), Format: format, Position: r.Position, Raw: r.Data,
	})
}

func (d *Decoder) takeDSQLDead(out *Output) {
	for _, dl := range d.dsql.TakeDead() {
		d.stats.Dead[dl.Reason]++
		out.Dead = append(out.Dead, dl)
	}
}

// Expire dead-letters held DSQL fragment sets older than the timeout.
func (d *Decoder) Expire(now time.Time, out *Output) {
	for _, dl := range d.dsql.Expire(now) {
		d.stats.Dead[dl.Reason]++
		out.Dead = append(out.Dead, dl)
	}
}

// Drain dead-letters everything still held; call it at end of input.
func (d *Decoder) Drain(out *Output) {
	for _, dl := range d.dsql.Drain() {
		d.stats.Dead[dl.Reason]++
		out.Dead = append(out.Dead, dl)
	}
}

// OldestHeld returns the oldest position held for reassembly in a partition.
func (d *Decoder) OldestHeld(source, partition string) (change.Position, bool) {
	return d.dsql.OldestHeld(source, partition)
}

// RememberCompleted tells the decoder the chunk ids of oversized DSQL
// records whose sets were completed and stored before it started (see
// sink.ChunkStore): their pieces, re-read after a restart or redelivered
// late, are dropped as duplicates instead of being held again.
func (d *Decoder) RememberCompleted(ids []string) { d.dsql.RememberCompleted(ids) }

// Park hands over the pieces of DSQL sets held since before (their first
// piece arrived earlier) and still incomplete, for a sink.PieceStore; they
// are no longer held, and OldestHeld no longer counts them.
func (d *Decoder) Park(before time.Time) []change.Piece { return d.dsql.Park(before) }

// HeldSince returns when the first piece of the oldest held DSQL set
// arrived (the time passed to Decode); false when nothing is held.
func (d *Decoder) HeldSince() (time.Time, bool) { return d.dsql.HeldSince() }

// Reassemble decodes the parked pieces of complete sets (read back from a
// sink.PieceStore) with a decoder of its own, so they neither meet this
// decoder's held pieces nor count in its statistics, and appends the
// events, marked Parked, and the dead letters of invalid pieces to out.
func (d *Decoder) Reassemble(pieces []change.Piece, now time.Time, out *Output) {
	fresh := dsql.NewDecoder(d.keys, math.MaxInt64, DefaultFragmentTimeout)
	ne := len(out.Events)
	for _, p := range pieces {
		var err error
		out.Events, err = fresh.Decode(out.Events, p.Raw, now)
		var poison *change.Poison
		if errors.As(err, &poison) {
			out.Dead = append(out.Dead, change.DeadLetter{Reason: poison.Reason, Detail: poison.Error(),
				Format: FormatDSQL, Position: p.Raw.Position, Raw: p.Raw.Data})
		}
		out.Dead = append(out.Dead, fresh.TakeDead()...)
	}
	// A set still incomplete here stays parked until it completes or the
	// sink expires it: no dead letter for it now.
	for i := ne; i < len(out.Events); i++ {
		out.Events[i].Parked = true
	}
}

// Stats returns a snapshot of the counters.
func (d *Decoder) Stats() Stats {
	s := d.stats
	s.Skipped = cloneCounts(d.stats.Skipped)
	s.Dead = cloneCounts(d.stats.Dead)
	s.UnknownOps = d.dsql.UnknownOps
	s.Held = int64(d.dsql.Asm.HeldCount())
	return s
}

func cloneCounts(m map[string]int64) map[string]int64 {
	c := make(map[string]int64, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// Detect returns the format of one record, or "" when none matches. A bare
// JSON null is a Debezium tombstone.
func Detect(data []byte) string {
	t := bytes.TrimSpace(data)
	switch {
	case len(t) == 0 || string(t) == "null":
		return FormatDebezium
	case dynamodb.Detect(t):
		return FormatDynamoDB
	case dms.Detect(t):
		return FormatDMS
	case dsql.Detect(t):
		return FormatDSQL
	case debezium.Detect(t):
		return FormatDebezium
	}
	return ""
}
