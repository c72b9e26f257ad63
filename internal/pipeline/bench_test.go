package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/decode"
	"github.com/cdcflow/cdcflow/internal/source/file"
)

// discardSink stores nothing: the benchmark measures the pipeline itself.
type discardSink struct{}

func (discardSink) Apply(_ context.Context, b *change.Batch) (change.ApplyResult, error) {
	return change.ApplyResult{Logged: len(b.Events), Applied: len(b.Events)}, nil
}
func (discardSink) Close(context.Context) error { return nil }

// BenchmarkRunFile measures file source -> DSQL decoder -> batches -> a sink
// that discards, per record.
func BenchmarkRunFile(b *testing.B) {
	const n = 100_000
	var sb strings.Builder
	for i := 1; i <= n; i++ {
		sb.WriteString(full("orders", i, `,"customer":"c-000123","total_cents":129900,"status":"paid"`))
		sb.WriteByte('\n')
	}
	path := filepath.Join(b.TempDir(), "in.ndjson")
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(sb.Len()))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		src, err := file.Open([]string{path}, file.Options{Logger: quietLogger()})
		if err != nil {
			b.Fatal(err)
		}
		dec, err := decode.New(decode.Options{})
		if err != nil {
			b.Fatal(err)
		}
		cfg := baseConfig(src, dec, discardSink{})
		sum, err := Run(context.Background(), cfg)
		if err != nil || sum.Events != n {
			b.Fatalf("events %d, err %v", sum.Events, err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
}
