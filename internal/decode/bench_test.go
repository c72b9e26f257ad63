package decode

import (
	"runtime"
	"testing"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/testgen"
)

// benchRaws returns the records of a generated history in format f (no
// delivery faults, no fragments): every record is one event. With envelope,
// they come in Kinesis Lambda events of 64 records.
func benchRaws(b *testing.B, f testgen.Format, envelope bool) ([]change.Raw, int64, int) {
	b.Helper()
	h := testgen.Generate(1, testgen.Options{Changes: 512, BigRatio: -1})
	recs, err := testgen.Encode(h, f, testgen.EncodeOptions{})
	if err != nil {
		b.Fatal(err)
	}
	var raws []change.Raw
	var size int64
	if envelope {
		for i := 0; i < len(recs); i += 64 {
			data := testgen.KinesisLambdaEvent(recs[i:min(i+64, len(recs))], "bench", 0, i, testgen.ExampleBase)
			raws = append(raws, change.Raw{Data: data})
			size += int64(len(data))
		}
		return raws, size, len(recs)
	}
	for _, r := range recs {
		raws = append(raws, change.Raw{Data: r.Data, Key: r.Key})
		size += int64(len(r.Data))
	}
	return raws, size, len(recs)
}

// BenchmarkDecoder measures the orchestrator around the format decoders:
// auto-detection per record against an explicit format, and envelope
// unwrapping. An op decodes every record of a generated history (about 600
// records over four tables, one a 62-column table); MB/s counts the bytes
// given to Decode, allocs/event and ns/event divide by the events.
func BenchmarkDecoder(b *testing.B) {
	type bench struct {
		name     string
		format   testgen.Format
		explicit bool
		envelope bool
	}
	var benches []bench
	for _, f := range testgen.Formats {
		benches = append(benches, bench{"auto/" + string(f), f, false, false}, bench{"explicit/" + string(f), f, true, false})
	}
	benches = append(benches, bench{"kinesis-lambda/" + string(testgen.FormatDSQL), testgen.FormatDSQL, false, true})
	for _, bc := range benches {
		b.Run(bc.name, func(b *testing.B) {
			raws, size, events := benchRaws(b, bc.format, bc.envelope)
			o := Options{Keys: genKeys}
			if bc.explicit {
				o.Format = string(bc.format)
			}
			d := newDecoder(b, o)
			var out Output
			for _, r := range raws {
				d.Decode(r, t0, &out)
			}
			if len(out.Events) != events || len(out.Dead) != 0 {
				b.Fatalf("%d events of %d records; dead letters %s", len(out.Events), events, deadSummary(out.Dead))
			}
			b.SetBytes(size)
			b.ReportAllocs()
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			b.ResetTimer()
			for b.Loop() {
				out.Reset()
				for _, r := range raws {
					d.Decode(r, t0, &out)
				}
			}
			b.StopTimer()
			runtime.ReadMemStats(&ms1)
			n := float64(b.N) * float64(events)
			b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/n, "allocs/event")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/event")
		})
	}
}

// BenchmarkDetect measures auto-detection alone, per format: the cost auto
// mode adds to every record (compare BenchmarkDecoder's auto and explicit).
func BenchmarkDetect(b *testing.B) {
	for _, f := range testgen.Formats {
		b.Run(string(f), func(b *testing.B) {
			raws, size, events := benchRaws(b, f, false)
			for _, r := range raws {
				if got := Detect(r.Data); got != string(f) {
					b.Fatalf("Detect = %q, want %s", got, f)
				}
			}
			b.SetBytes(size)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				for _, r := range raws {
					Detect(r.Data)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/(float64(b.N)*float64(events)), "ns/record")
		})
	}
}
