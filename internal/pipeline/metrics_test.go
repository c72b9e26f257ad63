package pipeline

import (
	"errors"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/metrics"
)

var _ Observer = (*metrics.Metrics)(nil)

// gathered is one registry scrape: metric family name -> its metrics.
type gathered map[string][]*dto.Metric

func gather(t *testing.T, reg *prometheus.Registry) gathered {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	g := gathered{}
	for _, mf := range mfs {
		g[mf.GetName()] = mf.GetMetric()
	}
	return g
}

// byLabel returns a counter or gauge family as label value -> value (the
// family has at most one label; "" for none).
func (g gathered) byLabel(name string) map[string]int64 {
	out := map[string]int64{}
	for _, m := range g[name] {
		label := ""
		if len(m.GetLabel()) > 0 {
			label = m.GetLabel()[0].GetValue()
		}
		v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
		out[label] = int64(v)
	}
	return out
}

func (g gathered) value(name string) int64 { return g.byLabel(name)[""] }

func (g gathered) histogram(t *testing.T, name string) *dto.Histogram {
	t.Helper()
	if len(g[name]) != 1 {
		t.Fatalf("%s: %d series, want 1", name, len(g[name]))
	}
	return g[name][0].GetHistogram()
}

func sumValues(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// TestMetricsObserver runs a pipeline with a retry, a bisected sink
// rejection, decoder dead letters, a skipped tombstone and held DSQL pieces,
// and checks that the metrics a real *metrics.Metrics collects agree with
// the run's Summary and the sink's state.
func TestMetricsObserver(t *testing.T) {
	lines := []string{
		full("orders", 1, ""),
		full("orders", 2, `,"poison":true`), // rejected by the sink: bisected, dead-lettered
		`{"type":"full","op":"c"`,           // invalid JSON
		`null`,                              // a Debezium tombstone: skipped
		chunkedMain("docs", 5, "A", 2),      // held, then dead-lettered at end of input
		fragment(5, "A", 0),
		full("customers", 7, ""),
	}
	lines = append(lines, fullLines("orders", 12)[7:]...) // orders 8..12
	path := writeLines(t, lines...)

	st := newState()
	snk := &memSink{st: st, fail: func(call int, _ *change.Batch) error {
		if call == 1 {
			return errors.New("connection reset by peer")
		}
		return nil
	}}
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	var heldSeen []int64
	sum, err := runFile(t, st, snk, path, func(c *Config) {
		c.Metrics = m
		c.BatchMaxEvents = 3
		c.Progress = func(p Progress) {
			// The gauge is current when Progress runs.
			if g := gather(t, reg).value("cdcflow_fragments_held"); g != p.Held {
				t.Errorf("fragments_held = %d, progress says %d", g, p.Held)
			}
			heldSeen = append(heldSeen, p.Held)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Retries == 0 || sum.Bisects == 0 || sum.Dead[change.ReasonSinkRejected] != 1 || sum.Skipped[change.SkipTombstone] != 1 {
		t.Fatalf("the run did not exercise retries, bisection, rejection and skips: %+v", sum)
	}
	g := gather(t, reg)

	t.Run("events in", func(t *testing.T) {
		in := g.byLabel("cdcflow_events_in_total")
		want := map[string]int64{"public.orders": 7, "public.customers": 1}
		if !maps.Equal(in, want) || sumValues(in) != sum.Events {
			t.Errorf("events_in = %v, want %v (summary events %d)", in, want, sum.Events)
		}
	})
	t.Run("events applied", func(t *testing.T) {
		applied := g.byLabel("cdcflow_events_applied_total")
		if got := sumValues(applied); got != sum.Applied || got != int64(len(st.events)) {
			t.Errorf("events_applied = %v (total %d), summary %d, stored %d", applied, got, sum.Applied, len(st.events))
		}
		if len(g["cdcflow_events_duplicate_total"]) != 0 || len(g["cdcflow_events_stale_total"]) != 0 {
			t.Errorf("duplicates or stale counted for a sink that reports none")
		}
	})
	t.Run("dead letters and skips", func(t *testing.T) {
		if dead := g.byLabel("cdcflow_dead_letters_total"); !maps.Equal(dead, sum.Dead) || sumValues(dead) != int64(len(st.dead)) {
			t.Errorf("dead_letters = %v, summary %v, stored %d", dead, sum.Dead, len(st.dead))
		}
		if skipped := g.byLabel("cdcflow_records_skipped_total"); !maps.Equal(skipped, sum.Skipped) {
			t.Errorf("records_skipped = %v, summary %v", skipped, sum.Skipped)
		}
	})
	t.Run("retries and bisects", func(t *testing.T) {
		if got := g.value("cdcflow_apply_retries_total"); got != sum.Retries {
			t.Errorf("apply_retries = %d, summary %d", got, sum.Retries)
		}
		if got := g.value("cdcflow_bisects_total"); got != sum.Bisects {
			t.Errorf("bisects = %d, summary %d", got, sum.Bisects)
		}
	})
	t.Run("apply durations", func(t *testing.T) {
		h := g.histogram(t, "cdcflow_batch_apply_seconds")
		if int64(h.GetSampleCount()) != sum.Batches || int64(len(st.commits)) != sum.Batches {
			t.Errorf("batch_apply_seconds count = %d, summary batches %d, commits %d", h.GetSampleCount(), sum.Batches, len(st.commits))
		}
		if h.GetSampleSum() <= 0 || h.GetSampleSum() > sum.Elapsed.Seconds() {
			t.Errorf("batch_apply_seconds sum = %gs, want > 0 and within the run's %v", h.GetSampleSum(), sum.Elapsed)
		}
		ev := g.histogram(t, "cdcflow_batch_events")
		if int64(ev.GetSampleCount()) != sum.Batches || int64(ev.GetSampleSum()) != int64(len(st.events)) {
			t.Errorf("batch_events count %d sum %g, want %d batches holding %d events", ev.GetSampleCount(), ev.GetSampleSum(), sum.Batches, len(st.events))
		}
	})
	t.Run("freshness", func(t *testing.T) {
		f := g.histogram(t, "cdcflow_freshness_seconds")
		if int(f.GetSampleCount()) != len(st.events) {
			t.Errorf("freshness samples = %d, want one per stored event (%d)", f.GetSampleCount(), len(st.events))
		}
		var newest int64
		for _, e := range st.events {
			newest = max(newest, e.Order.CommitNS)
		}
		got := g["cdcflow_last_commit_timestamp_seconds"][0].GetGauge().GetValue()
		if want := float64(newest) / 1e9; got != want {
			t.Errorf("last_commit_timestamp = %f, want %f", got, want)
		}
	})
	t.Run("fragments held", func(t *testing.T) {
		peak := int64(0)
		for _, h := range heldSeen {
			peak = max(peak, h)
		}
		if peak == 0 {
			t.Errorf("no progress report saw held pieces: %v", heldSeen)
		}
		if got := g.value("cdcflow_fragments_held"); got != 0 {
			t.Errorf("fragments_held after the drain = %d, want 0", got)
		}
	})
}

// recorder is an Observer that keeps every call, to check what the runner
// passes (the real *metrics.Metrics is tested above).
type recorder struct {
	decoded []string
	applied []string
	tookNS  []int64
	nows    []time.Time
}

func (r *recorder) Decoded(evs []change.Event) {
	for _, e := range evs {
		r.decoded = append(r.decoded, e.Key)
	}
}

func (r *recorder) BatchApplied(b *change.Batch, res change.ApplyResult, took time.Duration, now time.Time) {
	r.applied = append(r.applied, fmt.Sprintf("events=%d dead=%d applied=%d", len(b.Events), len(b.Dead), res.Applied))
	r.tookNS = append(r.tookNS, int64(took))
	r.nows = append(r.nows, now)
}
func (r *recorder) Retry()              {}
func (r *recorder) Bisect()             {}
func (r *recorder) Skipped(string, int) {}
func (r *recorder) Held(int64)          {}

func TestObserverSeesEachCommittedBatch(t *testing.T) {
	path := writeLines(t, fullLines("orders", 7)...)
	st := newState()
	rec := &recorder{}
	if _, err := runFile(t, st, nil, path, func(c *Config) { c.Metrics = rec; c.BatchMaxEvents = 3 }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"1", "2", "3", "4", "5", "6", "7"}; fmt.Sprint(rec.decoded) != fmt.Sprint(want) {
		t.Errorf("decoded keys = %v, want %v", rec.decoded, want)
	}
	want := []string{"events=3 dead=0 applied=3", "events=3 dead=0 applied=3", "events=1 dead=0 applied=1"}
	if fmt.Sprint(rec.applied) != fmt.Sprint(want) || len(st.commits) != len(want) {
		t.Errorf("applied = %q, want %q (sink commits %d)", rec.applied, want, len(st.commits))
	}
	for i, d := range rec.tookNS {
		if d <= 0 {
			t.Errorf("batch %d: took %dns, want a positive apply duration", i, d)
		}
		if i > 0 && rec.nows[i].Before(rec.nows[i-1]) || rec.nows[i].IsZero() {
			t.Errorf("batch %d: commit time %v not after the previous one", i, rec.nows[i])
		}
	}
}
