package debezium

import (
	"fmt"
	"testing"

	"github.com/cdcflow/cdcflow/internal/change"
)

// TestSnapshotOrder: a snapshot read taken late (later ts_ms) at an earlier
// log position than a streamed update of the same key must compare older,
// whatever order the two arrive in.
func TestSnapshotOrder(t *testing.T) {
	tests := []struct {
		name             string
		snapshot, stream string
	}{
		{
			name:     "postgres",
			snapshot: `{"before":null,"after":{"id":1,"v":"snap"},"source":{"connector":"postgresql","ts_ms":1705318300000,"snapshot":"true","db":"inventory","schema":"public","table":"t","txId":550,"lsn":24023128},"op":"r","ts_ms":1705318300001}`,
			stream:   `{"before":null,"after":{"id":1,"v":"new"},"source":{"connector":"postgresql","ts_ms":1705318200000,"snapshot":"false","db":"inventory","schema":"public","table":"t","txId":556,"lsn":124023300},"op":"u","ts_ms":1705318400000}`,
		},
		{
			name:     "postgres lsn digit count differs",
			snapshot: `{"after":{"id":1},"source":{"connector":"postgresql","ts_ms":1705318300000,"schema":"public","table":"t","lsn":9999999},"op":"r"}`,
			stream:   `{"after":{"id":1},"source":{"connector":"postgresql","ts_ms":1705318200000,"schema":"public","table":"t","lsn":10000000},"op":"u"}`,
		},
		{
			name:     "mysql",
			snapshot: `{"before":null,"after":{"id":1,"v":"snap"},"source":{"connector":"mysql","ts_ms":1705318300000,"snapshot":"true","db":"inventory","table":"t","file":"mysql-bin.000003","pos":98765,"row":0},"op":"r","ts_ms":1705318300001}`,
			stream:   `{"before":{"id":1,"v":"snap"},"after":{"id":1,"v":"new"},"source":{"connector":"mysql","ts_ms":1705318200000,"snapshot":"false","db":"inventory","table":"t","file":"mysql-bin.000003","pos":154321,"row":0},"op":"u","ts_ms":1705318400000}`,
		},
		{
			name:     "mysql next binlog file",
			snapshot: `{"after":{"id":1},"source":{"connector":"mysql","ts_ms":1705318300000,"db":"inventory","table":"t","file":"mysql-bin.000003","pos":98765,"row":4},"op":"r"}`,
			stream:   `{"after":{"id":1},"source":{"connector":"mysql","ts_ms":1705318200000,"db":"inventory","table":"t","file":"mysql-bin.000004","pos":4,"row":0},"op":"u"}`,
		},
		{
			name:     "sqlserver",
			snapshot: `{"after":{"id":1},"source":{"connector":"sqlserver","ts_ms":1705318300000,"db":"d","schema":"dbo","table":"t","change_lsn":null,"commit_lsn":"00000027:00000750:0001"},"op":"r"}`,
			stream:   `{"after":{"id":1},"source":{"connector":"sqlserver","ts_ms":1705318200000,"db":"d","schema":"dbo","table":"t","change_lsn":"00000027:00000758:0005","commit_lsn":"00000027:00000758:0007","event_serial_no":1},"op":"u"}`,
		},
		{
			name:     "oracle",
			snapshot: `{"after":{"ID":1},"source":{"connector":"oracle","ts_ms":1705318300000,"schema":"S","table":"T","scn":"999999"},"op":"r"}`,
			stream:   `{"after":{"ID":1},"source":{"connector":"oracle","ts_ms":1705318200000,"schema":"S","table":"T","scn":"1000000"},"op":"u"}`,
		},
	}
	keys := &change.Keys{Tables: map[string][]string{"T": {"ID"}}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The stream update arrives first, at an earlier stream position.
			up := decodeOne(t, tt.stream, 1, keys)
			snap := decodeOne(t, tt.snapshot, 2, keys)
			if snap.Key != up.Key || snap.Table != up.Table {
				t.Fatalf("not the same row: %s/%s vs %s/%s", snap.Table, snap.Key, up.Table, up.Key)
			}
			if snap.Order.CommitNS <= up.Order.CommitNS {
				t.Fatal("test data: the snapshot row must have the later ts_ms")
			}
			if c := change.Compare(&snap, &up); c >= 0 {
				t.Errorf("Compare(snapshot, update) = %d, want < 0 (snapshot %q, update %q)", c, snap.Order.Key(), up.Order.Key())
			}
			if c := change.Compare(&up, &snap); c <= 0 {
				t.Errorf("Compare(update, snapshot) = %d, want > 0", c)
			}
			if snap.Order.Key() >= up.Order.Key() {
				t.Errorf("order keys sort the wrong way: %q >= %q", snap.Order.Key(), up.Order.Key())
			}
		})
	}
}

// TestNoLogPosition: without a log position the commit time decides alone.
func TestNoLogPosition(t *testing.T) {
	a := decodeOne(t, `{"after":{"id":1},"source":{"connector":"x","ts_ms":1000,"table":"t"},"op":"r"}`, 1, nil)
	b := decodeOne(t, `{"after":{"id":1},"source":{"connector":"x","ts_ms":2000,"table":"t"},"op":"u","ts_ms":500}`, 2, nil)
	if a.Order.LogFirst || a.Order.Seq != "" {
		t.Fatalf("order %+v: want no log position", a.Order)
	}
	if change.Compare(&a, &b) >= 0 {
		t.Error("the earlier source.ts_ms must compare older")
	}
}

func decodeOne(t *testing.T, data string, offset int, keys *change.Keys) change.Event {
	t.Helper()
	evs, err := Decode(nil, change.Raw{Data: []byte(data), Position: change.Position{Source: "topic", Partition: "0", Offset: fmt.Sprint(offset)}}, keys)
	if err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	return evs[0]
}
