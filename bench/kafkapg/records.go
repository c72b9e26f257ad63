package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/decode"
	"github.com/cdcflow/cdcflow/internal/testgen"
)

// record is one generated DSQL record and the partition (shard) it goes to.
type record struct {
	data []byte
	part int32
}

// dataset is the generated workload of the throughput measurements.
type dataset struct {
	recs     []record
	expected map[string]int // merged table -> live rows after every record
	bytes    int64
}

// genOptions are the history options of the throughput workload, those of
// bench/warehouse.sh: DSQL, no large values, no duplicates, no fragments.
func genOptions(changes, keys int) testgen.Options {
	return testgen.Options{Changes: changes, Keys: keys, BigRatio: -1}
}

// generate streams the history into memory.
func generate(seed int64, changes, keys, parts int) (*dataset, error) {
	ds := &dataset{recs: make([]record, 0, changes)}
	enc := testgen.EncodeOptions{Shards: parts, ReorderWindow: 32}
	g, err := testgen.Stream(seed, genOptions(changes, keys), testgen.FormatDSQL, enc, func(r testgen.Record) error {
		if r.Kind != testgen.RecordChange {
			return fmt.Errorf("generated a %s record; want only whole changes", r.Kind)
		}
		ds.recs = append(ds.recs, record{data: r.Data, part: int32(r.Shard)})
		ds.bytes += int64(len(r.Data))
		return nil
	})
	if err != nil {
		return nil, err
	}
	ds.expected = map[string]int{}
	for table, rows := range g.Final() {
		ds.expected[table] = len(rows)
	}
	return ds, nil
}

// writeFile writes the records to one NDJSON file in generation order, the
// order a consumer of all partitions at once sees them (commit order, with
// testgen's per-shard reordering). One file per partition would be loaded
// file after file: most changes of a key would then arrive after newer ones
// of the same key from a later file and be skipped as stale, a much lighter
// merge than the Kafka run does.
func writeFile(path string, ds *dataset) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	for _, r := range ds.recs {
		w.Write(r.data)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// keys returns the generated tables' key columns.
func keys() *change.Keys { return &change.Keys{Tables: testgen.DefaultKeys()} }

// limitRows decodes every record (untimed) into the Go values pgx's
// CopyFrom takes for the PostgreSQL event log's columns
// (sqlgen.PostgresLogColumns), with the positions the Kafka source gives
// them: topic, partition, offset (offsets count from 0 per partition of a
// new topic).
func limitRows(ds *dataset, topic string) ([][]any, error) {
	dec, err := decode.New(decode.Options{Format: decode.FormatDSQL, Keys: keys()})
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	offsets := map[int32]int64{}
	rows := make([][]any, 0, len(ds.recs))
	var out decode.Output
	for _, r := range ds.recs {
		pos := change.Position{Source: topic, Partition: strconv.Itoa(int(r.part)), Offset: strconv.FormatInt(offsets[r.part], 10)}
		offsets[r.part]++
		out.Reset()
		dec.Decode(change.Raw{Data: r.data, Position: pos}, now, &out)
		if len(out.Dead) > 0 {
			return nil, fmt.Errorf("decode %s: %s", pos, out.Dead[0].Reason)
		}
		for i := range out.Events {
			e := out.Events[i].Clone()
			var data, seq any
			if img := e.Image(); img != nil {
				data = []byte(img)
			}
			if e.Order.Seq != "" {
				seq = e.Order.Seq
			}
			rows = append(rows, []any{e.Table, string(e.Op), e.Key, data,
				time.Unix(0, e.Order.CommitNS).UTC(), now, e.Schema, e.Order.CommitNS, seq, e.TxID,
				e.Position.String(), e.Order.Key(), e.Position.Source + "\x01" + e.Position.Partition + "\x01" + e.Position.Sortable()})
		}
	}
	return rows, nil
}

// DSQL record layout written by testgen (and by DSQL):
//
//	{…,"source":{"version":"1.0","ts_ms":C_MS,"ts_ns":C_NS,…},"ts_ms":E_MS,"ts_ns":E_NS}
var (
	sourceMark = []byte(`"source":{`)
	tsMsMark   = []byte(`"ts_ms":`)
	tsNsMark   = []byte(`"ts_ns":`)
)

// stampRecord returns rec with its commit time (source.ts_ms, source.ts_ns)
// and emission time (top-level ts_ms, ts_ns) set to ns: the produce time of
// the freshness measurement. Stamping strictly increasing times on records
// produced in commit order keeps their commit order.
func stampRecord(rec []byte, ns int64) ([]byte, error) {
	src := bytes.LastIndex(rec, sourceMark)
	if src < 0 {
		return nil, errors.New("stamp: no source object")
	}
	out := make([]byte, 0, len(rec)+8)
	rest, at := rec, 0
	for i, mark := range [][]byte{tsMsMark, tsNsMark, tsMsMark, tsNsMark} {
		from := at
		if i == 0 {
			from = src
		}
		j := bytes.Index(rest[from:], mark)
		if j < 0 {
			return nil, fmt.Errorf("stamp: field %d (%s) not found", i, mark)
		}
		j += from + len(mark)
		k := j
		for k < len(rest) && rest[k] >= '0' && rest[k] <= '9' {
			k++
		}
		if k == j {
			return nil, fmt.Errorf("stamp: field %d (%s) is not a number", i, mark)
		}
		out = append(out, rest[at:j]...)
		v := ns
		if mark[4] == 'm' { // ts_ms
			v = ns / 1e6
		}
		out = strconv.AppendInt(out, v, 10)
		at = k
	}
	return append(out, rest[at:]...), nil
}
