package main

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary act as a reader process: run starts
// os.Executable (here the test binary) with childEnv set.
func TestMain(m *testing.M) {
	if reader := os.Getenv(childEnv); reader != "" {
		os.Exit(childMain(reader, os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestRunTiny runs the whole benchmark at a tiny scale against kinesalite:
// both readers read every record (each checks count and bytes) in both
// orders, and the report has a row per read and the medians.
func TestRunTiny(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out strings.Builder
	o := options{records: 3000, shards: 2, rounds: 2, seed: 7, out: t.TempDir(), profile: true}
	if err := run(ctx, o, &out); err != nil {
		t.Fatal(err)
	}
	report := out.String()
	rows := regexp.MustCompile(`(?m)^\| [12] \| (bare GetRecords loop|kinesis source) [^|]*\| 3000 \|`).FindAllString(report, -1)
	if len(rows) != 4 {
		t.Errorf("%d per-round rows reading 3000 records, want 4:\n%s", len(rows), report)
	}
	for _, want := range []string{"| kinesis source (Read + ack) |", "source's own CPU (source minus bare loop):", "in 2 shards of kinesalite"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	for _, f := range []string{"bare-1.pprof", "source-1.pprof", "bare-2.pprof", "source-2.pprof"} {
		if st, err := os.Stat(o.out + "/" + f); err != nil || st.Size() == 0 {
			t.Errorf("profile %s: %v", f, err)
		}
	}
}

func TestReaderErrors(t *testing.T) {
	var stderr strings.Builder
	for name, tc := range map[string]struct {
		reader string
		args   []string
		want   string
	}{
		"unknown reader": {"nope", []string{"-endpoint", "http://127.0.0.1:1", "-stream", "s", "-records", "1"}, `unknown reader "nope"`},
		"no records":     {readerBare, []string{"-endpoint", "http://127.0.0.1:1", "-stream", "s"}, "-records are required"},
	} {
		t.Run(name, func(t *testing.T) {
			stderr.Reset()
			if code := childMain(tc.reader, tc.args, &strings.Builder{}, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, stderr.String(), tc.want)
			}
		})
	}
}

func TestParseStatCPU(t *testing.T) {
	for name, tc := range map[string]struct {
		stat string
		want time.Duration
		ok   bool
	}{
		// utime 250 and stime 50 ticks (fields 14 and 15); a command name with spaces and parentheses.
		"node":      {"4242 (node (x) y) S 1 4242 4242 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 11 0 100 0 0", 3 * time.Second, true},
		"truncated": {"4242 (node) S 1 2", 0, false},
		"garbage":   {"no parenthesis", 0, false},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := parseStatCPU(tc.stat)
			if (err == nil) != tc.ok || got != tc.want {
				t.Errorf("parseStatCPU = %v, %v; want %v, ok %v", got, err, tc.want, tc.ok)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	r := func(round int, reader string, secs, cpu float64) result {
		return result{reading: reading{Reader: reader, Records: 1000, Seconds: secs, CPU: cpu}, round: round, nodeCPU: 1}
	}
	// Per-round ratios 1.0, 0.5, 0.8: the median is 0.8, not the ratio of
	// the median rates. Own CPU per round: 1000, 500, 0 µs/record.
	s := summarize([]result{
		r(1, readerBare, 1, 1), r(1, readerSource, 1, 2),
		r(2, readerBare, 1, 1), r(2, readerSource, 2, 1.5),
		r(3, readerBare, 2, 1), r(3, readerSource, 2.5, 1),
	})
	if s.ratio != 0.8 || s.ownCPU != 500 || s.bareNode != 1000 || s.sourceRate != 500 {
		t.Errorf("summary = %+v; want ratio 0.8, own CPU 500, kinesalite 1000 µs/record, source rate 500", s)
	}
}
