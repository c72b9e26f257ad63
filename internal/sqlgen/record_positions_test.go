package sqlgen

import (
	"testing"

	"github.com/cdcflow/cdcflow/internal/change"
)

func TestRecordPosition(t *testing.T) {
	arn := "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2024-01-01T00:00:00.000"
	for _, tc := range []struct {
		name     string
		pos      change.Position
		position string
		ok       bool
	}{
		{"dynamodb", change.Position{Source: arn, Offset: "100000000000000000001"}, "100000000000000000001", true},
		{"shard", change.Position{Source: "s", Partition: "shardId-000000000001", Offset: "42"}, "[shardId-000000000001]@42", true},
		{"indexed", change.Position{Source: "s", Partition: "p", Offset: "42", Index: 3, Indexed: true}, "[p]@42#3", true},
		{"index_zero", change.Position{Source: "s", Offset: "42", Indexed: true}, "42#0", true},
		{"no_offset", change.Position{Source: "lambda-event", Index: 2, Indexed: true}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, pos, ok := RecordPosition(tc.pos)
			if ok != tc.ok || pos != tc.position || (ok && src != tc.pos.Source) {
				t.Errorf("RecordPosition(%+v) = %q, %q, %t; want %q, %q, %t", tc.pos, src, pos, ok, tc.pos.Source, tc.position, tc.ok)
			}
		})
	}
}
