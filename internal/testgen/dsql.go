package testgen

import (
	"math/rand/v2"
	"strconv"

	"github.com/cdcflow/cdcflow/internal/change"
)

// dsqlEncoder renders Aurora DSQL CDC records (seed 002):
//
//	{"type":"full","op":"c","before":null,"after":{…},"source":{"version":"1.0",
//	 "ts_ms":…,"ts_ns":…,"txId":"…","schema":"public","table":"…","db":"postgres",
//	 "cluster":"c1"},"ts_ms":…,"ts_ns":…}
//
// source.ts_ns is the commit time, shared by a transaction; the top-level
// ts_ns is the emission time, strictly increasing inside a transaction, so it
// breaks ties between changes of one transaction. Deletes carry only the key
// columns in before. Snapshot reads are plain "c" records (DSQL has no
// snapshot).
type dsqlEncoder struct {
	o      EncodeOptions
	rng    *rand.Rand
	shards int
	seed   uint64
	tx     int64
	lag    int64
	txID   string
	buf    []byte
	after  []byte
}

func (d *dsqlEncoder) encode(dst []Record, e *Event) []Record {
	if e.Tx != d.tx {
		d.tx = e.Tx
		d.lag = 5_000_000 + d.rng.Int64N(300_000_000) // 5-305ms from commit to emission
		d.txID = dsqlTxID(d.seed, e.Tx)
	}
	emitNS := e.CommitNS + d.lag + int64(e.TxIndex)*1000 + d.rng.Int64N(1000)
	op := "c"
	switch {
	case e.Op == change.Delete:
		op = "d"
	case e.Kind == KindUpdate && d.o.UpdateOp != "":
		op = d.o.UpdateOp
	}
	shard := d.rng.IntN(d.shards)
	rec := Record{Shard: shard, Table: e.Table.Name, Seq: e.Seq, Kind: RecordChange}

	d.after = d.after[:0]
	if e.After != nil {
		d.after = appendRow(d.after, e.Table, e.After, nil)
	}
	if d.o.FragmentBytes <= 0 || len(d.after) <= d.o.FragmentBytes {
		b := append(d.buf[:0], `{"type":"full","op":`...)
		b = appendString(b, op)
		b = append(b, `,"before":`...)
		if e.Op == change.Delete {
			b = appendRow(b, e.Table, e.Before, e.Table.KeyIndexes())
		} else {
			b = append(b, "null"...)
		}
		b = append(b, `,"after":`...)
		if e.After != nil {
			b = append(b, d.after...)
		} else {
			b = append(b, "null"...)
		}
		b = d.appendTail(b, e, emitNS)
		d.buf = b
		rec.Data = clone(b)
		return append(dst, rec)
	}

	pieces := splitRunes(string(d.after), d.o.FragmentBytes)
	chunkID := "ck-" + strconv.FormatUint(d.rng.Uint64(), 36)
	b := append(d.buf[:0], `{"type":"chunked","op":`...)
	b = appendString(b, op)
	b = append(b, `,"before":null,"after":null,"chunked":{"chunk_id":`...)
	b = appendString(b, chunkID)
	b = append(b, `,"fragments":`...)
	b = strconv.AppendInt(b, int64(len(pieces)), 10)
	b = append(b, `,"field":"after"}`...)
	b = d.appendTail(b, e, emitNS)
	rec.Data, rec.Kind = clone(b), RecordChunked
	dst = append(dst, rec)
	for i, p := range pieces {
		b = append(b[:0], `{"type":"fragment","chunk_id":`...)
		b = appendString(b, chunkID)
		b = append(b, `,"index":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `,"data":`...)
		b = appendString(b, p)
		b = append(b, '}')
		if !d.o.KeepChunksTogether {
			shard = d.rng.IntN(d.shards)
		}
		dst = append(dst, Record{Data: clone(b), Shard: shard, Table: e.Table.Name, Seq: e.Seq, Kind: RecordFragment})
	}
	d.buf = b
	return dst
}

// appendTail appends the source block and the emission time and closes the
// record.
func (d *dsqlEncoder) appendTail(b []byte, e *Event, emitNS int64) []byte {
	b = append(b, `,"source":{"version":"1.0","ts_ms":`...)
	b = strconv.AppendInt(b, e.CommitNS/1e6, 10)
	b = append(b, `,"ts_ns":`...)
	b = strconv.AppendInt(b, e.CommitNS, 10)
	b = append(b, `,"txId":"`...)
	b = append(b, d.txID...)
	b = append(b, `","schema":`...)
	b = appendString(b, e.Table.Schema)
	b = append(b, `,"table":`...)
	b = appendString(b, e.Table.Name)
	b = append(b, `,"db":"postgres","cluster":"c1"},"ts_ms":`...)
	b = strconv.AppendInt(b, emitNS/1e6, 10)
	b = append(b, `,"ts_ns":`...)
	b = strconv.AppendInt(b, emitNS, 10)
	return append(b, '}')
}

// dsqlTxID returns a 26-character base32 transaction id like DSQL's.
func dsqlTxID(seed uint64, tx int64) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	var out [26]byte
	x := mix(seed, uint64(tx))
	for i := range out {
		if i%12 == 0 && i > 0 {
			x = mix(x, uint64(i))
		}
		out[i] = alphabet[x&31]
		x >>= 5
	}
	return string(out[:])
}
