package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/sink/sinktest"
)

// openLeases opens a sink on a fresh schema and its lease table.
func openLeases(t *testing.T) (*Sink, *LeaseTable) {
	t.Helper()
	s := openTest(t, Options{DeadLetterTable: true})
	lt, err := s.LeaseTable(ctxb())
	if err != nil {
		t.Fatalf("lease table: %v", err)
	}
	t.Cleanup(func() { lt.Close(ctxb()) })
	return s, lt
}

func acquire(t *testing.T, lt *LeaseTable, shard, owner string, ttl time.Duration) (Lease, bool) {
	t.Helper()
	l, ok, err := lt.AcquireLease(ctxb(), "st", shard, owner, ttl)
	if err != nil {
		t.Fatalf("acquire %s for %s: %v", shard, owner, err)
	}
	return l, ok
}

// waitExpired polls the table until the database clock says the shard's
// lease expired.
func waitExpired(t *testing.T, lt *LeaseTable, shard string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ls, err := lt.Leases(ctxb(), "st")
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			if l.Shard == shard && l.Expired {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("lease of %s not expired after a minute: %+v", shard, ls)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLeaseTable walks the Leaser contract step by step.
func TestLeaseTable(t *testing.T) {
	_, lt := openLeases(t)
	const long = time.Hour
	type step struct {
		name string
		do   func(t *testing.T)
	}
	var a1, a2, b1 Lease
	steps := []step{
		{"first take is epoch 1", func(t *testing.T) {
			l, ok := acquire(t, lt, "s0", "a", long)
			if !ok || l != (Lease{Stream: "st", Shard: "s0", Owner: "a", Epoch: 1}) {
				t.Fatalf("got %+v %t", l, ok)
			}
			a1 = l
		}},
		{"a live lease is not taken by another owner", func(t *testing.T) {
			l, ok := acquire(t, lt, "s0", "b", long)
			if ok || l.Owner != "a" || l.Epoch != 1 {
				t.Fatalf("got %+v %t, want refused with a's lease", l, ok)
			}
		}},
		{"renew at the held epoch", func(t *testing.T) {
			if ok, err := lt.RenewLease(ctxb(), a1, long); err != nil || !ok {
				t.Fatalf("renew = %t, %v", ok, err)
			}
		}},
		{"a take again by its owner increments the epoch", func(t *testing.T) {
			l, ok := acquire(t, lt, "s0", "a", long)
			if !ok || l.Epoch != 2 || l.Owner != "a" {
				t.Fatalf("got %+v %t, want a at epoch 2", l, ok)
			}
			a2 = l
		}},
		{"renew at an old epoch fails", func(t *testing.T) {
			if ok, err := lt.RenewLease(ctxb(), a1, long); err != nil || ok {
				t.Fatalf("renew of epoch 1 = %t, %v; want false", ok, err)
			}
		}},
		{"release at an old epoch changes nothing", func(t *testing.T) {
			if err := lt.ReleaseLease(ctxb(), a1); err != nil {
				t.Fatal(err)
			}
			if _, ok := acquire(t, lt, "s0", "b", long); ok {
				t.Fatal("b took a lease a still holds at epoch 2")
			}
		}},
		{"release frees it; another owner takes it at the next epoch", func(t *testing.T) {
			if err := lt.ReleaseLease(ctxb(), a2); err != nil {
				t.Fatal(err)
			}
			if ok, _ := lt.RenewLease(ctxb(), a2, long); ok {
				t.Fatal("renewed a released lease")
			}
			l, ok := acquire(t, lt, "s0", "b", long)
			if !ok || l.Epoch != 3 || l.Owner != "b" {
				t.Fatalf("got %+v %t, want b at epoch 3", l, ok)
			}
			b1 = l
		}},
		{"an expired lease is taken by another owner", func(t *testing.T) {
			short, ok := acquire(t, lt, "s1", "a", 200*time.Millisecond)
			if !ok {
				t.Fatal("first take of s1 refused")
			}
			waitExpired(t, lt, "s1")
			l, ok := acquire(t, lt, "s1", "b", long)
			if !ok || l.Epoch != short.Epoch+1 {
				t.Fatalf("got %+v %t, want b at epoch %d", l, ok, short.Epoch+1)
			}
			if ok, _ := lt.RenewLease(ctxb(), short, long); ok {
				t.Fatal("a renewed a lease b took")
			}
		}},
		{"finish at an old epoch changes nothing", func(t *testing.T) {
			if err := lt.FinishLease(ctxb(), a2); err != nil {
				t.Fatal(err)
			}
			if ok, _ := lt.RenewLease(ctxb(), b1, long); !ok {
				t.Fatal("b's lease is gone after a stale finish")
			}
		}},
		{"a finished lease is never taken again", func(t *testing.T) {
			if err := lt.FinishLease(ctxb(), b1); err != nil {
				t.Fatal(err)
			}
			for _, owner := range []string{"a", "b"} {
				if l, ok := acquire(t, lt, "s0", owner, long); ok || !l.Finished {
					t.Fatalf("%s took a finished lease: %+v %t", owner, l, ok)
				}
			}
			if ok, _ := lt.RenewLease(ctxb(), b1, long); ok {
				t.Fatal("renewed a finished lease")
			}
		}},
		{"list", func(t *testing.T) {
			ls, err := lt.Leases(ctxb(), "st")
			if err != nil {
				t.Fatal(err)
			}
			want := []Lease{
				{Stream: "st", Shard: "s0", Owner: "", Epoch: 3, Finished: true},
				{Stream: "st", Shard: "s1", Owner: "b", Epoch: 2},
			}
			if !slices.Equal(ls, want) {
				t.Fatalf("leases %+v\nwant %+v", ls, want)
			}
			if other, _ := lt.Leases(ctxb(), "other"); len(other) != 0 {
				t.Fatalf("leases of another stream: %+v", other)
			}
		}},
	}
	for _, st := range steps {
		if !t.Run(st.name, st.do) {
			return
		}
	}
}

func TestLeaseOwners(t *testing.T) {
	_, lt := openLeases(t)
	for _, hb := range []struct {
		stream, owner string
		ttl           time.Duration
	}{{"st", "b", time.Hour}, {"st", "a", time.Hour}, {"st", "gone", 100 * time.Millisecond}, {"other", "c", time.Hour}} {
		if err := lt.Heartbeat(ctxb(), hb.stream, hb.owner, hb.ttl); err != nil {
			t.Fatal(err)
		}
	}
	if err := lt.Heartbeat(ctxb(), "st", "a", time.Hour); err != nil { // again: an update
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		got, err := lt.Owners(ctxb(), "st")
		if err != nil {
			t.Fatal(err)
		}
		if slices.Equal(got, []string{"a", "b"}) {
			break
		}
		if !slices.Equal(got, []string{"a", "b", "gone"}) || time.Now().After(deadline) {
			t.Fatalf("owners %v, want [a b] once gone's heartbeat expired", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLeaseTableValidates(t *testing.T) {
	_, lt := openLeases(t)
	if _, _, err := lt.AcquireLease(ctxb(), "st", "s0", "", time.Second); err == nil || !strings.Contains(err.Error(), "owner") {
		t.Errorf("empty owner: %v", err)
	}
	if _, _, err := lt.AcquireLease(ctxb(), "st", "s0", "a", 0); err == nil || !strings.Contains(err.Error(), "ttl") {
		t.Errorf("zero ttl: %v", err)
	}
	lt.Close(ctxb())
	if _, err := lt.Leases(ctxb(), "st"); err == nil || !strings.Contains(err.Error(), "after close") {
		t.Errorf("after close: %v", err)
	}
}

// TestLeaseRace has many owners take one free shard at once: exactly one
// wins, at epoch 1.
func TestLeaseRace(t *testing.T) {
	s, _ := openLeases(t)
	const owners = 8
	tables := make([]*LeaseTable, owners)
	for i := range tables {
		lt, err := s.LeaseTable(ctxb())
		if err != nil {
			t.Fatal(err)
		}
		defer lt.Close(ctxb())
		tables[i] = lt
	}
	for round := 0; round < 5; round++ {
		shard := fmt.Sprintf("race-%d", round)
		var wg sync.WaitGroup
		won := make([]Lease, owners)
		oks := make([]bool, owners)
		start := make(chan struct{})
		for i, lt := range tables {
			wg.Go(func() {
				<-start
				l, ok, err := lt.AcquireLease(ctxb(), "st", shard, fmt.Sprintf("o%d", i), time.Hour)
				if err != nil {
					t.Error(err)
				}
				won[i], oks[i] = l, ok
			})
		}
		close(start)
		wg.Wait()
		var winners []Lease
		for i := range oks {
			if oks[i] {
				winners = append(winners, won[i])
			}
		}
		if len(winners) != 1 || winners[0].Epoch != 1 {
			t.Fatalf("round %d: winners %+v, want exactly one at epoch 1", round, winners)
		}
	}
}

// leased marks the batch's checkpoints as read under l.
func leased(b *change.Batch, l Lease) *change.Batch {
	for i := range b.Checkpoints {
		b.Checkpoints[i].LeaseOwner, b.Checkpoints[i].LeaseEpoch = l.Owner, l.Epoch
	}
	return b
}

// TestFencing: a stale owner's batch stores nothing of the shard it lost
// (events, dead letters, checkpoint) and everything of a shard it still
// holds; the new owner's batch is stored.
func TestFencing(t *testing.T) {
	s, lt := openLeases(t)
	db := s.testDB(t)
	s0, s1 := sinktest.NewStream("st", "s0"), sinktest.NewStream("st", "s1")
	s0.Schema, s1.Schema = "", ""
	a0, ok0 := acquire(t, lt, "s0", "a", 300*time.Millisecond)
	a1, ok1 := acquire(t, lt, "s1", "a", time.Hour)
	if !ok0 || !ok1 {
		t.Fatal("a could not take both shards")
	}
	res := apply(t, s, leased(s0.Batch(s0.Put("t", "1", 100, `{"id":1,"v":"a"}`)), a0))
	if res.Logged != 1 || len(res.Fenced) != 0 {
		t.Fatalf("a's first batch: %+v, want stored", res)
	}

	// b takes s0 once a's lease expired; a has read more of s0 and s1.
	waitExpired(t, lt, "s0")
	b0, ok := acquire(t, lt, "s0", "b", time.Hour)
	if !ok || b0.Epoch != a0.Epoch+1 {
		t.Fatalf("b's take: %+v %t", b0, ok)
	}
	stale := &change.Batch{
		Events: []change.Event{s0.Put("t", "1", 200, `{"id":1,"v":"stale"}`), s1.Put("t", "2", 200, `{"id":2,"v":"kept"}`)},
		Dead: []change.DeadLetter{{Reason: change.ReasonInvalidJSON, Position: change.Position{Source: "st", Partition: "s0", Offset: "99"}, Raw: []byte("{")},
			{Reason: change.ReasonInvalidJSON, Position: change.Position{Source: "st", Partition: "s1", Offset: "99"}, Raw: []byte("[")}},
	}
	cp0, cp1 := s0.Checkpoint(), s1.Checkpoint()
	cp0.LeaseOwner, cp0.LeaseEpoch = a0.Owner, a0.Epoch
	cp1.LeaseOwner, cp1.LeaseEpoch = a1.Owner, a1.Epoch
	stale.Checkpoints = []change.Checkpoint{cp0, cp1}
	res = apply(t, s, stale)
	if !slices.Equal(res.Fenced, []string{"st/s0"}) || res.Logged != 1 || res.Dead[change.ReasonInvalidJSON] != 1 {
		t.Fatalf("stale batch: %+v, want s0 fenced, s1's event and dead letter stored", res)
	}
	got := fmtRows(t, db, "SELECT stream_position FROM cdc_events ORDER BY event_id")
	if want := []string{"st[s0]@1", "st[s1]@1"}; !slices.Equal(got, want) {
		t.Errorf("log %v, want %v", got, want)
	}
	if got := fmtRows(t, db, "SELECT position FROM cdc_dead_letters"); !slices.Equal(got, []string{"st[s1]@99"}) {
		t.Errorf("dead letters %v, want only s1's", got)
	}
	if got := fmtRows(t, db, "SELECT v FROM t ORDER BY _cdc_record_id"); !slices.Equal(got, []string{"a", "kept"}) {
		t.Errorf("merged %v, want s0's row unchanged", got)
	}
	// The first part of a bisected batch carries no checkpoint, only the
	// fences of its leases (change.Batch.Fences): fenced all the same.
	part := &change.Batch{Events: []change.Event{s0.Put("t", "1", 250, `{"id":1,"v":"stale part"}`)}, Fences: []change.Checkpoint{cp0}}
	if res := apply(t, s, part); !slices.Equal(res.Fenced, []string{"st/s0"}) || res.Logged != 0 {
		t.Fatalf("stale part of a bisected batch: %+v, want s0 fenced", res)
	}
	cps := must[[]change.Checkpoint](t)(lt.Checkpoints(ctxb(), "st"))
	if len(cps) != 2 || cps[0].Applied.Offset != "1" || cps[1].Applied.Offset != "1" {
		t.Fatalf("checkpoints %+v, want s0 at 1 (not the fenced 2) and s1 at 1", cps)
	}

	// The new owner re-reads from the stored checkpoint and stores it all.
	nb := &change.Batch{Events: []change.Event{stale.Events[0]}, Checkpoints: []change.Checkpoint{cp0}}
	nb.Checkpoints[0].LeaseOwner, nb.Checkpoints[0].LeaseEpoch = b0.Owner, b0.Epoch
	if res := apply(t, s, nb); res.Logged != 1 || len(res.Fenced) != 0 {
		t.Fatalf("new owner's batch: %+v, want stored", res)
	}
	// A checkpoint without a lease is not fenced (a source without leases).
	if res := apply(t, s, s0.Batch(s0.Put("t", "3", 300, `{"id":3,"v":"c"}`))); res.Logged != 1 || len(res.Fenced) != 0 {
		t.Fatalf("unleased batch: %+v", res)
	}
	// A lease row that does not exist fences.
	ghost := sinktest.NewStream("st", "never-leased")
	if res := apply(t, s, leased(ghost.Batch(ghost.Put("t", "4", 400, `{"id":4}`)), Lease{Owner: "a", Epoch: 1})); !slices.Equal(res.Fenced, []string{"st/never-leased"}) || res.Logged != 0 {
		t.Fatalf("batch of a shard without a lease row: %+v, want fenced", res)
	}
	// A finished lease keeps fencing by owner and epoch: its owner's late
	// checkpoint is stored, a stale one is not.
	if err := lt.FinishLease(ctxb(), b0); err != nil {
		t.Fatal(err)
	}
	if res := apply(t, s, leased(s0.Batch(), b0)); len(res.Fenced) != 0 {
		t.Fatalf("late checkpoint of the finishing owner: %+v, want stored", res)
	}
	if res := apply(t, s, leased(s0.Batch(), a0)); len(res.Fenced) != 1 {
		t.Fatalf("checkpoint of the stale owner after finish: %+v, want fenced", res)
	}
}

// TestFenceOrdersAcquire: an Apply holds its partition's lease row FOR
// SHARE until it commits, so another owner's AcquireLease of an expired
// lease waits for the commit and, once it has the lease, reads the
// checkpoint that Apply stored.
func TestFenceOrdersAcquire(t *testing.T) {
	s, lt := openLeases(t)
	other, err := s.LeaseTable(ctxb())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctxb())
	a, ok := acquire(t, lt, "s0", "a", 300*time.Millisecond)
	if !ok {
		t.Fatal("a could not take s0")
	}
	st := sinktest.NewStream("st", "s0")
	st.Schema = ""
	b := leased(st.Batch(st.Put("t", "1", 100, `{"id":1}`)), a)

	var acquired Lease
	var acquiredOK bool
	acquireDone := make(chan error, 1)
	s.beforeCommit = func(ctx context.Context, tx pgx.Tx) error {
		s.beforeCommit = nil
		waitExpired(t, lt, "s0")
		go func() {
			var err error
			acquired, acquiredOK, err = other.AcquireLease(context.Background(), "st", "s0", "b", time.Hour)
			acquireDone <- err
		}()
		// Wait until the take is blocked on the row this transaction holds.
		deadline := time.Now().Add(time.Minute)
		for {
			var waiting int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO "_cdc_leases"%'`).Scan(&waiting); err != nil {
				return err
			}
			if waiting == 1 {
				return nil
			}
			select {
			case err := <-acquireDone:
				return fmt.Errorf("acquire returned before the apply committed: %v, %+v %t", err, acquired, acquiredOK)
			default:
			}
			if time.Now().After(deadline) {
				return errors.New("the take never waited for the apply")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	res := apply(t, s, b)
	if len(res.Fenced) != 0 || res.Logged != 1 {
		t.Fatalf("apply under a lease that expires meanwhile: %+v, want stored (nobody took it before commit)", res)
	}
	if err := <-acquireDone; err != nil {
		t.Fatal(err)
	}
	if !acquiredOK || acquired.Epoch != a.Epoch+1 {
		t.Fatalf("b's take after the commit: %+v %t", acquired, acquiredOK)
	}
	cps := must[[]change.Checkpoint](t)(other.Checkpoints(ctxb(), "st"))
	if len(cps) != 1 || cps[0].Applied != st.Checkpoint().Applied {
		t.Fatalf("checkpoints the new owner reads: %+v", cps)
	}
	// a's next batch is fenced.
	if res := apply(t, s, leased(st.Batch(st.Put("t", "2", 200, `{"id":2}`)), a)); len(res.Fenced) != 1 || res.Logged != 0 {
		t.Fatalf("a's batch after b's take: %+v, want fenced", res)
	}
}
