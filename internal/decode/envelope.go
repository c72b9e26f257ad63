package decode

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/cdcflow/cdcflow/internal/change"
)

// An envelope is a container of records that transports and tools wrap
// around the change records themselves:
//
//   - a Lambda event from Kinesis: {"Records":[{"kinesis":{"data":"<base64>",…},…}]}
//   - a Lambda event from DynamoDB Streams: {"Records":[{"eventSource":"aws:dynamodb","dynamodb":{…},…}]}
//   - a Lambda event from MSK: {"eventSource":"aws:kafka","records":{"topic-0":[{"key":"<b64>","value":"<b64>",…}]}}
//   - `aws kinesis get-records` output: {"Records":[{"Data":"<base64>","SequenceNumber":…}],"NextShardIterator":…}
//
// Inner records keep the outer position and get an envelope Index, so a file
// holding an envelope checkpoints by its own lines.

// envelopeItem is one record unwrapped from an envelope, or the error that
// stopped it from being unwrapped.
type envelopeItem struct {
	raw change.Raw
	err *change.Poison
}

// looksLikeEnvelope is a cheap filter run on every record before the exact
// check: only records mentioning a Records key can be envelopes.
func looksLikeEnvelope(data []byte) bool {
	return bytes.Contains(data, []byte(`"Records"`)) || bytes.Contains(data, []byte(`"records"`))
}

type lambdaRecord struct {
	Kinesis *struct {
		Data           *string `json:"data"`
		SequenceNumber string  `json:"sequenceNumber"`
	} `json:"kinesis"`
	EventSource string          `json:"eventSource"`
	Dynamodb    json.RawMessage `json:"dynamodb"`
	// aws kinesis get-records
	Data           *string `json:"Data"`
	SequenceNumber string  `json:"SequenceNumber"`
}

type mskRecord struct {
	Topic     string  `json:"topic"`
	Partition int64   `json:"partition"`
	Offset    int64   `json:"offset"`
	Key       *string `json:"key"`
	Value     *string `json:"value"`
}

type envelope struct {
	Records     json.RawMessage `json:"Records"`
	LowRecords  json.RawMessage `json:"records"`
	EventSource string          `json:"eventSource"`
	// Fields a change record has at its top level; an object that has any
	// of them is a change record, whatever else it holds.
	Op      json.RawMessage `json:"op"`
	Payload json.RawMessage `json:"payload"`
	Source  json.RawMessage `json:"source"`
	Meta    json.RawMessage `json:"metadata"`
	DDB     json.RawMessage `json:"dynamodb"`
}

// unwrap reports whether r is an envelope and, if so, returns its records.
func unwrap(r change.Raw) ([]envelopeItem, bool) {
	if !looksLikeEnvelope(r.Data) {
		return nil, false
	}
	var env envelope
	if err := json.Unmarshal(r.Data, &env); err != nil {
		return nil, false // not valid JSON: the format decoder reports it
	}
	if env.Op != nil || env.Payload != nil || env.Source != nil || env.Meta != nil || env.DDB != nil {
		return nil, false
	}
	switch {
	case env.Records != nil:
		return unwrapRecords(r, env.Records), true
	case env.LowRecords != nil && env.EventSource == "aws:kafka":
		return unwrapMSK(r, env.LowRecords), true
	}
	return nil, false
}

func inner(r change.Raw, i int, data []byte) change.Raw {
	pos := r.Position
	pos.Index, pos.Indexed = i, true
	return change.Raw{Data: data, Position: pos}
}

func unwrapRecords(r change.Raw, recs json.RawMessage) []envelopeItem {
	var list []json.RawMessage
	if err := json.Unmarshal(recs, &list); err != nil || list == nil {
		return []envelopeItem{{raw: r, err: change.Poisonf(change.ReasonInvalidEnvelope, "Records", "not an array of records: %s", errOrNull(err))}}
	}
	items := make([]envelopeItem, 0, len(list))
	for i, item := range list {
		var rec lambdaRecord
		raw := inner(r, i, item)
		if err := json.Unmarshal(item, &rec); err != nil {
			items = append(items, envelopeItem{raw: raw, err: change.Poisonf(change.ReasonInvalidEnvelope, fmt.Sprintf("Records[%d]", i), "%v", err)})
			continue
		}
		switch {
		case rec.Kinesis != nil:
			items = append(items, decodeB64(raw, rec.Kinesis.Data, fmt.Sprintf("Records[%d].kinesis.data", i)))
		case rec.Data != nil:
			items = append(items, decodeB64(raw, rec.Data, fmt.Sprintf("Records[%d].Data", i)))
		case rec.EventSource == "aws:dynamodb" || rec.Dynamodb != nil:
			items = append(items, envelopeItem{raw: raw}) // the record itself is the change record
		default:
			items = append(items, envelopeItem{raw: raw, err: change.Poisonf(change.ReasonInvalidEnvelope, fmt.Sprintf("Records[%d]", i), "record has neither kinesis.data, Data nor dynamodb")})
		}
	}
	return items
}

func unwrapMSK(r change.Raw, recs json.RawMessage) []envelopeItem {
	var byPartition map[string][]mskRecord
	if err := json.Unmarshal(recs, &byPartition); err != nil || byPartition == nil {
		return []envelopeItem{{raw: r, err: change.Poisonf(change.ReasonInvalidEnvelope, "records", "not a map of topic-partition to records: %s", errOrNull(err))}}
	}
	names := make([]string, 0, len(byPartition))
	for name := range byPartition {
		names = append(names, name)
	}
	sort.Strings(names) // deterministic order; within a partition, offsets order
	var items []envelopeItem
	i := 0
	for _, name := range names {
		for _, m := range byPartition[name] {
			raw := inner(r, i, nil)
			i++
			field := "records." + name + "[offset " + strconv.FormatInt(m.Offset, 10) + "]"
			if m.Value == nil { // a tombstone: the decoder counts it
				items = append(items, envelopeItem{raw: raw})
				continue
			}
			it := decodeB64(raw, m.Value, field+".value")
			if it.err == nil && m.Key != nil {
				key, err := base64.StdEncoding.DecodeString(*m.Key)
				if err != nil {
					it.err = change.Poisonf(change.ReasonInvalidEnvelope, field+".key", "invalid base64: %v", err)
				}
				it.raw.Key = key
			}
			items = append(items, it)
		}
	}
	return items
}

func decodeB64(raw change.Raw, s *string, field string) envelopeItem {
	if s == nil {
		return envelopeItem{raw: raw, err: change.Poisonf(change.ReasonInvalidEnvelope, field, "missing")}
	}
	data, err := base64.StdEncoding.DecodeString(strings.TrimSpace(*s))
	if err != nil {
		raw.Data = []byte(*s)
		return envelopeItem{raw: raw, err: change.Poisonf(change.ReasonInvalidEnvelope, field, "invalid base64: %v", err)}
	}
	raw.Data = data
	return envelopeItem{raw: raw}
}

// errOrNull describes why a records member is unusable: its decoding error,
// or null.
func errOrNull(err error) string {
	if err != nil {
		return err.Error()
	}
	return "it is null"
}
