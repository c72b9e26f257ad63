package testgen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"
)

// Delivery is records as the shards of a stream hold them, and one possible
// order in which a consumer reading every shard concurrently sees them.
type Delivery struct {
	Shards [][]Record // per shard, in the order of the input
	Merged []Record   // every record; each shard's records keep their order
}

// Deliver splits records by Shard (modulo shards) and interleaves the shards
// at random: runs of 1-8 records are taken from a random non-empty shard.
func Deliver(records []Record, seed int64, shards int) Delivery {
	shards = max(shards, 1)
	d := Delivery{Shards: make([][]Record, shards), Merged: make([]Record, 0, len(records))}
	for _, r := range records {
		s := r.Shard % shards
		d.Shards[s] = append(d.Shards[s], r)
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0xde1))
	next := make([]int, shards)
	open := make([]int, 0, shards)
	for s := range shards {
		if len(d.Shards[s]) > 0 {
			open = append(open, s)
		}
	}
	for len(open) > 0 {
		k := rng.IntN(len(open))
		s := open[k]
		run := 1 + rng.IntN(8)
		for ; run > 0 && next[s] < len(d.Shards[s]); run-- {
			d.Merged = append(d.Merged, d.Shards[s][next[s]])
			next[s]++
		}
		if next[s] == len(d.Shards[s]) {
			open = append(open[:k], open[k+1:]...)
		}
	}
	return d
}

// Batches cuts records into consecutive batches of 1 to maxBatch records
// (random sizes), as a poller or a Lambda event source mapping would.
func Batches(records []Record, seed int64, maxBatch int) [][]Record {
	maxBatch = max(maxBatch, 1)
	rng := rand.New(rand.NewPCG(uint64(seed), 0xba7))
	var out [][]Record
	for len(records) > 0 {
		n := min(1+rng.IntN(maxBatch), len(records))
		out = append(out, records[:n:n])
		records = records[n:]
	}
	return out
}

// KinesisSequenceNumber returns a 56-digit Kinesis-like sequence number for
// the i-th record (from 0) of a shard; numbers increase with i.
func KinesisSequenceNumber(shard, i int) string {
	return fmt.Sprintf("4959%04d%048d", shard, i+1)
}

// KinesisShardID returns the shard id of shard n ("shardId-000000000003").
func KinesisShardID(n int) string { return fmt.Sprintf("shardId-%012d", n) }

type kinesisCLIRecord struct {
	SequenceNumber              string
	ApproximateArrivalTimestamp string
	Data                        []byte
	PartitionKey                string
	EncryptionType              string
}

// KinesisGetRecords renders records as the pretty-printed output of
// `aws kinesis get-records` (AWS CLI v2) for one shard: Data base64, arrival
// times from arrival onward, 1ms apart. firstIndex numbers the first record.
func KinesisGetRecords(records []Record, shard, firstIndex int, arrival time.Time) []byte {
	out := struct {
		Records            []kinesisCLIRecord
		NextShardIterator  string
		MillisBehindLatest int
	}{Records: []kinesisCLIRecord{}, NextShardIterator: "AAAAAAAAAAH" + strconv.Itoa(shard) + "exampleIterator", MillisBehindLatest: 0}
	for i, r := range records {
		out.Records = append(out.Records, kinesisCLIRecord{
			SequenceNumber:              KinesisSequenceNumber(shard, firstIndex+i),
			ApproximateArrivalTimestamp: arrival.Add(time.Duration(i) * time.Millisecond).UTC().Format("2006-01-02T15:04:05.000000-07:00"),
			Data:                        r.Data,
			PartitionKey:                partitionKey(r, i),
			EncryptionType:              "NONE",
		})
	}
	b, _ := json.MarshalIndent(out, "", "    ") // plain structs always marshal
	return append(b, '\n')
}

func partitionKey(r Record, i int) string {
	if len(r.Key) > 0 {
		return string(r.Key)
	}
	return fmt.Sprintf("pk-%d-%d", r.Shard, i)
}

// DynamoDBLambdaEvent wraps DynamoDB records in a Lambda event
// {"Records":[…]}, pretty-printed down to the members of each record's
// "dynamodb" object; attribute maps stay on one line.
func DynamoDBLambdaEvent(records []Record) []byte {
	var b bytes.Buffer
	b.WriteString(`{"Records":[`)
	for i, r := range records {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(r.Data)
	}
	b.WriteString("]}")
	return indentDepth(b.Bytes(), 4)
}

// KinesisLambdaEvent wraps records (any format) in the Lambda event a
// Kinesis event source mapping sends for one shard: Data base64 in
// kinesis.data.
func KinesisLambdaEvent(records []Record, stream string, shard, firstIndex int, arrival time.Time) []byte {
	type kin struct {
		KinesisSchemaVersion        string  `json:"kinesisSchemaVersion"`
		PartitionKey                string  `json:"partitionKey"`
		SequenceNumber              string  `json:"sequenceNumber"`
		Data                        []byte  `json:"data"`
		ApproximateArrivalTimestamp float64 `json:"approximateArrivalTimestamp"`
	}
	type rec struct {
		Kinesis           kin    `json:"kinesis"`
		EventSource       string `json:"eventSource"`
		EventVersion      string `json:"eventVersion"`
		EventID           string `json:"eventID"`
		EventName         string `json:"eventName"`
		InvokeIdentityArn string `json:"invokeIdentityArn"`
		AwsRegion         string `json:"awsRegion"`
		EventSourceARN    string `json:"eventSourceARN"`
	}
	out := struct {
		Records []rec `json:"Records"`
	}{Records: []rec{}}
	for i, r := range records {
		seq := KinesisSequenceNumber(shard, firstIndex+i)
		at := arrival.Add(time.Duration(i) * time.Millisecond)
		out.Records = append(out.Records, rec{
			Kinesis: kin{
				KinesisSchemaVersion:        "1.0",
				PartitionKey:                partitionKey(r, i),
				SequenceNumber:              seq,
				Data:                        r.Data,
				ApproximateArrivalTimestamp: float64(at.UnixMilli()) / 1000,
			},
			EventSource:       "aws:kinesis",
			EventVersion:      "1.0",
			EventID:           KinesisShardID(shard) + ":" + seq,
			EventName:         "aws:kinesis:record",
			InvokeIdentityArn: "arn:aws:iam::" + dynamoAccount + ":role/cdc-consumer",
			AwsRegion:         dynamoRegion,
			EventSourceARN:    "arn:aws:kinesis:" + dynamoRegion + ":" + dynamoAccount + ":stream/" + stream,
		})
	}
	b, _ := json.MarshalIndent(out, "", "  ") // plain structs always marshal
	return append(b, '\n')
}

// MSKLambdaEvent wraps records in the Lambda event an Amazon MSK event
// source mapping sends: records grouped by "topic-partition", key and value
// base64. Records go to partition Shard of topic(record); offsets count from
// firstOffset per partition. A tombstone ("null" Data) has no value.
func MSKLambdaEvent(records []Record, topic func(Record) string, firstOffset int64, created time.Time) []byte {
	type rec struct {
		Topic         string           `json:"topic"`
		Partition     int              `json:"partition"`
		Offset        int64            `json:"offset"`
		Timestamp     int64            `json:"timestamp"`
		TimestampType string           `json:"timestampType"`
		Key           []byte           `json:"key,omitempty"`
		Value         []byte           `json:"value,omitempty"`
		Headers       []map[string]any `json:"headers"`
	}
	groups := map[string][]rec{}
	offsets := map[string]int64{}
	for i, r := range records {
		t := topic(r)
		g := t + "-" + strconv.Itoa(r.Shard)
		off, ok := offsets[g]
		if !ok {
			off = firstOffset
		}
		offsets[g] = off + 1
		value := r.Data
		if r.Kind == RecordTombstone {
			value = nil
		}
		groups[g] = append(groups[g], rec{
			Topic: t, Partition: r.Shard, Offset: off,
			Timestamp: created.Add(time.Duration(i) * time.Millisecond).UnixMilli(), TimestampType: "CREATE_TIME",
			Key: r.Key, Value: value, Headers: []map[string]any{},
		})
	}
	out := struct {
		EventSource      string           `json:"eventSource"`
		EventSourceArn   string           `json:"eventSourceArn"`
		BootstrapServers string           `json:"bootstrapServers"`
		Records          map[string][]rec `json:"records"`
	}{
		EventSource:      "aws:kafka",
		EventSourceArn:   "arn:aws:kafka:" + dynamoRegion + ":" + dynamoAccount + ":cluster/cdc/abcd1234-0123-4567-89ab-cdef01234567-2",
		BootstrapServers: "b-1.cdc.abc123.c2.kafka.us-east-1.amazonaws.com:9098",
		Records:          groups,
	}
	b, _ := json.MarshalIndent(out, "", "  ") // plain structs and maps always marshal
	return append(b, '\n')
}

// indentDepth pretty-prints compact JSON b with two-space indentation,
// expanding objects and arrays nested at most depth deep (the outermost is 1)
// and keeping deeper ones compact. Bytes inside strings are untouched.
func indentDepth(b []byte, depth int) []byte {
	out := make([]byte, 0, len(b)+len(b)/4)
	level := 0
	inString, escaped := false, false
	newline := func(n int) {
		out = append(out, '\n')
		for range n {
			out = append(out, ' ', ' ')
		}
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inString {
			out = append(out, c)
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
			out = append(out, c)
		case '{', '[':
			level++
			out = append(out, c)
			if level <= depth && i+1 < len(b) && b[i+1] != '}' && b[i+1] != ']' {
				newline(level)
			}
		case '}', ']':
			if level <= depth && i > 0 && b[i-1] != '{' && b[i-1] != '[' {
				newline(level - 1)
			}
			level--
			out = append(out, c)
		case ',':
			out = append(out, c)
			if level <= depth {
				newline(level)
			} else {
				out = append(out, ' ')
			}
		case ':':
			out = append(out, ':', ' ')
		default:
			out = append(out, c)
		}
	}
	return append(out, '\n')
}
