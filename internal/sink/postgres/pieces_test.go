package postgres

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/decode"
	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

// dsqlPiece returns piece i of the oversized insert of docs row id whose
// after image comes in two fragments of chunk: -1 is the main record.
func dsqlPiece(id int, chunk string, i int) []byte {
	ts := int64(1705318200000000000) + int64(id)*1000
	if i < 0 {
		src := fmt.Sprintf(`{"version":"1.0","ts_ms":%d,"ts_ns":%d,"txId":"tx%d","schema":"public","table":"docs","db":"postgres","cluster":"c1"}`, ts/1e6, ts, ts)
		return fmt.Appendf(nil, `{"type":"chunked","op":"c","before":null,"after":null,"source":%s,"ts_ns":%d,"chunked":{"chunk_id":%q,"fragments":2,"field":"after"}}`, src, ts+1, chunk)
	}
	parts := []string{fmt.Sprintf(`{\"id\":%d,`, id), `\"big\":\"xxxxxxxx\"}`}
	return fmt.Appendf(nil, `{"type":"fragment","chunk_id":%q,"index":%d,"data":"%s"}`, chunk, i, parts[i])
}

func piece(id int, chunk string, i int, partition, offset string) change.Piece {
	p := change.Piece{ChunkID: chunk, Index: i, Raw: change.Raw{Data: dsqlPiece(id, chunk, i),
		Position: change.Position{Source: "st", Partition: partition, Offset: offset}}}
	if i < 0 {
		p.Fragments = 2
	}
	return p
}

// TestParkedSetCompletesOnce: two writers park the pieces of one set; the
// set is complete only once both did; its reassembled event is stored by
// the first writer that applies it, never twice, though its position lies
// before a stored checkpoint; its pieces are then deleted, and a late copy
// of a piece is not parked again.
func TestParkedSetCompletesOnce(t *testing.T) {
	a := openTest(t, Options{DeadLetterTable: true})
	b := openTest(t, Options{URL: a.opts.URL, Schema: a.opts.Schema, DeadLetterTable: true})
	db := a.testDB(t)
	cp := change.Checkpoint{Source: "st", Partition: "s0", Applied: change.Position{Source: "st", Partition: "s0", Offset: "9"}}
	apply(t, a, &change.Batch{Park: []change.Piece{piece(1, "c1", -1, "s0", "1"), piece(1, "c1", 0, "s0", "2")}, Checkpoints: []change.Checkpoint{cp}})
	if ids, err := b.CompleteParked(ctxb(), 10); err != nil || len(ids) != 0 {
		t.Fatalf("CompleteParked with a fragment missing = %v, %v; want none", ids, err)
	}
	apply(t, b, &change.Batch{Park: []change.Piece{piece(1, "c1", 1, "s1", "1")}})
	ids, err := b.CompleteParked(ctxb(), 10)
	if err != nil || len(ids) != 1 || ids[0] != "c1" {
		t.Fatalf("CompleteParked = %v, %v; want [c1]", ids, err)
	}
	pieces, err := a.ParkedPieces(ctxb(), ids)
	if err != nil || len(pieces) != 3 || pieces[0].Index != -1 || pieces[0].Fragments != 2 || pieces[2].Raw.Position.Partition != "s1" {
		t.Fatalf("ParkedPieces = %+v, %v", pieces, err)
	}
	dec, err := decode.New(decode.Options{Format: decode.FormatDSQL})
	if err != nil {
		t.Fatal(err)
	}
	var out decode.Output
	dec.Reassemble(pieces, time.Now(), &out)
	if len(out.Events) != 1 || !out.Events[0].Parked || out.Events[0].ChunkID != "c1" || len(out.Dead) != 0 {
		t.Fatalf("Reassemble = %+v, dead %+v", out.Events, out.Dead)
	}
	// Both writers found the set complete and apply its event.
	var wg sync.WaitGroup
	results := make([]change.ApplyResult, 2)
	for i, s := range []*Sink{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], _ = s.Apply(ctxb(), &change.Batch{Events: []change.Event{out.Events[0].Clone()}})
		}()
	}
	wg.Wait()
	if results[0].Logged+results[1].Logged != 1 {
		t.Errorf("logged %d and %d, want the set once", results[0].Logged, results[1].Logged)
	}
	for query, want := range map[string]int64{
		"SELECT count(*) FROM " + q(sqlgen.EventsTable):                            1,
		"SELECT count(*) FROM docs WHERE big = 'xxxxxxxx'":                         1,
		"SELECT count(*) FROM " + q(sqlgen.PiecesTable):                            0,
		"SELECT count(*) FROM " + q(sqlgen.ChunksTable):                            1,
		"SELECT count(*) FROM " + q(sqlgen.DeadLettersTable):                       0,
		"SELECT count(*) FROM " + q(sqlgen.ChunksTable) + " WHERE chunk_id = 'c1'": 1,
	} {
		if got := scalar[int64](t, db, query); got != want {
			t.Errorf("%s = %d, want %d", query, got, want)
		}
	}
	// A late copy of a piece of the stored set is not parked again.
	apply(t, b, &change.Batch{Park: []change.Piece{piece(1, "c1", 0, "s1", "7")}})
	if got := scalar[int64](t, db, "SELECT count(*) FROM "+q(sqlgen.PiecesTable)); got != 0 {
		t.Errorf("a piece of a stored set was parked: %d parked pieces", got)
	}
}

// TestExpireParked: a parked set that never completes is dead-lettered
// once, with its bytes and position, even when two writers expire at the
// same time.
func TestExpireParked(t *testing.T) {
	a := openTest(t, Options{})
	b := openTest(t, Options{URL: a.opts.URL, Schema: a.opts.Schema})
	db := a.testDB(t)
	lone := piece(2, "c2", 1, "s3", "5")
	apply(t, a, &change.Batch{Park: []change.Piece{lone}})
	if dead, err := a.ExpireParked(ctxb(), time.Hour); err != nil || len(dead) != 0 {
		t.Fatalf("ExpireParked(1h) = %v, %v; want nothing yet", dead, err)
	}
	var wg sync.WaitGroup
	got := make([][]change.DeadLetter, 2)
	for i, s := range []*Sink{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if got[i], err = s.ExpireParked(ctxb(), 0); err != nil {
				t.Errorf("ExpireParked: %v", err)
			}
		}()
	}
	wg.Wait()
	all := append(got[0], got[1]...)
	if len(all) != 1 || all[0].Reason != change.ReasonFragmentTimeout || string(all[0].Raw) != string(lone.Raw.Data) || all[0].Position != lone.Raw.Position {
		t.Fatalf("expired %+v, want the lone piece once", all)
	}
	// Stored although the sink has no dead-letter table option set: the
	// pieces lived in the database.
	if n := scalar[int64](t, db, "SELECT count(*) FROM "+q(sqlgen.DeadLettersTable)+" WHERE reason = 'fragment_timeout' AND raw = $1", lone.Raw.Data); n != 1 {
		t.Errorf("stored dead letters of the piece: %d, want 1", n)
	}
	if n := scalar[int64](t, db, "SELECT count(*) FROM "+q(sqlgen.PiecesTable)); n != 0 {
		t.Errorf("%d pieces still parked", n)
	}
}
