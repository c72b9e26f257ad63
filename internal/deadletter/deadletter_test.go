package deadletter

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
)

var fixed = time.Date(2025, 1, 2, 3, 4, 5, 123456789, time.FixedZone("X", 3600))

func sample() []change.DeadLetter {
	return []change.DeadLetter{
		{Reason: change.ReasonInvalidJSON, Detail: "unexpected end", Format: "dsql",
			Position: change.Position{Source: "/data/a.ndjson", Offset: "42"}, Raw: []byte{'{', 0xff, '\n'}},
		{Reason: change.ReasonSinkRejected, Detail: `value "x" <out of range>`,
			Position: change.Position{Source: "orders", Partition: "3", Offset: "1234", Index: 2, Indexed: true}},
	}
}

func readLines(t *testing.T, data []byte) []Line {
	t.Helper()
	var out []Line
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var l Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

func TestWriterLines(t *testing.T) {
	var buf bytes.Buffer
	w := New(&buf, "buffer")
	w.now = func() time.Time { return fixed }
	if err := w.Write(sample()); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 {
		t.Fatalf("wrote %d bytes before Flush; want buffered", buf.Len())
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"detail":"value \"x\" <out of range>"`) {
		t.Errorf("HTML escaping or quoting wrong: %s", buf.String())
	}
	got := readLines(t, buf.Bytes())
	want := []Line{
		{Reason: "invalid_json", Detail: "unexpected end", Format: "dsql", Position: "/data/a.ndjson:42", Raw: []byte{'{', 0xff, '\n'}, At: "2025-01-02T02:04:05.123456789Z"},
		{Reason: "sink_rejected", Detail: `value "x" <out of range>`, Position: "orders[3]@1234#2", Raw: []byte{}, At: "2025-01-02T02:04:05.123456789Z"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Reason != want[i].Reason || got[i].Detail != want[i].Detail || got[i].Format != want[i].Format ||
			got[i].Position != want[i].Position || !bytes.Equal(got[i].Raw, want[i].Raw) || got[i].At != want[i].At {
			t.Errorf("line %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	// raw is base64 text, never the bytes themselves.
	if !strings.Contains(buf.String(), `"raw":"e/8K"`) {
		t.Errorf("raw not base64: %s", buf.String())
	}
}

func TestFileAppendsAcrossOpens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dead.ndjson")
	for run := 0; run < 2; run++ {
		f, err := NewFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Write(sample()[:1]); err != nil {
			t.Fatal(err)
		}
		if err := f.Flush(); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(readLines(t, data)); n != run+1 {
			t.Fatalf("run %d: file has %d lines after Flush, want %d", run, n, run+1)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestNewFileErrorNamesPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "dead.ndjson")
	_, err := NewFile(path)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v, want one naming %s", err, path)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteErrorsSurface(t *testing.T) {
	w := New(failWriter{}, "broken")
	// A large raw overflows the buffer, so Write itself reaches the writer.
	dl := []change.DeadLetter{{Reason: "x", Raw: bytes.Repeat([]byte("a"), 200<<10)}}
	if err := w.Write(dl); err == nil || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("Write err = %v, want one naming the writer", err)
	}
	w2 := New(failWriter{}, "broken")
	if err := w2.Write(sample()); err != nil {
		t.Fatal(err)
	}
	if err := w2.Flush(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Flush err = %v, want disk full", err)
	}
}
