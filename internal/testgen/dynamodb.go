package testgen

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
)

// DynamoDB constants of the generated stream.
const (
	dynamoRegion  = "us-east-1"
	dynamoAccount = "123456789012"
	dynamoStream  = "2024-01-01T00:00:00.000"
)

// DynamoDBStreamARN returns the eventSourceARN of table's stream.
func DynamoDBStreamARN(table string) string {
	return "arn:aws:dynamodb:" + dynamoRegion + ":" + dynamoAccount + ":table/" + table + "/stream/" + dynamoStream
}

// DynamoDBSequenceNumber returns the SequenceNumber the encoder gives the
// change with Event.Seq seq: "1" followed by seq in 20 digits, so numbers
// have 21 digits and compare as strings like numbers.
func DynamoDBSequenceNumber(seq int64) string { return fmt.Sprintf("1%020d", seq) }

// dynamoEncoder renders DynamoDB Streams records in the shape of a Lambda
// event record:
//
//	{"eventID":"…","eventName":"INSERT|MODIFY|REMOVE","eventVersion":"1.1",
//	 "eventSource":"aws:dynamodb","awsRegion":"us-east-1","dynamodb":{
//	 "ApproximateCreationDateTime":<epoch seconds>,"Keys":{…},"NewImage":{…},
//	 "OldImage":{…},"SequenceNumber":"…","SizeBytes":…,
//	 "StreamViewType":"NEW_AND_OLD_IMAGES"},"eventSourceARN":"…"}
//
// ApproximateCreationDateTime has second resolution; SequenceNumber is a
// global counter in commit order and decides the order. Attributes are
// typed: S, N (numbers as written), BOOL, NULL, M for objects, SS for a
// non-empty TextSet column, NS for a nested array of distinct numbers, L for
// other arrays. Keys lists the key attributes in key-column order.
type dynamoEncoder struct {
	o      EncodeOptions
	rng    *rand.Rand
	shards int
	seed   uint64
	buf    []byte
}

func (d *dynamoEncoder) encode(dst []Record, e *Event) []Record {
	name := "MODIFY"
	switch {
	case e.After == nil:
		name = "REMOVE"
	case e.Before == nil:
		name = "INSERT"
	}
	b := append(d.buf[:0], `{"eventID":"`...)
	b = fmt.Appendf(b, "%016x%016x", mix(d.seed, uint64(e.Seq)), mix(uint64(e.Seq), d.seed))
	b = append(b, `","eventName":"`...)
	b = append(b, name...)
	b = append(b, `","eventVersion":"1.1","eventSource":"aws:dynamodb","awsRegion":"`+dynamoRegion+`","dynamodb":{"ApproximateCreationDateTime":`...)
	b = strconv.AppendInt(b, e.CommitNS/1e9, 10)
	b = append(b, `,"Keys":`...)
	start := len(b)
	b = appendItem(b, e.Table, e.Image(), e.Table.KeyIndexes())
	size := len(b) - start
	if e.After != nil {
		b = append(b, `,"NewImage":`...)
		start = len(b)
		b = appendItem(b, e.Table, e.After, nil)
		size += len(b) - start
	}
	if e.Before != nil {
		b = append(b, `,"OldImage":`...)
		start = len(b)
		b = appendItem(b, e.Table, e.Before, nil)
		size += len(b) - start
	}
	b = append(b, `,"SequenceNumber":"`...)
	b = append(b, DynamoDBSequenceNumber(e.Seq)...)
	b = append(b, `","SizeBytes":`...)
	b = strconv.AppendInt(b, int64(size), 10)
	b = append(b, `,"StreamViewType":"NEW_AND_OLD_IMAGES"},"eventSourceARN":`...)
	b = appendString(b, DynamoDBStreamARN(e.Table.Name))
	b = append(b, '}')
	d.buf = b
	return append(dst, Record{Data: clone(b), Shard: keyShard(e, d.shards), Table: e.Table.Name, Seq: e.Seq, Kind: RecordChange})
}

// appendItem appends a row as a map of typed attributes.
func appendItem(b []byte, t *Table, row []any, cols []int) []byte {
	if cols == nil {
		cols = allColumns(t)
	}
	b = append(b, '{')
	for n, i := range cols {
		if n > 0 {
			b = append(b, ',')
		}
		b = appendString(b, t.Columns[i].Name)
		b = append(b, ':')
		if set, ok := row[i].([]any); ok && t.Columns[i].Type == TextSet && len(set) > 0 {
			b = append(b, `{"SS":`...)
			b = appendValue(b, set)
			b = append(b, '}')
			continue
		}
		b = appendAttr(b, row[i])
	}
	return append(b, '}')
}

// appendAttr appends v as a typed DynamoDB attribute value.
func appendAttr(b []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, `{"NULL":true}`...)
	case bool:
		b = append(b, `{"BOOL":`...)
		b = strconv.AppendBool(b, v)
		return append(b, '}')
	case json.Number:
		b = append(b, `{"N":"`...)
		b = append(b, v...)
		return append(b, `"}`...)
	case string:
		b = append(b, `{"S":`...)
		b = appendString(b, v)
		return append(b, '}')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, `{"M":{`...)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendAttr(b, v[k])
		}
		return append(b, "}}"...)
	case []any:
		if numberSet(v) {
			b = append(b, `{"NS":[`...)
			for i, n := range v {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendString(b, string(n.(json.Number)))
			}
			return append(b, "]}"...)
		}
		b = append(b, `{"L":[`...)
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendAttr(b, e)
		}
		return append(b, "]}"...)
	}
	panic(fmt.Sprintf("testgen: no DynamoDB attribute for %T", v))
}

// numberSet reports whether xs is a non-empty list of distinct numbers.
func numberSet(xs []any) bool {
	if len(xs) == 0 {
		return false
	}
	seen := make(map[json.Number]bool, len(xs))
	for _, x := range xs {
		n, ok := x.(json.Number)
		if !ok || seen[n] {
			return false
		}
		seen[n] = true
	}
	return true
}
