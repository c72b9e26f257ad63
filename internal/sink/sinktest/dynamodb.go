package sinktest

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/cdcflow/cdcflow/internal/change"
)

// Records of a DynamoDB stream as the Lambda handler positions them (no
// partition, the sequence number as offset), for the sinks' tests of
// change.Batch.DedupePositions.

// DynamoDBStream is the stream ARN of DynamoDBPosition.
const DynamoDBStream = "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2024-01-01T00:00:00.000"

// DynamoDBPosition is the position of the n-th record of a DynamoDB stream as the
// Lambda handler sets it: no partition, the sequence number as offset.
func DynamoDBPosition(n int) change.Position {
	return change.Position{Source: DynamoDBStream, Offset: fmt.Sprintf("1%020d", n)}
}

// DynamoDBEvent is an insert of orders row n at DynamoDBPosition(n).
func DynamoDBEvent(n int) change.Event {
	return change.Event{Table: "orders", Op: change.Insert, KeyColumns: []string{"id"}, Key: strconv.Itoa(n),
		After: json.RawMessage(`{"id":` + strconv.Itoa(n) + `}`), Order: change.Order{CommitNS: int64(n) * 1e9, Seq: DynamoDBPosition(n).Sortable()},
		Position: DynamoDBPosition(n), Raw: []byte(`{"n":` + strconv.Itoa(n) + `}`)}
}

// DynamoDBDead is a dead letter at DynamoDBPosition(n).
func DynamoDBDead(n int) change.DeadLetter {
	return change.DeadLetter{Reason: change.ReasonInvalidOp, Detail: "unknown eventName", Format: "dynamodb", Position: DynamoDBPosition(n), Raw: []byte("{}")}
}

// DynamoDBBatch is a batch with DedupePositions holding events for the numbers given and dead letters for the
// negated ones (-6: a dead letter at record 6).
func DynamoDBBatch(nums ...int) *change.Batch {
	b := &change.Batch{DedupePositions: true}
	for _, n := range nums {
		if n < 0 {
			b.Dead = append(b.Dead, DynamoDBDead(-n))
		} else {
			b.Events = append(b.Events, DynamoDBEvent(n))
		}
	}
	return b
}
