package main

import (
	"context"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/decode"
	"github.com/cdcflow/cdcflow/internal/testgen"
)

// TestStampRecord stamps generated DSQL records and decodes them with the
// project's decoder: the commit time and the tie-breaking emission time are
// the stamp, and the rest of the record is unchanged.
func TestStampRecord(t *testing.T) {
	var recs []testgen.Record
	_, err := testgen.Stream(7, genOptions(200, 50), testgen.FormatDSQL, testgen.EncodeOptions{Shards: 2}, func(r testgen.Record) error {
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := decode.New(decode.Options{Format: decode.FormatDSQL, Keys: keys()})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 11, 21, 7, 0, 0, 123456789, time.UTC).UnixNano()
	var prev string
	for i, r := range recs {
		ns := base + int64(i)*1000 + 1
		out, err := stampRecord(r.Data, ns)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		var got, want decode.Output
		dec.Decode(change.Raw{Data: out, Position: change.Position{Source: "t", Partition: "0", Offset: "1"}}, time.Now(), &got)
		dec.Decode(change.Raw{Data: r.Data, Position: change.Position{Source: "t", Partition: "0", Offset: "1"}}, time.Now(), &want)
		if len(got.Dead) > 0 || len(got.Events) != 1 || len(want.Events) != 1 {
			t.Fatalf("record %d: %d events, dead %v", i, len(got.Events), got.Dead)
		}
		e, w := got.Events[0], want.Events[0]
		if e.Order.CommitNS != ns {
			t.Errorf("record %d: commit ns %d, want %d", i, e.Order.CommitNS, ns)
		}
		if e.Key != w.Key || e.Table != w.Table || e.Op != w.Op || string(e.Image()) != string(w.Image()) || e.TxID != w.TxID {
			t.Errorf("record %d: stamping changed the change: %+v, want %+v", i, e, w)
		}
		if k := e.Order.Key(); k <= prev {
			t.Errorf("record %d: order key %q not after %q", i, k, prev)
		} else {
			prev = k
		}
		if !strings.Contains(string(out), `"ts_ms":`+strconv.FormatInt(ns/1e6, 10)) {
			t.Errorf("record %d: ts_ms not stamped: %s", i, out)
		}
	}
}

func TestStampRecordErrors(t *testing.T) {
	for name, rec := range map[string]string{
		"no source":     `{"op":"c","ts_ns":1}`,
		"no top ts_ns":  `{"source":{"ts_ms":1,"ts_ns":2},"ts_ms":3}`,
		"not a number":  `{"source":{"ts_ms":"x","ts_ns":2},"ts_ms":3,"ts_ns":4}`,
		"source ts_ms?": `{"source":{"ts_ns":2},"ts_ms":3,"ts_ns":4}`,
	} {
		t.Run(name, func(t *testing.T) {
			if out, err := stampRecord([]byte(rec), 1_700_000_000_000_000_000); err == nil {
				t.Fatalf("stamped %s as %s; want an error", rec, out)
			}
		})
	}
}

func TestQuantile(t *testing.T) {
	bs := []bucket{{0.1, 10}, {0.5, 50}, {1, 90}, {math.Inf(1), 100}}
	for _, tc := range []struct {
		q, want float64
	}{
		{0.05, 0.05},     // inside the first bucket, from 0
		{0.5, 0.5},       // exactly a bound
		{0.7, 0.75},      // halfway through (0.5, 1]
		{0.99, 1},        // in +Inf: the highest finite bound
		{0.10, 0.1},      // first bucket's top
		{0.30, 0.3},      // (0.1,0.5]: 20 of 40
		{0.90, 1},        // top of (0.5,1]
		{0.895, 0.99375}, // 39.5 of 40 in (0.5,1]
	} {
		if got := quantile(tc.q, bs); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := quantile(0.99, nil); !math.IsNaN(got) {
		t.Errorf("quantile of no buckets = %v, want NaN", got)
	}
	if got := quantile(0.99, []bucket{{1, 0}, {math.Inf(1), 0}}); !math.IsNaN(got) {
		t.Errorf("quantile of no observations = %v, want NaN", got)
	}
}

func TestParseMetricsHistogramDelta(t *testing.T) {
	text := func(a, b, c float64) string {
		return "# HELP cdcflow_freshness_seconds x\n# TYPE cdcflow_freshness_seconds histogram\n" +
			`cdcflow_freshness_seconds_bucket{le="0.5"} ` + ftoa(a) + "\n" +
			`cdcflow_freshness_seconds_bucket{le="1"} ` + ftoa(b) + "\n" +
			`cdcflow_freshness_seconds_bucket{le="+Inf"} ` + ftoa(c) + "\n" +
			`cdcflow_events_in_total{table="public.a"} ` + ftoa(a) + "\n" +
			`cdcflow_events_in_total{table="public.b"} ` + ftoa(b) + "\n"
	}
	before, err := parseMetrics(strings.NewReader(text(10, 20, 20)))
	if err != nil {
		t.Fatal(err)
	}
	after, err := parseMetrics(strings.NewReader(text(10, 110, 120)))
	if err != nil {
		t.Fatal(err)
	}
	h := after.histogram("cdcflow_freshness_seconds", before)
	want := []bucket{{0.5, 0}, {1, 90}, {math.Inf(1), 100}}
	if len(h) != len(want) {
		t.Fatalf("buckets %v, want %v", h, want)
	}
	for i := range h {
		if h[i] != want[i] {
			t.Fatalf("buckets %v, want %v", h, want)
		}
	}
	if got := after.sum("cdcflow_events_in_total"); got != 120 {
		t.Errorf("sum of events_in_total = %v, want 120", got)
	}
	if _, err := parseMetrics(strings.NewReader("novalue\n")); err == nil {
		t.Error("a line without a value parsed")
	}
}

func ftoa(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func TestParseStat(t *testing.T) {
	// comm may hold spaces and parentheses.
	line := "4242 (postgres: a (b) c) S 17 4242 4242 0 -1 4194560 300 0 0 0 250 150 30 20 20 0 1 0 100 200000 512 18446744073709551615"
	st, ok := parseStat(line)
	if !ok {
		t.Fatal("not parsed")
	}
	if st.ppid != 17 || st.utime != 2500*time.Millisecond || st.stime != 1500*time.Millisecond ||
		st.cutime != 300*time.Millisecond || st.cstime != 200*time.Millisecond || st.rssPages != 512 {
		t.Errorf("parsed %+v", st)
	}
	if _, ok := parseStat("1 (x) S 2"); ok {
		t.Error("a short line parsed")
	}
}

// TestTracker turns checkpoint advances into visibilities, never past an
// offset whose produce acknowledgement is missing.
func TestTracker(t *testing.T) {
	tr := newTracker()
	tr.produced(0, 0, 100, nil)
	tr.produced(0, 1, 110, nil)
	tr.produced(0, 3, 130, nil) // offset 2 not acknowledged yet
	tr.produced(1, 0, 105, nil)
	tr.advance(map[int32]int64{0: 3, 1: 0}, 200)
	if got := len(tr.vis); got != 3 {
		t.Fatalf("%d visibilities, want 3 (offsets 0,1 of partition 0 and 0 of 1): %v", got, tr.vis)
	}
	if p := tr.pending(); p != 2 {
		t.Errorf("pending %d, want 2 (offsets 2 and 3 of partition 0)", p)
	}
	tr.produced(0, 2, 120, nil)
	tr.advance(map[int32]int64{0: 3}, 300)
	if got := len(tr.vis); got != 5 {
		t.Fatalf("%d visibilities, want 5", got)
	}
	if v := tr.vis[3]; v.produced != 120 || v.visible != 300 {
		t.Errorf("offset 2: %+v", v)
	}
	if p := tr.pending(); p != 0 {
		t.Errorf("pending %d, want 0", p)
	}
	tr.produced(0, 4, 0, context.Canceled)
	if tr.errs != 1 || tr.err == nil {
		t.Errorf("produce error not counted: %d %v", tr.errs, tr.err)
	}
}

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // error substring; "" for none
	}{
		{[]string{}, "-cdcflow is required"},
		{[]string{"-cdcflow", "x"}, ""},
		{[]string{"-cdcflow", "x", "-rounds", "0"}, "must be positive"},
		{[]string{"-cdcflow", "x", "-duration", "0s"}, "-duration and -poll"},
		{[]string{"-cdcflow", "x", "extra"}, `unexpected argument "extra"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var sb strings.Builder
			o, err := parseFlags(tc.args, &sb)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want %q", err, tc.want)
			case tc.want == "" && (o.fresh.seed != 43 || o.fresh.rate != 20000 || o.batch != 10000):
				t.Fatalf("defaults not applied: %+v", o)
			}
		})
	}
}

func TestParseHWM(t *testing.T) {
	status := "Name:\tcdcflow\nVmPeak:\t 2000000 kB\nVmHWM:\t  123456 kB\nVmRSS:\t  100000 kB\n"
	if got := parseHWM(status); got != 123456*1024 {
		t.Errorf("parseHWM = %d, want %d", got, 123456*1024)
	}
	if got := parseHWM("Name:\tzombie\nState:\tZ (zombie)\n"); got != 0 {
		t.Errorf("parseHWM of a zombie = %d, want 0", got)
	}
}
