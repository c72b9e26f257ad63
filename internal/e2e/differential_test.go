package e2e

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cdcflow/cdcflow/internal/testgen"
)

var soakFlag = flag.Bool("soak", false, "run the differential test with many more and bigger seeds (bench/soak.sh)")

// params are the sizes of a differential run.
type params struct {
	seeds   []int64
	changes int  // row changes per history
	poison  bool // inject poison lines in some scenarios
}

// Defaults: CI sizes, and the soak sizes -soak selects.
const (
	ciSeeds      = 4
	ciChanges    = 300
	soakSeeds    = 200
	soakChanges  = 20000
	ciSeedOffset = 1
)

// loadParams reads the sizes from the flags and environment:
//
//	CDCFLOW_SEED=n           run only seed n (reproduce a failure)
//	CDCFLOW_SOAK_SEEDS=n     run n seeds (implies soak sizes)
//	CDCFLOW_SOAK_CHANGES=n   changes per history
//	CDCFLOW_SOAK_BASE=n      first seed (default: fixed in CI, time-based when soaking)
func loadParams(t *testing.T) params {
	t.Helper()
	envInt := func(name string) (int64, bool) {
		v := strings.TrimSpace(os.Getenv(name))
		if v == "" {
			return 0, false
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: not an integer", name, v)
		}
		return n, true
	}
	p := params{changes: ciChanges, poison: true}
	n, base := int64(ciSeeds), int64(ciSeedOffset)
	soak := *soakFlag
	if v, ok := envInt("CDCFLOW_SOAK_SEEDS"); ok {
		soak, n = true, v
	} else if soak {
		n = soakSeeds
	}
	if soak {
		p.changes = soakChanges
		base = time.Now().UnixNano() % 1_000_000_000
	}
	if v, ok := envInt("CDCFLOW_SOAK_CHANGES"); ok {
		p.changes = int(v)
	}
	if v, ok := envInt("CDCFLOW_SOAK_BASE"); ok {
		base = v
	}
	if v, ok := envInt("CDCFLOW_SEED"); ok {
		base, n = v, 1
	}
	for i := range n {
		p.seeds = append(p.seeds, base+i)
	}
	return p
}

// historyOptions shapes the history of one seed: every kind of change, a
// snapshot, repeated keys in transactions, wide rows and big values.
func historyOptions(seed int64, p params) testgen.Options {
	return testgen.Options{
		Changes:      p.changes,
		Keys:         max(p.changes/6, 24),
		SnapshotRows: int(seed%3) * 8, // some seeds start with a snapshot
		MaxTxSize:    2 + int(seed%5),
		RepeatInTx:   0.1,
		WideColumns:  12 + int(seed%70),
		BigRatio:     0.03,
		BigBytes:     1500,
	}
}

// TestDifferential runs the whole pipeline over random histories in every
// format, with crashes between commit and ack, and compares the warehouse
// with the source's final state (see the package doc).
func TestDifferential(t *testing.T) {
	p := loadParams(t)
	start := time.Now()
	scenarios := 0
	for _, seed := range p.seeds {
		hist := testgen.Generate(seed, historyOptions(seed, p))
		requireCoverage(t, seed, hist)
		for _, v := range variants {
			t.Run(fmt.Sprintf("seed=%d/%s", seed, v.name), func(t *testing.T) {
				scenarios++
				s := newScenario(t, seed, hist, v, p)
				ref, refDead := s.reference(t)
				total := s.totalLines()
				runs := s.run(t, len(ref)+len(refDead))
				crashed := 0
				for _, r := range runs {
					if r.crashed {
						crashed++
					}
				}
				if bad := s.verify(t, ref, refDead, crashed > 0); len(bad) > 0 {
					var b strings.Builder
					fmt.Fprintf(&b, "seed %d, format %s: the warehouse differs from the source (rerun: CDCFLOW_SEED=%d CDCFLOW_SOAK_CHANGES=%d go test ./internal/e2e -run 'TestDifferential/seed=%d/%s$')\n",
						seed, v.name, seed, p.changes, seed, v.name)
					fmt.Fprintf(&b, "  encode %+v envelopes=%v soft_delete=%v naming=%s lines=%d poison=%d\n", s.enc, s.envelopes, s.soft, s.naming, total, len(s.poison))
					b.WriteString(showRuns(runs))
					for _, d := range bad {
						b.WriteString("  " + d.String() + "\n")
					}
					t.Fatal(b.String())
				}
				t.Logf("seed %d %s: %d lines, %d events, envelopes=%v, %d runs (%d crashed), %d poison", seed, v.name, total, len(ref), s.envelopes, len(runs), crashed, len(s.poison))
			})
		}
	}
	if el := time.Since(start); el > 0 {
		t.Logf("%d seeds, %d scenarios, %d changes each, in %s: %.2f seeds/s", len(p.seeds), scenarios, p.changes, el.Round(time.Millisecond), float64(len(p.seeds))/el.Seconds())
	}
}

// requireCoverage fails when a history lacks a kind of change or table the
// test promises to cover: every table (single BIGINT, text and composite
// keys, wide rows), inserts, updates, deletes, re-inserts and key changes.
func requireCoverage(t *testing.T, seed int64, h *testgen.History) {
	t.Helper()
	kinds := map[testgen.Kind]int{}
	tables := map[string]int{}
	nulls := 0
	for i := range h.Events() {
		e := &h.Events()[i]
		kinds[e.Kind]++
		tables[e.Table.Name]++
		for _, v := range e.After {
			if v == nil {
				nulls++
			}
		}
	}
	for _, k := range []testgen.Kind{testgen.KindInsert, testgen.KindUpdate, testgen.KindDelete, testgen.KindReinsert, testgen.KindKeyDelete, testgen.KindKeyInsert} {
		if kinds[k] == 0 {
			t.Fatalf("seed %d: history has no %s change", seed, k)
		}
	}
	for _, tb := range []string{testgen.TableCustomers, testgen.TableOrders, testgen.TableOrderItems, testgen.TableWide} {
		if tables[tb] == 0 {
			t.Fatalf("seed %d: history has no change of %s", seed, tb)
		}
	}
	if nulls == 0 {
		t.Fatalf("seed %d: history has no NULL value", seed)
	}
}
