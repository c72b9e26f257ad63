package file

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cdcflow/cdcflow/internal/source"
)

// BenchmarkRead measures reading NDJSON records (plain and gzip).
func BenchmarkRead(b *testing.B) {
	line := `{"type":"full","op":"c","before":null,"after":{"id":1,"note":"` + strings.Repeat("x", 200) + `"},"source":{"ts_ns":1}}` + "\n"
	content := strings.Repeat(line, 50_000)
	for _, gz := range []bool{false, true} {
		name := "plain"
		data := content
		if gz {
			name = "gzip"
			data = gzippedB(b, content)
		}
		b.Run(name, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "in")
			if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(content)))
			ctx := context.Background()
			for i := 0; i < b.N; i++ {
				src, err := Open([]string{path}, Options{Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				for {
					rs, ack, err := src.Read(ctx)
					if errors.Is(err, source.ErrEndOfInput) {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					n += len(rs)
					_ = ack(ctx, nil)
				}
				if n != 50_000 {
					b.Fatalf("read %d records", n)
				}
				_ = src.Close(ctx)
			}
		})
	}
}
