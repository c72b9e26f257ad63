package sinktest

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/cdcflow/cdcflow/internal/change"
)

// Stream builds events tersely, as one stream partition delivers them: each
// event gets the next offset of Source/Partition.
type Stream struct {
	Source    string
	Partition string
	Schema    string // the events' source schema
	offset    int
}

// NewStream returns a stream of the given source and partition.
func NewStream(source, partition string) *Stream {
	return &Stream{Source: source, Partition: partition, Schema: "public"}
}

// next returns the position of the next record.
func (s *Stream) next() change.Position {
	s.offset++
	return change.Position{Source: s.Source, Partition: s.Partition, Offset: strconv.Itoa(s.offset)}
}

// Put is an insert (op c) of after into table with record_id key, committed
// at ns; after is a JSON object. The key column is "id".
func (s *Stream) Put(table, key string, ns int64, after string) change.Event {
	return s.event(change.Insert, table, []string{"id"}, key, ns, nil, json.RawMessage(after))
}

// Update is like Put with op u.
func (s *Stream) Update(table, key string, ns int64, after string) change.Event {
	return s.event(change.Update, table, []string{"id"}, key, ns, nil, json.RawMessage(after))
}

// Delete is a delete of record_id key committed at ns; its before image
// holds only the key, as DSQL sends it.
func (s *Stream) Delete(table, key string, ns int64) change.Event {
	before, _ := json.Marshal(map[string]string{"id": key})
	return s.event(change.Delete, table, []string{"id"}, key, ns, before, nil)
}

// Event builds any event; it takes the next position.
func (s *Stream) event(op change.Op, table string, keyCols []string, key string, ns int64, before, after json.RawMessage) change.Event {
	pos := s.next()
	raw := fmt.Sprintf(`{"op":%q,"table":%q,"key":%q,"ts_ns":%d}`, op, table, key, ns)
	return change.Event{
		Schema: s.Schema, Table: table, Op: op, KeyColumns: keyCols, Key: key,
		Before: before, After: after,
		Order:    change.Order{CommitNS: ns},
		TxID:     "tx" + strconv.FormatInt(ns, 10),
		Position: pos,
		Raw:      []byte(raw),
	}
}

// Composite is an insert with a composite key (key columns and their JSON
// values, in order), whose record_id is built as decoders build it.
func (s *Stream) Composite(table string, keyCols []string, keyVals []string, ns int64, after string) change.Event {
	vals := make([]json.RawMessage, len(keyVals))
	for i, v := range keyVals {
		vals[i] = json.RawMessage(v)
	}
	key, err := change.RecordID(keyCols, vals)
	if err != nil {
		panic(err)
	}
	return s.event(change.Insert, table, keyCols, key, ns, nil, json.RawMessage(after))
}

// Redeliver returns e as delivered again later: same change, next position.
func (s *Stream) Redeliver(e change.Event) change.Event {
	e.Position = s.next()
	return e
}

// Checkpoint is the checkpoint after the last delivered record.
func (s *Stream) Checkpoint() change.Checkpoint {
	p := change.Position{Source: s.Source, Partition: s.Partition, Offset: strconv.Itoa(s.offset)}
	return change.Checkpoint{Source: s.Source, Partition: s.Partition, Applied: p}
}

// Batch bundles events with the stream's current checkpoint.
func (s *Stream) Batch(events ...change.Event) *change.Batch {
	return &change.Batch{Events: events, Checkpoints: []change.Checkpoint{s.Checkpoint()}}
}

// SkipApplied drops the events a pipeline would skip on redelivery: those at
// or before a stored checkpoint of their partition (and not held).
func SkipApplied(b *change.Batch, cps []change.Checkpoint) *change.Batch {
	out := &change.Batch{Checkpoints: b.Checkpoints}
	for _, e := range b.Events {
		skip := false
		for _, c := range cps {
			if c.Source == e.Position.Source && c.Partition == e.Position.Partition && !c.Held &&
				change.ComparePosition(e.Position, c.Applied) <= 0 {
				skip = true
			}
		}
		if !skip {
			out.Events = append(out.Events, e)
		}
	}
	return out
}
