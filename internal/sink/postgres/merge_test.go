package postgres

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/sink/sinktest"
	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

// TestMergeDecides checks the merge's two paths batch by batch: keys with a
// single event in the batch (staged blind; the statements decide and return
// what they applied, the rest is read afterwards) and keys with several
// events or a soft delete (stored orders read first, decided in Go). Each
// step checks the counts, the merged rows and the tombstones, so a stale
// delete that wrote a tombstone, or a put that went in past one, fails.
func TestMergeDecides(t *testing.T) {
	type step struct {
		events  func(s *sinktest.Stream) []change.Event
		applied int
		dups    int
		stale   int
		rows    string // key=v[*] (deleted) sorted, ";"-joined
		tombs   string // key@ns sorted
	}
	var s1, s2, s3 change.Event // redelivered by later steps
	cases := []struct {
		name  string
		soft  bool
		steps []step
	}{
		{name: "blind puts", steps: []step{
			{events: func(s *sinktest.Stream) []change.Event {
				s1 = s.Put("t", "1", 100, `{"id":1,"v":"a"}`)
				return []change.Event{s1, s.Put("t", "2", 100, `{"id":2,"v":"b"}`)}
			}, applied: 2, rows: "1=a;2=b"},
			{events: func(s *sinktest.Stream) []change.Event {
				return []change.Event{s.Redeliver(s1), s.Update("t", "2", 50, `{"id":2,"v":"old"}`), s.Put("t", "3", 100, `{"id":3,"v":"c"}`)}
			}, applied: 1, dups: 1, stale: 1, rows: "1=a;2=b;3=c"},
		}},
		{name: "blind deletes", steps: []step{
			{events: func(s *sinktest.Stream) []change.Event {
				return []change.Event{s.Put("t", "1", 100, `{"id":1,"v":"a"}`), s.Put("t", "2", 300, `{"id":2,"v":"b"}`)}
			}, applied: 2, rows: "1=a;2=b"},
			{events: func(s *sinktest.Stream) []change.Event {
				s1 = s.Delete("t", "1", 200)
				// 2's row is newer: stale, and no tombstone; 3 was never seen.
				return []change.Event{s1, s.Delete("t", "2", 200), s.Delete("t", "3", 200)}
			}, applied: 2, stale: 1, rows: "2=b", tombs: "1@200;3@200"},
			{events: func(s *sinktest.Stream) []change.Event {
				return []change.Event{s.Redeliver(s1), s.Put("t", "3", 150, `{"id":3,"v":"late"}`), s.Delete("t", "9", 1), s.Put("t", "4", 10, `{"id":4,"v":"d"}`)}
			}, applied: 2, dups: 1, stale: 1, rows: "2=b;4=d", tombs: "1@200;3@200;9@1"},
			{events: func(s *sinktest.Stream) []change.Event {
				return []change.Event{s.Put("t", "3", 250, `{"id":3,"v":"again"}`), s.Delete("t", "3", 240)}
			}, applied: 1, stale: 1, rows: "2=b;3=again;4=d", tombs: "1@200;3@200;9@1"},
			{events: func(s *sinktest.Stream) []change.Event {
				// A put with its key's tombstone's order (one source
				// transaction) does not go in; the order is the stored one.
				return []change.Event{s.Put("t", "1", 200, `{"id":1,"v":"same"}`)}
			}, dups: 1, rows: "2=b;3=again;4=d", tombs: "1@200;3@200;9@1"},
		}},
		{name: "several events per key", steps: []step{
			{events: func(s *sinktest.Stream) []change.Event {
				s2 = s.Put("t", "5", 100, `{"id":5,"v":"a"}`)
				return []change.Event{s2}
			}, applied: 1, rows: "5=a"},
			{events: func(s *sinktest.Stream) []change.Event {
				// The stored event again (duplicate), an older one, the winner
				// and the winner again.
				w := s.Update("t", "5", 300, `{"id":5,"v":"c"}`)
				return []change.Event{s.Redeliver(s2), s.Update("t", "5", 50, `{"id":5,"v":"x"}`), w, s.Redeliver(w)}
			}, applied: 1, dups: 2, stale: 1, rows: "5=c"},
			{events: func(s *sinktest.Stream) []change.Event {
				s3 = s.Delete("t", "5", 400)
				return []change.Event{s.Update("t", "5", 350, `{"id":5,"v":"d"}`), s3, s.Put("t", "6", 1, `{"id":6,"v":"e"}`), s.Delete("t", "6", 2)}
			}, applied: 2, stale: 2, tombs: "5@400;6@2"},
			{events: func(s *sinktest.Stream) []change.Event {
				return []change.Event{s.Redeliver(s3), s.Update("t", "5", 390, `{"id":5,"v":"late"}`)}
			}, dups: 1, stale: 1, tombs: "5@400;6@2"},
		}},
		{name: "soft delete", soft: true, steps: []step{
			{events: func(s *sinktest.Stream) []change.Event {
				return []change.Event{s.Put("t", "1", 100, `{"id":1,"v":"a"}`), s.Put("t", "2", 100, `{"id":2,"v":"b"}`)}
			}, applied: 2, rows: "1=a;2=b"},
			{events: func(s *sinktest.Stream) []change.Event {
				s1 = s.Delete("t", "1", 200)
				// 2: a newer put and its delete in one batch keep the put's values.
				return []change.Event{s1, s.Update("t", "2", 150, `{"id":2,"v":"b2"}`), s.Delete("t", "2", 160), s.Delete("t", "3", 200)}
			}, applied: 3, stale: 1, rows: "1=a*;2=b2*;3=<NULL>*", tombs: "1@200;2@160;3@200"},
			{events: func(s *sinktest.Stream) []change.Event {
				return []change.Event{s.Redeliver(s1), s.Put("t", "2", 155, `{"id":2,"v":"late"}`), s.Put("t", "3", 300, `{"id":3,"v":"c"}`)}
			}, applied: 1, dups: 1, stale: 1, rows: "1=a*;2=b2*;3=c", tombs: "1@200;2@160;3@200"},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, Options{DeadLetterTable: true, SoftDelete: tc.soft})
			db := s.testDB(t)
			st := sinktest.NewStream("k", "0")
			for i, step := range tc.steps {
				res := apply(t, s, st.Batch(step.events(st)...))
				if res.Applied != step.applied || res.Duplicates != step.dups || res.Stale != step.stale ||
					res.Logged != res.Applied+res.Duplicates+res.Stale {
					t.Errorf("step %d: %+v, want applied %d, duplicates %d, stale %d", i+1, res, step.applied, step.dups, step.stale)
				}
				deleted := "false"
				if tc.soft {
					deleted = q(sqlgen.ColDeleted)
				}
				rows := fmtRows(t, db, "SELECT "+q(sqlgen.ColRecordID)+", v, "+deleted+" FROM t ORDER BY 1")
				for j, r := range rows {
					p := strings.Split(r, "|")
					rows[j] = p[0] + "=" + p[1]
					if p[2] == "true" {
						rows[j] += "*"
					}
				}
				if got := strings.Join(rows, ";"); got != step.rows {
					t.Errorf("step %d: rows %q, want %q", i+1, got, step.rows)
				}
				tombs := fmtRows(t, db, "SELECT record_id, commit_order FROM "+q(sqlgen.TombstonesTable)+" WHERE table_name = 't'")
				for j, r := range tombs {
					p := strings.Split(r, "|")
					var ns int64
					for _, o := range []int64{1, 2, 160, 200, 240, 400} {
						if (change.Order{CommitNS: o}).Key() == p[1] {
							ns = o
						}
					}
					tombs[j] = fmt.Sprintf("%s@%d", p[0], ns)
				}
				sort.Strings(tombs)
				if got := strings.Join(tombs, ";"); got != step.tombs {
					t.Errorf("step %d: tombstones %q, want %q", i+1, got, step.tombs)
				}
			}
		})
	}
}

// TestMergeMatchesModel applies shuffled histories with redeliveries, in
// batches of random sizes (so keys have one or several events per batch),
// and checks every batch's counts and the final rows and tombstones against
// a model of the merge rules: per key, the latest event of the batch wins
// when it is newer than both the stored row and the tombstone; an event with
// the stored order, or the same change as the winner that applied, is a
// duplicate; the rest is stale.
func TestMergeMatchesModel(t *testing.T) {
	type mrow struct {
		order, v string // v "" for none
		deleted  bool
	}
	for _, soft := range []bool{false, true} {
		for seed := int64(1); seed <= 4; seed++ {
			t.Run(fmt.Sprintf("soft=%v/seed%d", soft, seed), func(t *testing.T) {
				rng := rand.New(rand.NewSource(seed))
				s := openTest(t, Options{DeadLetterTable: true, SoftDelete: soft})
				db := s.testDB(t)
				st := sinktest.NewStream("m", "0")
				var delivery []change.Event
				ns := int64(1000)
				for i := 0; i < 120; i++ {
					key := strconv.Itoa(rng.Intn(8))
					ns += int64(1 + rng.Intn(3))
					var ev change.Event
					if rng.Intn(4) == 0 {
						ev = st.Delete("t", key, ns)
					} else {
						ev = st.Put("t", key, ns, fmt.Sprintf(`{"id":%q,"v":"v%d"}`, key, i))
					}
					delivery = append(delivery, ev)
					if rng.Intn(3) == 0 {
						delivery = append(delivery, st.Redeliver(ev))
					}
				}
				rng.Shuffle(len(delivery), func(i, j int) { delivery[i], delivery[j] = delivery[j], delivery[i] })
				// A first put creates the table.
				delivery = append([]change.Event{st.Put("t", "seed", 1, `{"id":"seed","v":"s"}`)}, delivery...)

				rows, tombs := map[string]mrow{}, map[string]string{}
				valueOf := func(e *change.Event) string {
					var img struct{ V string }
					if err := json.Unmarshal(e.After, &img); err != nil {
						t.Fatal(err)
					}
					return img.V
				}
				for b := 1; len(delivery) > 0; b++ {
					n := min(len(delivery), 1+rng.Intn(12))
					events := delivery[:n]
					delivery = delivery[n:]
					var want change.ApplyResult
					byKey := map[string][]*change.Event{}
					var keys []string
					for i := range events {
						e := &events[i]
						if byKey[e.Key] == nil {
							keys = append(keys, e.Key)
						}
						byKey[e.Key] = append(byKey[e.Key], e)
					}
					for _, k := range keys {
						evs := byKey[k]
						w := evs[0]
						for _, e := range evs[1:] {
							if change.Compare(e, w) > 0 {
								w = e
							}
						}
						r, hasRow := rows[k]
						stored := max(r.order, tombs[k])
						apply := stored == "" || w.Order.Key() > stored
						for _, e := range evs {
							switch {
							case apply && e == w:
								want.Applied++
							case e.Order.Key() == stored || (apply && change.SameChange(e, w)):
								want.Duplicates++
							default:
								want.Stale++
							}
						}
						if !apply {
							continue
						}
						switch {
						case w.Op != change.Delete:
							rows[k] = mrow{order: w.Order.Key(), v: valueOf(w)}
						case soft:
							v := r.v
							var latest *change.Event
							for _, e := range evs {
								if e.Op != change.Delete && e.Order.Key() > r.order && (latest == nil || change.Compare(e, latest) > 0) {
									latest = e
								}
							}
							if latest != nil {
								v = valueOf(latest)
							} else if !hasRow {
								v = ""
							}
							rows[k] = mrow{order: w.Order.Key(), v: v, deleted: true}
							tombs[k] = w.Order.Key()
						default:
							delete(rows, k)
							tombs[k] = w.Order.Key()
						}
					}
					res := apply(t, s, &change.Batch{Events: events})
					if res.Applied != want.Applied || res.Duplicates != want.Duplicates || res.Stale != want.Stale {
						t.Fatalf("batch %d (%d events): %+v, want applied %d, duplicates %d, stale %d",
							b, n, res, want.Applied, want.Duplicates, want.Stale)
					}
				}
				deleted := "false"
				if soft {
					deleted = q(sqlgen.ColDeleted)
				}
				var wantRows []string
				for k, r := range rows {
					v := r.v
					if v == "" {
						v = "<NULL>"
					}
					wantRows = append(wantRows, fmt.Sprintf("%s|%s|%s|%v", k, r.order, v, r.deleted))
				}
				sort.Strings(wantRows)
				gotRows := fmtRows(t, db, "SELECT "+q(sqlgen.ColRecordID)+", "+q(sqlgen.ColCommitOrder)+", v, "+deleted+" FROM t ORDER BY 1")
				if strings.Join(gotRows, "\n") != strings.Join(wantRows, "\n") {
					t.Errorf("rows:\n%s\nwant:\n%s", strings.Join(gotRows, "\n"), strings.Join(wantRows, "\n"))
				}
				var wantTombs []string
				for k, o := range tombs {
					wantTombs = append(wantTombs, k+"|"+o)
				}
				sort.Strings(wantTombs)
				gotTombs := fmtRows(t, db, "SELECT record_id, commit_order FROM "+q(sqlgen.TombstonesTable)+" WHERE table_name = 't' ORDER BY 1")
				if strings.Join(gotTombs, "\n") != strings.Join(wantTombs, "\n") {
					t.Errorf("tombstones:\n%s\nwant:\n%s", strings.Join(gotTombs, "\n"), strings.Join(wantTombs, "\n"))
				}
			})
		}
	}
}
