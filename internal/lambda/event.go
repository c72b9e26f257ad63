package lambda

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/cdcflow/cdcflow/internal/change"
)

// Event sources, as the eventSource field of a Lambda event names them.
const (
	SourceKinesis          = "aws:kinesis"
	SourceKafka            = "aws:kafka"        // Amazon MSK
	SourceSelfManagedKafka = "SelfManagedKafka" // self-managed Apache Kafka: same record shape as MSK
	SourceDynamoDB         = "aws:dynamodb"
)

// KafkaItemIdentifier is the itemIdentifier of a failed Kafka record in a
// partial batch response: "<topic>-<partition>" and the offset.
type KafkaItemIdentifier struct {
	Partition string `json:"partition"`
	Offset    int64  `json:"offset"`
}

// record is one record of a Lambda event with its native identity.
type record struct {
	raw    change.Raw
	id     any            // itemIdentifier: a sequence number string or a KafkaItemIdentifier; nil when unknown
	poison *change.Poison // the record could not be unwrapped: dead-letter raw as delivered
}

// event is a parsed Lambda event.
type event struct {
	source  string // one of the Source constants
	records []record
	// ordered reports whether positions of this event's records are stream
	// offsets processed in order per partition, so that a checkpoint at the
	// highest applied position is exact (Kinesis shards, Kafka partitions).
	ordered bool
}

// errUnknownEvent is returned for an event that is none of the supported
// kinds; the function fails and the event source mapping retries it.
var errUnknownEvent = errors.New("event is not a Kinesis, MSK/Kafka or DynamoDB Streams event")

type eventHead struct {
	EventSource string          `json:"eventSource"`
	Records     json.RawMessage `json:"Records"`
	LowRecords  json.RawMessage `json:"records"`
}

type recordHead struct {
	EventSource    string `json:"eventSource"`
	EventID        string `json:"eventID"`
	EventSourceARN string `json:"eventSourceARN"`
	Kinesis        *struct {
		Data           *string `json:"data"`
		SequenceNumber string  `json:"sequenceNumber"`
	} `json:"kinesis"`
	Dynamodb *struct {
		SequenceNumber string `json:"SequenceNumber"`
	} `json:"dynamodb"`
}

type kafkaRecord struct {
	Topic     string  `json:"topic"`
	Partition *int64  `json:"partition"`
	Offset    *int64  `json:"offset"`
	Key       *string `json:"key"`
	Value     *string `json:"value"`
}

// parseEvent splits a Lambda event into its records, each with the position
// and itemIdentifier of its source. A record that cannot be unwrapped is
// returned with a poison, never dropped; an event whose shape is unknown is
// an error.
func parseEvent(data []byte) (*event, error) {
	var head eventHead
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("parse event: %w", err)
	}
	switch {
	case head.EventSource == SourceKafka || head.EventSource == SourceSelfManagedKafka:
		return parseKafka(head.EventSource, head.LowRecords)
	case head.Records != nil:
		return parseRecords(head.Records)
	}
	return nil, errUnknownEvent
}

func parseRecords(data json.RawMessage) (*event, error) {
	var list []json.RawMessage
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("parse event: Records: %w", err)
	}
	ev := &event{records: make([]record, 0, len(list))}
	for i, item := range list {
		var h recordHead
		if err := json.Unmarshal(item, &h); err != nil {
			// Its source cannot be read either: position it by index.
			ev.records = append(ev.records, record{
				raw:    change.Raw{Data: item, Position: change.Position{Source: "lambda-event", Index: i, Indexed: true}},
				poison: change.Poisonf(change.ReasonInvalidEnvelope, fmt.Sprintf("Records[%d]", i), "%v", err),
			})
			continue
		}
		kind := h.EventSource
		if kind == "" {
			switch {
			case h.Kinesis != nil:
				kind = SourceKinesis
			case h.Dynamodb != nil:
				kind = SourceDynamoDB
			}
		}
		if ev.source == "" {
			ev.source = kind
		} else if kind != ev.source {
			return nil, fmt.Errorf("parse event: Records[%d]: eventSource %q in an event of %q records", i, h.EventSource, ev.source)
		}
		switch kind {
		case SourceKinesis:
			ev.records = append(ev.records, kinesisRecord(i, item, &h))
		case SourceDynamoDB:
			ev.records = append(ev.records, dynamoRecord(i, item, &h))
		default:
			return nil, fmt.Errorf("parse event: Records[%d]: eventSource %q: %w", i, h.EventSource, errUnknownEvent)
		}
	}
	ev.ordered = ev.source == SourceKinesis
	return ev, nil
}

// kinesisRecord positions a Kinesis record: the stream name, the shard id
// from eventID ("shardId-…:seq") and the sequence number.
func kinesisRecord(i int, item json.RawMessage, h *recordHead) record {
	pos := change.Position{Source: streamName(h.EventSourceARN)}
	if shard, _, ok := strings.Cut(h.EventID, ":"); ok {
		pos.Partition = shard
	}
	field := fmt.Sprintf("Records[%d]", i)
	r := record{raw: change.Raw{Data: item, Position: pos}}
	if h.Kinesis == nil {
		r.poison = change.Poisonf(change.ReasonInvalidEnvelope, field+".kinesis", "missing")
		return r
	}
	seq := h.Kinesis.SequenceNumber
	if _, ok := change.SortableDecimal(seq); !ok || seq == "" {
		r.raw.Position.Index, r.raw.Position.Indexed = i, true
		r.poison = change.Poisonf(change.ReasonInvalidEnvelope, field+".kinesis.sequenceNumber", "%q is not a sequence number", seq)
		return r
	}
	r.raw.Position.Offset = seq
	r.id = seq
	switch {
	case pos.Source == "":
		r.poison = change.Poisonf(change.ReasonInvalidEnvelope, field+".eventSourceARN", "%q is not a Kinesis stream ARN", h.EventSourceARN)
	case pos.Partition == "":
		r.poison = change.Poisonf(change.ReasonInvalidEnvelope, field+".eventID", "%q does not name a shard (shardId-…:sequence)", h.EventID)
	case h.Kinesis.Data == nil:
		r.poison = change.Poisonf(change.ReasonInvalidEnvelope, field+".kinesis.data", "missing")
	default:
		data, err := base64.StdEncoding.DecodeString(strings.TrimSpace(*h.Kinesis.Data))
		if err != nil {
			r.raw.Data = []byte(*h.Kinesis.Data)
			r.poison = change.Poisonf(change.ReasonInvalidEnvelope, field+".kinesis.data", "invalid base64: %v", err)
			return r
		}
		r.raw.Data = data
	}
	return r
}

// streamName returns the stream name of a Kinesis stream ARN
// (arn:aws:kinesis:region:account:stream/NAME), or "" when it is not one.
func streamName(arn string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[2] != "kinesis" {
		return ""
	}
	name, ok := strings.CutPrefix(parts[5], "stream/")
	if !ok || name == "" || strings.Contains(name, "/") {
		return ""
	}
	return name
}

// dynamoRecord positions a DynamoDB Streams record: the stream ARN and the
// SequenceNumber. The event does not name the shard, so Partition is "".
// The record itself is the change record the decoder reads.
func dynamoRecord(i int, item json.RawMessage, h *recordHead) record {
	r := record{raw: change.Raw{Data: item, Position: change.Position{Source: h.EventSourceARN}}}
	field := fmt.Sprintf("Records[%d]", i)
	if h.Dynamodb == nil {
		r.raw.Position.Index, r.raw.Position.Indexed = i, true
		r.poison = change.Poisonf(change.ReasonInvalidEnvelope, field+".dynamodb", "missing")
		return r
	}
	seq := h.Dynamodb.SequenceNumber
	if _, ok := change.SortableDecimal(seq); !ok || seq == "" {
		// The decoder names the field; it needs a position all the same.
		r.raw.Position.Index, r.raw.Position.Indexed = i, true
		return r
	}
	r.raw.Position.Offset = seq
	r.id = seq
	return r
}

// parseKafka reads an MSK or self-managed Kafka event: records grouped by
// "topic-partition", each with base64 key and value. Partitions are taken in
// name order, records in offset order.
func parseKafka(source string, data json.RawMessage) (*event, error) {
	var byPartition map[string][]json.RawMessage
	if err := json.Unmarshal(data, &byPartition); err != nil || byPartition == nil {
		if err == nil {
			err = errors.New("missing or null")
		}
		return nil, fmt.Errorf("parse event: records: %w", err)
	}
	names := make([]string, 0, len(byPartition))
	for name := range byPartition {
		names = append(names, name)
	}
	sort.Strings(names)
	ev := &event{source: source, ordered: true}
	for _, name := range names {
		start := len(ev.records)
		for j, item := range byPartition[name] {
			ev.records = append(ev.records, kafkaRec(name, j, item))
		}
		part := ev.records[start:]
		sort.SliceStable(part, func(a, b int) bool {
			return change.ComparePosition(part[a].raw.Position, part[b].raw.Position) < 0
		})
	}
	return ev, nil
}

func kafkaRec(name string, j int, item json.RawMessage) record {
	field := fmt.Sprintf("records.%s[%d]", name, j)
	var m kafkaRecord
	if err := json.Unmarshal(item, &m); err != nil {
		return record{
			raw:    change.Raw{Data: item, Position: change.Position{Source: name, Index: j, Indexed: true}},
			poison: change.Poisonf(change.ReasonInvalidEnvelope, field, "%v", err),
		}
	}
	if m.Topic == "" || m.Partition == nil || m.Offset == nil || *m.Partition < 0 || *m.Offset < 0 {
		return record{
			raw:    change.Raw{Data: item, Position: change.Position{Source: name, Index: j, Indexed: true}},
			poison: change.Poisonf(change.ReasonInvalidEnvelope, field, "record lacks topic, partition or offset"),
		}
	}
	pos := change.Position{Source: m.Topic, Partition: strconv.FormatInt(*m.Partition, 10), Offset: strconv.FormatInt(*m.Offset, 10)}
	r := record{
		raw: change.Raw{Position: pos},
		id:  KafkaItemIdentifier{Partition: m.Topic + "-" + pos.Partition, Offset: *m.Offset},
	}
	if m.Value != nil { // a nil value is a tombstone: the decoder counts it
		v, err := base64.StdEncoding.DecodeString(strings.TrimSpace(*m.Value))
		if err != nil {
			r.raw.Data = item
			r.poison = change.Poisonf(change.ReasonInvalidEnvelope, field+".value", "invalid base64: %v", err)
			return r
		}
		r.raw.Data = v
	}
	if m.Key != nil {
		k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(*m.Key))
		if err != nil {
			r.raw.Data = item
			r.poison = change.Poisonf(change.ReasonInvalidEnvelope, field+".key", "invalid base64: %v", err)
			return r
		}
		r.raw.Key = k
	}
	return r
}
