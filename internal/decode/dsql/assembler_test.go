package dsql

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cdcflow/cdcflow/internal/change"
)

// chunkSet builds the main record and n fragments of an oversized change of
// img (JSON text), split on rune boundaries.
func chunkSet(t testing.TB, id any, img string, n int, op, field string) (main []byte, frags [][]byte) {
	t.Helper()
	idJSON, _ := json.Marshal(id)
	main = fmt.Appendf(nil, `{"type":"chunked","op":%q,"before":null,"after":null,`+
		`"source":{"version":"1.0","ts_ms":1705318200000,"ts_ns":1705318200000000000,"txId":"tx1","schema":"public","table":"docs","db":"postgres","cluster":"c1"},`+
		`"ts_ms":1705318200125,"ts_ns":1705318200125483291,"chunked":{"chunk_id":%s,"fragments":%d,"field":%q}}`, op, idJSON, n, field)
	runes := []rune(img)
	for i := 0; i < n; i++ {
		piece := string(runes[i*len(runes)/n : (i+1)*len(runes)/n])
		data, err := json.Marshal(piece)
		if err != nil {
			t.Fatal(err)
		}
		frags = append(frags, fmt.Appendf(nil, `{"type":"fragment","chunk_id":%s,"index":%d,"data":%s}`, idJSON, i, data))
	}
	return main, frags
}

const bigImage = `{"id":4242,"title":"Zürich \"quoted\" \\ back","body":"` +
	`long text with unicode: ünïcødé 中文 😀 and escapes \n\t end","tags":["a","b"],"nested":{"x":[1,2.5,-3e2,true,null]}}`

type testPiece struct {
	name string
	rec  []byte
	pos  change.Position
}

// feeder decodes records from a reused buffer, the way transports hand
// them over, and collects the outcomes.
type feeder struct {
	t     testing.TB
	d     *Decoder
	buf   []byte
	evs   []change.Event
	dead  []change.DeadLetter
	skips []string
}

func newFeeder(t testing.TB, maxBytes int64, timeout time.Duration) *feeder {
	return &feeder{t: t, d: NewDecoder(nil, maxBytes, timeout)}
}

func (f *feeder) feed(rec []byte, pos change.Position, now time.Time) error {
	f.t.Helper()
	f.buf = append(f.buf[:0], rec...)
	var err error
	f.evs, err = f.d.Decode(f.evs, change.Raw{Data: f.buf, Position: pos}, now)
	for i := range f.buf { // the transport reuses its buffer
		f.buf[i] = 'x'
	}
	var p *change.Poison
	var s *change.Skip
	switch {
	case err == nil:
	case errors.As(err, &p):
		f.dead = append(f.dead, change.DeadLetter{Reason: p.Reason, Detail: p.Error(), Position: pos, Raw: bytes.Clone(rec)})
	case errors.As(err, &s):
		f.skips = append(f.skips, s.Reason)
	default:
		f.t.Fatalf("unexpected error %T %v", err, err)
	}
	f.dead = append(f.dead, f.d.TakeDead()...)
	if f.d.Asm.HeldBytes() > f.d.Asm.maxBytes {
		f.t.Fatalf("held %d bytes, bound %d", f.d.Asm.HeldBytes(), f.d.Asm.maxBytes)
	}
	return err
}

func pos(partition string, offset int) change.Position {
	return change.Position{Source: "stream", Partition: partition, Offset: strconv.Itoa(offset)}
}

func permutations(n int) [][]int {
	if n == 0 {
		return [][]int{{}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := append(append(append([]int{}, p[:i]...), n-1), p[i:]...)
			out = append(out, q)
		}
	}
	return out
}

func fourPieces(t testing.TB) []testPiece {
	main, frags := chunkSet(t, "set-1", bigImage, 3, "c", "after")
	return []testPiece{
		{"main", main, pos("shardId-000000000000", 100)},
		{"f0", frags[0], pos("shardId-000000000001", 7)},
		{"f1", frags[1], pos("shardId-000000000000", 101)},
		{"f2", frags[2], pos("shardId-000000000001", 8)},
	}
}

func assertOneEvent(t *testing.T, f *feeder, main []byte, completing change.Position) {
	t.Helper()
	if len(f.dead) != 0 {
		t.Fatalf("dead letters: %+v", f.dead)
	}
	if len(f.evs) != 1 {
		t.Fatalf("%d events, want 1", len(f.evs))
	}
	e := f.evs[0]
	if string(e.After) != bigImage {
		t.Fatalf("after %s\nwant  %s", e.After, bigImage)
	}
	if e.Key != "4242" || e.Table != "docs" || e.Schema != "public" || e.Op != change.Insert || e.Before != nil ||
		e.TxID != "tx1" || e.Order.CommitNS != 1705318200000000000 {
		t.Fatalf("event %+v", e)
	}
	if !bytes.Equal(e.Raw, main) {
		t.Fatalf("Raw %s, want the main record", e.Raw)
	}
	if e.Position != completing {
		t.Fatalf("position %v, want the completing piece %v", e.Position, completing)
	}
	if n, b := f.d.Asm.HeldCount(), f.d.Asm.HeldBytes(); n != 0 || b != 0 {
		t.Fatalf("held after completion: %d pieces, %d bytes", n, b)
	}
	for _, p := range []string{"shardId-000000000000", "shardId-000000000001"} {
		if at, ok := f.d.OldestHeld("stream", p); ok {
			t.Fatalf("OldestHeld(%s) = %v after completion", p, at)
		}
	}
}

func TestReassemblyEveryOrder(t *testing.T) {
	pieces := fourPieces(t)
	perms := permutations(len(pieces))
	if len(perms) != 24 {
		t.Fatalf("%d permutations", len(perms))
	}
	for _, perm := range perms {
		var names []string
		for _, i := range perm {
			names = append(names, pieces[i].name)
		}
		t.Run(strings.Join(names, ","), func(t *testing.T) {
			f := newFeeder(t, 1<<20, time.Minute)
			for k, i := range perm {
				err := f.feed(pieces[i].rec, pieces[i].pos, t0)
				if k < len(perm)-1 && err != skipPending {
					t.Fatalf("piece %s: %v, want pending", pieces[i].name, err)
				}
				if k < len(perm)-1 {
					if _, ok := f.d.OldestHeld("stream", pieces[i].pos.Partition); !ok {
						t.Fatalf("piece %s held but OldestHeld reports nothing", pieces[i].name)
					}
				}
			}
			last := pieces[perm[len(perm)-1]]
			assertOneEvent(t, f, pieces[0].rec, last.pos)
			if f.d.DuplicatePieces != 0 {
				t.Fatalf("duplicates %d", f.d.DuplicatePieces)
			}
		})
	}
}

func TestReassemblyWithDuplicates(t *testing.T) {
	pieces := fourPieces(t)
	runs := 0
	for _, perm := range permutations(len(pieces)) {
		for dup := range pieces {
			for at := 0; at <= len(perm); at++ {
				seq := append([]int{}, perm[:at]...)
				seq = append(seq, dup)
				seq = append(seq, perm[at:]...)
				name := fmt.Sprintf("%v dup %s at %d", perm, pieces[dup].name, at)
				t.Run(name, func(t *testing.T) {
					runs++
					f := newFeeder(t, 1<<20, time.Minute)
					seen := map[int]bool{}
					var completing change.Position
					for k, i := range seq {
						p := pieces[i].pos
						if seen[i] { // a redelivery comes at a new offset
							p.Offset = strconv.Itoa(1000 + k)
						}
						seen[i] = true
						if err := f.feed(pieces[i].rec, p, t0); err == nil {
							completing = p
						}
					}
					assertOneEvent(t, f, pieces[0].rec, completing)
					if f.d.DuplicatePieces != 1 {
						t.Fatalf("duplicates %d, want 1", f.d.DuplicatePieces)
					}
					if n := strings.Count(strings.Join(f.skips, " "), SkipDuplicatePiece); n != 1 {
						t.Fatalf("%d duplicate skips, want 1: %v", n, f.skips)
					}
				})
			}
		}
	}
	if runs != 24*4*5 {
		t.Fatalf("%d runs", runs)
	}
}

// TestReassemblyInterleaved reassembles many sets whose pieces are
// interleaved and reversed, each with both images of a delete and an insert.
func TestReassemblyInterleaved(t *testing.T) {
	f := newFeeder(t, 1<<20, time.Minute)
	var all []testPiece
	for s := 0; s < 20; s++ {
		img := fmt.Sprintf(`{"id":%d,"pad":"%s"}`, s, strings.Repeat("é", 50+s))
		op, field := "c", "after"
		if s%2 == 1 {
			op, field = "d", "before"
		}
		main, frags := chunkSet(t, s, img, 1+s%4, op, field)
		all = append(all, testPiece{"main", main, pos("p"+strconv.Itoa(s%3), s*10)})
		for i, fr := range frags {
			all = append(all, testPiece{"f", fr, pos("p"+strconv.Itoa((s+i)%3), s*10+i+1)})
		}
	}
	for i := len(all) - 1; i >= 0; i-- {
		f.feed(all[i].rec, all[i].pos, t0)
	}
	if len(f.evs) != 20 || len(f.dead) != 0 || f.d.Asm.HeldCount() != 0 {
		t.Fatalf("%d events, %d dead, %d held", len(f.evs), len(f.dead), f.d.Asm.HeldCount())
	}
	for _, e := range f.evs {
		if !json.Valid(e.Image()) || e.Key == "" {
			t.Fatalf("event %+v", e)
		}
		if (e.Op == change.Delete) != (e.After == nil) {
			t.Fatalf("delete %s with after %s", e.Key, e.After)
		}
	}
}

func TestMemoryLimitEviction(t *testing.T) {
	mainA, fragsA := chunkSet(t, "A", bigImage, 3, "c", "after")
	mainB, fragsB := chunkSet(t, "B", `{"id":7}`, 2, "c", "after")
	bound := int64(len(mainA) + len(fragsA[0]) + len(fragsA[1]) + 10)
	f := newFeeder(t, bound, time.Minute)
	f.feed(mainA, pos("0", 1), t0)
	f.feed(fragsA[0], pos("1", 1), t0)
	f.feed(fragsA[1], pos("0", 2), t0)
	if f.d.Asm.HeldCount() != 3 || len(f.dead) != 0 {
		t.Fatalf("held %d, dead %d", f.d.Asm.HeldCount(), len(f.dead))
	}
	// B's main does not fit: A, the oldest set, is evicted whole.
	if err := f.feed(mainB, pos("1", 2), t0); err != skipPending {
		t.Fatalf("main B: %v", err)
	}
	if len(f.dead) != 3 {
		t.Fatalf("%d dead letters, want A's 3 pieces: %+v", len(f.dead), f.dead)
	}
	want := []struct {
		raw []byte
		pos change.Position
	}{{mainA, pos("0", 1)}, {fragsA[0], pos("1", 1)}, {fragsA[1], pos("0", 2)}}
	for i, w := range want {
		dl := f.dead[i]
		if dl.Reason != change.ReasonFragmentLimit || dl.Format != Format || !bytes.Equal(dl.Raw, w.raw) || dl.Position != w.pos {
			t.Fatalf("dead letter %d: %+v", i, dl)
		}
	}
	if f.d.Asm.HeldCount() != 1 || f.d.Asm.HeldBytes() != int64(len(mainB)) {
		t.Fatalf("held %d pieces %d bytes", f.d.Asm.HeldCount(), f.d.Asm.HeldBytes())
	}
	// A late piece of A is dead-lettered at once, not held.
	f.dead = nil
	err := f.feed(fragsA[2], pos("1", 3), t0)
	var p *change.Poison
	if !errors.As(err, &p) || p.Reason != change.ReasonFragmentLimit || f.d.Asm.HeldCount() != 1 {
		t.Fatalf("late piece of evicted set: %v, held %d", err, f.d.Asm.HeldCount())
	}
	// B still completes.
	f.dead = nil
	for i, fr := range fragsB {
		f.feed(fr, pos("0", 10+i), t0)
	}
	if len(f.evs) != 1 || len(f.dead) != 0 || f.evs[0].Key != "7" {
		t.Fatalf("B: %d events, dead %+v", len(f.evs), f.dead)
	}
}

func TestMemoryLimitEvictsOwnSet(t *testing.T) {
	main, frags := chunkSet(t, "A", bigImage, 3, "c", "after")
	bound := int64(len(main) + len(frags[0]) + 5)
	f := newFeeder(t, bound, time.Minute)
	f.feed(main, pos("0", 1), t0)
	f.feed(frags[0], pos("0", 2), t0)
	err := f.feed(frags[1], pos("0", 3), t0)
	var p *change.Poison
	if !errors.As(err, &p) || p.Reason != change.ReasonFragmentLimit {
		t.Fatalf("third piece: %v", err)
	}
	if len(f.dead) != 3 || f.d.Asm.HeldCount() != 0 {
		t.Fatalf("%d dead (want 2 evicted + the piece itself), %d held", len(f.dead), f.d.Asm.HeldCount())
	}
}

func TestPieceLargerThanBound(t *testing.T) {
	main, frags := chunkSet(t, "A", bigImage, 2, "c", "after")
	f := newFeeder(t, int64(len(frags[1])+1), time.Minute)
	if err := f.feed(frags[1], pos("0", 1), t0); err != skipPending {
		t.Fatalf("small piece: %v", err)
	}
	err := f.feed(main, pos("0", 2), t0)
	var p *change.Poison
	if !errors.As(err, &p) || p.Reason != change.ReasonFragmentLimit {
		t.Fatalf("oversized piece: %v", err)
	}
	if len(f.dead) != 2 || f.dead[1].Reason != change.ReasonFragmentLimit || !bytes.Equal(f.dead[1].Raw, frags[1]) {
		t.Fatalf("dead %+v", f.dead)
	}
	if f.d.Asm.HeldCount() != 0 {
		t.Fatalf("held %d", f.d.Asm.HeldCount())
	}
}

func TestExpire(t *testing.T) {
	mainA, fragsA := chunkSet(t, "A", bigImage, 2, "c", "after")
	_, fragsB := chunkSet(t, "B", bigImage, 2, "c", "after")
	_, fragsC := chunkSet(t, "C", bigImage, 2, "c", "after")
	f := newFeeder(t, 1<<20, time.Minute)
	f.feed(fragsA[0], pos("0", 1), t0)
	f.feed(mainA, pos("0", 2), t0.Add(50*time.Second)) // a later piece does not renew the set
	f.feed(fragsB[0], pos("0", 3), t0.Add(30*time.Second))
	f.feed(fragsC[0], pos("0", 4), t0.Add(-time.Hour)) // a clock going back: C still expires after B
	if got := f.d.Expire(t0.Add(time.Minute)); len(got) != 0 {
		t.Fatalf("expired at exactly the timeout: %+v", got)
	}
	got := f.d.Expire(t0.Add(time.Minute + time.Nanosecond))
	if len(got) != 2 || got[0].Reason != change.ReasonFragmentTimeout || !bytes.Equal(got[0].Raw, mainA) ||
		!bytes.Equal(got[1].Raw, fragsA[0]) || got[1].Position != pos("0", 1) || got[0].Format != Format {
		t.Fatalf("expired %+v", got)
	}
	if at, _ := f.d.OldestHeld("stream", "0"); at != pos("0", 3) {
		t.Fatalf("oldest held %v, want offset 3", at)
	}
	got = f.d.Expire(t0.Add(91 * time.Second))
	if len(got) != 2 || !bytes.Equal(got[0].Raw, fragsB[0]) || !bytes.Equal(got[1].Raw, fragsC[0]) {
		t.Fatalf("expired %+v", got)
	}
	if f.d.Asm.HeldCount() != 0 || f.d.Asm.HeldBytes() != 0 {
		t.Fatal("still holding after expiry")
	}
	// A late piece of an expired set is dead-lettered at once.
	err := f.feed(fragsA[1], pos("0", 9), t0.Add(2*time.Minute))
	var p *change.Poison
	if !errors.As(err, &p) || p.Reason != change.ReasonFragmentTimeout || f.d.Asm.HeldCount() != 0 {
		t.Fatalf("late piece: %v", err)
	}
}

func TestDrain(t *testing.T) {
	mainA, fragsA := chunkSet(t, "A", bigImage, 3, "c", "after")
	_, fragsB := chunkSet(t, 12, bigImage, 2, "d", "before")
	f := newFeeder(t, 1<<20, time.Minute)
	f.feed(mainA, pos("0", 1), t0)
	f.feed(fragsA[2], pos("1", 1), t0)
	f.feed(fragsB[1], pos("1", 2), t0)
	got := f.d.Drain()
	if len(got) != 3 {
		t.Fatalf("drained %d, want 3", len(got))
	}
	for _, dl := range got {
		if dl.Reason != change.ReasonFragmentTimeout || !strings.Contains(dl.Detail, "input ended") || len(dl.Raw) == 0 {
			t.Fatalf("drained %+v", dl)
		}
	}
	if f.d.Asm.HeldCount() != 0 || f.d.Asm.HeldBytes() != 0 || len(f.d.Drain()) != 0 {
		t.Fatal("still holding after Drain")
	}
}

func TestOldestHeld(t *testing.T) {
	mainA, fragsA := chunkSet(t, "A", bigImage, 2, "c", "after")
	mainB, fragsB := chunkSet(t, "B", bigImage, 2, "c", "after")
	f := newFeeder(t, 1<<20, time.Minute)
	f.feed(mainA, pos("0", 100), t0)
	f.feed(fragsA[0], pos("0", 9), t0)
	f.feed(mainB, pos("0", 10), t0)
	f.feed(fragsB[0], pos("1", 5), t0)
	other := change.Position{Source: "other", Partition: "0", Offset: "1"}
	f.feed(fragsB[1], other, t0) // completes B
	if len(f.evs) != 1 {
		t.Fatalf("%d events", len(f.evs))
	}
	tests := []struct {
		source, partition string
		want              change.Position
		ok                bool
	}{
		{"stream", "0", pos("0", 9), true}, // numeric, not lexical: 9 < 100
		{"stream", "1", change.Position{}, false},
		{"other", "0", change.Position{}, false},
		{"stream", "2", change.Position{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.source+"/"+tt.partition, func(t *testing.T) {
			got, ok := f.d.OldestHeld(tt.source, tt.partition)
			if ok != tt.ok || got != tt.want {
				t.Fatalf("OldestHeld = %v %v, want %v %v", got, ok, tt.want, tt.ok)
			}
		})
	}
	f.feed(fragsA[1], pos("0", 101), t0)
	if _, ok := f.d.OldestHeld("stream", "0"); ok || len(f.evs) != 2 {
		t.Fatal("A complete, yet something is held")
	}
}

func TestFragmentsBeyondCountBeforeMain(t *testing.T) {
	main, frags := chunkSet(t, "A", bigImage, 2, "c", "after")
	f := newFeeder(t, 1<<20, time.Minute)
	stray := []byte(`{"type":"fragment","chunk_id":"A","index":5,"data":"zzz"}`)
	f.feed(stray, pos("0", 1), t0)
	f.feed(frags[0], pos("0", 2), t0)
	f.feed(main, pos("0", 3), t0)
	if len(f.dead) != 1 || f.dead[0].Reason != change.ReasonFragmentInvalid || !bytes.Equal(f.dead[0].Raw, stray) {
		t.Fatalf("dead %+v", f.dead)
	}
	f.feed(frags[1], pos("0", 4), t0)
	if len(f.evs) != 1 || string(f.evs[0].After) != bigImage || f.d.Asm.HeldCount() != 0 {
		t.Fatalf("events %d held %d", len(f.evs), f.d.Asm.HeldCount())
	}
}

func TestFragmentPoison(t *testing.T) {
	main, _ := chunkSet(t, "A", bigImage, 2, "c", "after")
	tests := []struct {
		name   string
		before [][]byte
		rec    string
		reason string
		field  string
	}{
		{name: "too many fragments", rec: strings.Replace(string(main), `"fragments":2`, `"fragments":100001`, 1), reason: change.ReasonFragmentInvalid, field: "chunked.fragments"},
		{name: "negative fragments", rec: strings.Replace(string(main), `"fragments":2`, `"fragments":-1`, 1), reason: change.ReasonFragmentInvalid, field: "chunked.fragments"},
		{name: "fractional fragments", rec: strings.Replace(string(main), `"fragments":2`, `"fragments":2.5`, 1), reason: change.ReasonFragmentInvalid, field: "chunked.fragments"},
		{name: "negative index", rec: `{"type":"fragment","chunk_id":"A","index":-1,"data":"{}"}`, reason: change.ReasonFragmentInvalid, field: "index"},
		{name: "missing chunk id", rec: `{"type":"fragment","index":0,"data":"{}"}`, reason: change.ReasonFragmentInvalid, field: "chunk_id"},
		{name: "object chunk id", rec: `{"type":"fragment","chunk_id":{},"index":0,"data":"{}"}`, reason: change.ReasonFragmentInvalid, field: "chunk_id"},
		{name: "long chunk id", rec: `{"type":"fragment","chunk_id":"` + strings.Repeat("a", 1025) + `","index":0,"data":"{}"}`, reason: change.ReasonFragmentInvalid, field: "chunk_id"},
		{name: "no chunked object", rec: `{"type":"chunked","op":"c","source":{"ts_ns":1,"table":"t"}}`, reason: change.ReasonFragmentInvalid, field: "chunked"},
		{name: "conflicting main", before: [][]byte{main}, rec: strings.Replace(string(main), `"fragments":2`, `"fragments":3`, 1), reason: change.ReasonFragmentInvalid, field: "chunked"},
		{name: "main without table", rec: strings.Replace(string(main), `"table":"docs",`, ``, 1), reason: change.ReasonMissingTable, field: "source.table"},
		{name: "main needs after but chunks before", rec: strings.Replace(string(main), `"field":"after"`, `"field":"before"`, 1), reason: change.ReasonMissingImage, field: "after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFeeder(t, 1<<20, time.Minute)
			for i, b := range tt.before {
				f.feed(b, pos("0", i), t0)
			}
			err := f.feed([]byte(tt.rec), pos("0", 99), t0)
			var p *change.Poison
			if !errors.As(err, &p) || p.Reason != tt.reason || p.Field != tt.field {
				t.Fatalf("got %v (field %q), want %s at %s", err, fieldOf(err), tt.reason, tt.field)
			}
		})
	}
}

func fieldOf(err error) string {
	var p *change.Poison
	if errors.As(err, &p) {
		return p.Field
	}
	return ""
}

func TestReassembledImageNotObject(t *testing.T) {
	main, frags := chunkSet(t, "A", `[1,2,3]`, 2, "c", "after")
	f := newFeeder(t, 1<<20, time.Minute)
	f.feed(main, pos("0", 1), t0)
	f.feed(frags[0], pos("0", 2), t0)
	err := f.feed(frags[1], pos("0", 3), t0)
	var p *change.Poison
	if !errors.As(err, &p) || p.Reason != change.ReasonInvalidJSON || !strings.Contains(p.Detail, "not a JSON object") {
		t.Fatalf("got %v", err)
	}
	if len(f.dead) != 3 || len(f.evs) != 0 || f.d.Asm.HeldCount() != 0 {
		t.Fatalf("%d dead %d events %d held", len(f.dead), len(f.evs), f.d.Asm.HeldCount())
	}
}

func TestReassembledMissingKey(t *testing.T) {
	main, frags := chunkSet(t, "A", `{"uuid":"x"}`, 2, "c", "after")
	f := newFeeder(t, 1<<20, time.Minute)
	f.feed(frags[1], pos("0", 1), t0)
	f.feed(frags[0], pos("0", 2), t0)
	err := f.feed(main, pos("0", 3), t0)
	var p *change.Poison
	if !errors.As(err, &p) || p.Reason != change.ReasonMissingKey || !strings.Contains(p.Detail, "chunk_id A") {
		t.Fatalf("got %v", err)
	}
	if len(f.dead) != 3 {
		t.Fatalf("%d dead", len(f.dead))
	}
}

func TestReset(t *testing.T) {
	pieces := fourPieces(t)
	f := newFeeder(t, 1<<20, time.Minute)
	for _, p := range pieces {
		f.feed(p.rec, p.pos, t0)
	}
	f.feed(pieces[1].rec, pieces[1].pos, t0) // late duplicate: dropped
	if len(f.evs) != 1 || f.d.DuplicatePieces != 1 {
		t.Fatalf("%d events, %d duplicates", len(f.evs), f.d.DuplicatePieces)
	}
	f.feed(pieces[0].rec, pieces[0].pos, t0) // held main ...
	f.d.Reset()                              // ... forgotten on rewind
	if f.d.Asm.HeldCount() != 0 {
		t.Fatal("held after Reset")
	}
	for _, p := range pieces { // the rewound source delivers the set again
		f.feed(p.rec, p.pos, t0)
	}
	if len(f.evs) != 2 || len(f.dead) != 0 {
		t.Fatalf("%d events, %d dead after Reset", len(f.evs), len(f.dead))
	}
}

func TestRecentMemoryBounded(t *testing.T) {
	var r recentSet
	for i := 0; i < recentIDs+5000; i++ {
		r.add(strconv.Itoa(i), "")
	}
	if len(r.m) != recentIDs || len(r.q)-r.head != recentIDs {
		t.Fatalf("remembered %d ids (%d queued), want %d", len(r.m), len(r.q)-r.head, recentIDs)
	}
	if _, ok := r.lookup([]byte("0")); ok {
		t.Fatal("oldest id still remembered")
	}
	if _, ok := r.lookup([]byte(strconv.Itoa(recentIDs + 4999))); !ok {
		t.Fatal("newest id forgotten")
	}
	big := strings.Repeat("x", maxChunkIDLen)
	for i := 0; i < 2*recentIDsBytes/maxChunkIDLen; i++ {
		r.add(big+strconv.Itoa(i), "")
	}
	if r.bytes > recentIDsBytes {
		t.Fatalf("remembered %d bytes of ids", r.bytes)
	}
}

func TestImageJoinsSurrogatePairAcrossPieces(t *testing.T) {
	main, _ := chunkSet(t, "S", `{}`, 2, "c", "after")
	f := newFeeder(t, 1<<20, time.Minute)
	f.feed(main, pos("0", 1), t0)
	f.feed([]byte(`{"type":"fragment","chunk_id":"S","index":0,"data":"{\"id\":\"\ud83d"}`), pos("0", 2), t0)
	f.feed([]byte(`{"type":"fragment","chunk_id":"S","index":1,"data":"\ude00\"}"}`), pos("0", 3), t0)
	if len(f.evs) != 1 || f.evs[0].Key != "😀" || !utf8.Valid(f.evs[0].After) {
		t.Fatalf("events %+v dead %+v", f.evs, f.dead)
	}
}

func TestBadDuplicateMainKeepsSet(t *testing.T) {
	main, frags := chunkSet(t, "A", bigImage, 2, "c", "after")
	bad := strings.Replace(string(main), `"table":"docs",`, ``, 1)
	f := newFeeder(t, 1<<20, time.Minute)
	f.feed(main, pos("0", 1), t0)
	f.feed(frags[0], pos("0", 2), t0)
	err := f.feed([]byte(bad), pos("0", 3), t0)
	var p *change.Poison
	if !errors.As(err, &p) || p.Reason != change.ReasonMissingTable || len(f.dead) != 1 {
		t.Fatalf("bad duplicate main: %v, %d dead", err, len(f.dead))
	}
	f.feed(frags[1], pos("0", 4), t0)
	if len(f.evs) != 1 || len(f.dead) != 1 {
		t.Fatalf("%d events, %d dead: the valid set must still complete", len(f.evs), len(f.dead))
	}
}
