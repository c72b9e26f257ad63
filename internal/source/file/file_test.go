package file

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/source"
)

// rec is a record as a test expects it: its text and first line.
type rec struct {
	data string
	line int
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func gzipped(t *testing.T, s string) string {
	t.Helper()
	return gzippedB(t, s)
}

func gzippedB(t testing.TB, s string) string {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// readAll reads src to the end, acking every batch, and returns the records
// and the batch sizes.
func readAll(t *testing.T, src *Source) ([]change.Raw, []int) {
	t.Helper()
	ctx := context.Background()
	var raws []change.Raw
	var sizes []int
	for {
		rs, ack, err := src.Read(ctx)
		if errors.Is(err, source.ErrEndOfInput) {
			break
		}
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		if len(rs) == 0 {
			t.Fatal("Read returned an empty batch")
		}
		raws = append(raws, rs...)
		sizes = append(sizes, len(rs))
		if err := ack(ctx, nil); err != nil {
			t.Fatalf("ack: %v", err)
		}
	}
	if _, _, err := src.Read(ctx); !errors.Is(err, source.ErrEndOfInput) {
		t.Fatalf("Read after end = %v, want ErrEndOfInput", err)
	}
	if err := src.Close(ctx); err != nil {
		t.Fatal(err)
	}
	return raws, sizes
}

func check(t *testing.T, raws []change.Raw, name string, want []rec) {
	t.Helper()
	if len(raws) != len(want) {
		var got []string
		for _, r := range raws {
			got = append(got, r.Position.String()+" "+strconv.Quote(string(r.Data)))
		}
		t.Fatalf("got %d records, want %d:\n%s", len(raws), len(want), strings.Join(got, "\n"))
	}
	for i, w := range want {
		r := raws[i]
		wp := change.Position{Source: name, Offset: strconv.Itoa(w.line)}
		if r.Position != wp {
			t.Errorf("record %d position = %+v, want %+v", i, r.Position, wp)
		}
		if string(r.Data) != w.data {
			t.Errorf("record %d (%s) data = %q, want %q", i, r.Position, r.Data, w.data)
		}
	}
}

const prettyEvent = `{
  "Records": [
    {
      "kinesis": {"data": "eyJ9", "note": "a } and a ] in a string \" {"},
      "eventID": "shardId-000:1"
    }
  ]
}`

func TestRecords(t *testing.T) {
	long := strings.Repeat("x", 300<<10) // longer than the read buffer
	cases := []struct {
		name    string
		content string
		max     int
		want    []rec
	}{
		{"ndjson", "{\"a\":1}\n{\"a\":2}\n", 0, []rec{{`{"a":1}`, 1}, {`{"a":2}`, 2}}},
		{"no final newline", "{\"a\":1}\n{\"a\":2}", 0, []rec{{`{"a":1}`, 1}, {`{"a":2}`, 2}}},
		{"crlf and blank lines", "\r\n{\"a\":1}\r\n\r\n  \t\n{\"a\":2}\r\n\n", 0, []rec{{`{"a":1}`, 2}, {`{"a":2}`, 5}}},
		{"empty file", "", 0, nil},
		{"only blank lines", "\n\n \r\n", 0, nil},
		{"pretty document between lines", "{\"a\":1}\n" + prettyEvent + "\n{\"a\":2}\n", 0,
			[]rec{{`{"a":1}`, 1}, {prettyEvent, 2}, {`{"a":2}`, 10}}},
		{"pretty document with crlf", strings.ReplaceAll(prettyEvent, "\n", "\r\n") + "\r\n", 0, []rec{{prettyEvent, 1}}},
		{"array document", "[\n  {\"a\": [1, 2]},\n  {\"b\": {}}\n]\n{\"c\":3}\n", 0,
			[]rec{{"[\n  {\"a\": [1, 2]},\n  {\"b\": {}}\n]", 1}, {`{"c":3}`, 5}}},
		{"indented opener", "  {\n \"a\": 1\n  }\n", 0, []rec{{"  {\n \"a\": 1\n  }", 1}}},
		{"one-line object is not a document", "{}\n{\"a\":1}\n", 0, []rec{{"{}", 1}, {`{"a":1}`, 2}}},
		{"document open at end of input", "{\"a\":1}\n{\n  \"b\": [\n    1,\n", 0,
			[]rec{{`{"a":1}`, 1}, {"{\n  \"b\": [\n    1,", 2}}},
		{"unterminated string ends with its line", "{\n  \"a\": \"oops }\n}\n{\"b\":2}\n", 0,
			[]rec{{"{\n  \"a\": \"oops }\n}", 1}, {`{"b":2}`, 4}}},
		{"huge line truncated", "{\"a\":1}\n" + strings.Repeat("y", 100) + "\n{\"a\":2}\n", 10,
			[]rec{{`{"a":1}`, 1}, {strings.Repeat("y", 10), 2}, {`{"a":2}`, 3}}},
		{"line longer than the buffer kept whole", long + "\r\n{\"a\":2}\n", 0, []rec{{long, 1}, {`{"a":2}`, 2}}},
		{"line longer than the buffer truncated", long + "\r\n{\"a\":2}\n", 1000, []rec{{long[:1000], 1}, {`{"a":2}`, 2}}},
		{"long line exactly at the limit", long + "\r\n", 300 << 10, []rec{{long, 1}}},
		{"document truncated", "{\n\"k\": \"" + strings.Repeat("z", 50) + "\"\n}\n{\"a\":2}\n", 20,
			[]rec{{("{\n\"k\": \"" + strings.Repeat("z", 50))[:20], 1}, {`{"a":2}`, 4}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, gz := range []bool{false, true} {
				content := tc.content
				if gz {
					content = gzipped(t, content)
				}
				// The name never decides compression: magic bytes do.
				p := writeFile(t, t.TempDir(), "in.ndjson", content)
				src, err := Open([]string{p}, Options{MaxRecordBytes: tc.max})
				if err != nil {
					t.Fatal(err)
				}
				raws, _ := readAll(t, src)
				check(t, raws, p, tc.want)
			}
		})
	}
}

func TestGzipNotByExtension(t *testing.T) {
	dir := t.TempDir()
	plain := writeFile(t, dir, "plain.gz", "{\"a\":1}\n")
	src, err := Open([]string{plain}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	raws, _ := readAll(t, src)
	check(t, raws, plain, []rec{{`{"a":1}`, 1}})

	// Concatenated gzip members (as `cat a.gz b.gz` makes) read as one stream.
	multi := writeFile(t, dir, "multi", gzipped(t, "{\"a\":1}\n")+gzipped(t, "{\"a\":2}\n"))
	src, err = Open([]string{multi}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	raws, _ = readAll(t, src)
	check(t, raws, multi, []rec{{`{"a":1}`, 1}, {`{"a":2}`, 2}})
}

func TestCorruptGzipFails(t *testing.T) {
	z := gzipped(t, strings.Repeat("{\"a\":1}\n", 1000))
	p := writeFile(t, t.TempDir(), "bad.gz", z[:len(z)/2])
	src, err := Open([]string{p}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var readErr error
	for readErr == nil {
		_, ack, err := src.Read(ctx)
		if err != nil {
			readErr = err
			break
		}
		_ = ack(ctx, nil)
	}
	if errors.Is(readErr, source.ErrEndOfInput) || !strings.Contains(readErr.Error(), p) {
		t.Fatalf("Read error = %v, want a read error naming %s", readErr, p)
	}
	if _, _, err := src.Read(ctx); err == nil || errors.Is(err, source.ErrEndOfInput) {
		t.Fatalf("Read after a failure = %v, want the failure again", err)
	}
}

func TestPaths(t *testing.T) {
	dir := t.TempDir()
	b := writeFile(t, dir, "b.ndjson", "{\"f\":\"b\"}\n")
	a := writeFile(t, dir, "a.ndjson", "{\"f\":\"a\"}\n")
	c := writeFile(t, dir, "c.json", "{\"f\":\"c\"}\n")
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}

	t.Run("glob sorted, duplicates read once", func(t *testing.T) {
		src, err := Open([]string{c, filepath.Join(dir, "*.ndjson"), a}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := strings.Join(src.Inputs(), ","), strings.Join([]string{c, a, b}, ","); got != want {
			t.Fatalf("Inputs = %s, want %s", got, want)
		}
		raws, _ := readAll(t, src)
		var got []string
		for _, r := range raws {
			got = append(got, r.Position.String())
		}
		if want := []string{c + ":1", a + ":1", b + ":1"}; strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("positions = %v, want %v", got, want)
		}
	})
	t.Run("relative path becomes absolute", func(t *testing.T) {
		t.Chdir(dir)
		src, err := Open([]string{"./sub/../a.ndjson"}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		raws, _ := readAll(t, src)
		check(t, raws, a, []rec{{`{"f":"a"}`, 1}})
	})
	errCases := []struct {
		name  string
		paths []string
		want  string
	}{
		{"glob matches nothing", []string{filepath.Join(dir, "*.csv")}, `glob "` + filepath.Join(dir, "*.csv") + `" matches no files`},
		{"missing file", []string{filepath.Join(dir, "nope.ndjson")}, filepath.Join(dir, "nope.ndjson")},
		{"directory", []string{filepath.Join(dir, "sub")}, "is a directory"},
		{"stdin twice", []string{"-", "-"}, "stdin"},
		{"no paths", nil, "no input paths"},
		{"empty path", []string{""}, "empty path"},
	}
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(tc.paths, Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestStdin(t *testing.T) {
	dir := t.TempDir()
	f := writeFile(t, dir, "f.ndjson", "{\"f\":1}\n")
	stdin := strings.NewReader(gzipped(t, "{\"s\":1}\n\n{\"s\":2}\n"))
	src, err := Open([]string{f, "-"}, Options{Stdin: stdin})
	if err != nil {
		t.Fatal(err)
	}
	if src.CanResume("-") || !src.CanResume(f) {
		t.Fatal("CanResume: stdin must not resume, files must")
	}
	// A checkpoint for stdin is ignored: the next run's stdin is another stream.
	if err := src.Resume(context.Background(), []change.Checkpoint{{Source: "-", Applied: change.Position{Source: "-", Offset: "3"}}}); err != nil {
		t.Fatal(err)
	}
	raws, _ := readAll(t, src)
	if len(raws) != 3 {
		t.Fatalf("got %d records, want 3", len(raws))
	}
	check(t, raws[:1], f, []rec{{`{"f":1}`, 1}})
	check(t, raws[1:], "-", []rec{{`{"s":1}`, 1}, {`{"s":2}`, 3}})
}

func TestBatching(t *testing.T) {
	dir := t.TempDir()
	a := writeFile(t, dir, "a", "1\n2\n3\n4\n5\n")
	b := writeFile(t, dir, "b", "6\n7\n")
	src, err := Open([]string{a, b}, Options{BatchRecords: 3})
	if err != nil {
		t.Fatal(err)
	}
	raws, sizes := readAll(t, src)
	if got := len(raws); got != 7 {
		t.Fatalf("got %d records, want 7", got)
	}
	if want := []int{3, 3, 1}; !equalInts(sizes, want) {
		t.Fatalf("batch sizes = %v, want %v", sizes, want)
	}
	committed := src.Committed()
	if committed[a] != (change.Position{Source: a, Offset: "5"}) || committed[b] != (change.Position{Source: b, Offset: "2"}) {
		t.Fatalf("Committed = %v", committed)
	}

	// BatchBytes ends a batch once its records reach it.
	big := writeFile(t, dir, "big", "12345\n1\n2\n1234567890\n3\n")
	src, err = Open([]string{big}, Options{BatchBytes: 6})
	if err != nil {
		t.Fatal(err)
	}
	_, sizes = readAll(t, src)
	if want := []int{2, 2, 1}; !equalInts(sizes, want) {
		t.Fatalf("batch sizes by bytes = %v, want %v", sizes, want)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRawDataNotReused(t *testing.T) {
	var content strings.Builder
	for i := 1; i <= 5000; i++ {
		content.WriteString(`{"n":` + strconv.Itoa(i) + `,"pad":"` + strings.Repeat("p", i%400) + "\"}\n")
	}
	p := writeFile(t, t.TempDir(), "many", content.String())
	src, err := Open([]string{p}, Options{BatchRecords: 7})
	if err != nil {
		t.Fatal(err)
	}
	raws, _ := readAll(t, src) // every batch acked before the next is read
	lines := strings.Split(strings.TrimSuffix(content.String(), "\n"), "\n")
	for i, r := range raws {
		if string(r.Data) != lines[i] {
			t.Fatalf("record %d changed after ack: %q, want %q", i+1, r.Data, lines[i])
		}
	}
	// Appending to one record never writes into the next.
	if cap(raws[0].Data) != len(raws[0].Data) {
		t.Fatalf("record capacity %d exceeds its length %d", cap(raws[0].Data), len(raws[0].Data))
	}
}

func TestResume(t *testing.T) {
	dir := t.TempDir()
	content := "{\"n\":1}\n{\n  \"n\": 2\n}\n\n{\"n\":3}\n{\"n\":4}\n"
	// records: n1 at line 1, n2 at line 2 (lines 2-4), n3 at line 6, n4 at line 7
	a := writeFile(t, dir, "a", content)
	b := writeFile(t, dir, "b", content)
	pos := func(src, off string) change.Position { return change.Position{Source: src, Offset: off} }
	cases := []struct {
		name  string
		cps   []change.Checkpoint
		wantA []int // first lines read from a
		wantB []int
	}{
		{"none", nil, []int{1, 2, 6, 7}, []int{1, 2, 6, 7}},
		{"applied", []change.Checkpoint{{Source: a, Applied: pos(a, "2")}}, []int{6, 7}, []int{1, 2, 6, 7}},
		{"applied inside a document's lines", []change.Checkpoint{{Source: a, Applied: pos(a, "3")}}, []int{6, 7}, []int{1, 2, 6, 7}},
		{"held resumes at the held record", []change.Checkpoint{{Source: a, Applied: pos(a, "7"), Held: true, Resume: pos(a, "2")}}, []int{2, 6, 7}, []int{1, 2, 6, 7}},
		{"both files", []change.Checkpoint{{Source: a, Applied: pos(a, "7")}, {Source: b, Applied: pos(b, "1")}}, nil, []int{2, 6, 7}},
		{"other sources and partitions ignored", []change.Checkpoint{
			{Source: "orders", Partition: "0", Applied: change.Position{Source: "orders", Partition: "0", Offset: "5"}},
			{Source: a, Partition: "1", Applied: pos(a, "7")},
		}, []int{1, 2, 6, 7}, []int{1, 2, 6, 7}},
		{"past the end", []change.Checkpoint{{Source: a, Applied: pos(a, "99")}}, nil, []int{1, 2, 6, 7}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src, err := Open([]string{a, b}, Options{BatchRecords: 2})
			if err != nil {
				t.Fatal(err)
			}
			if err := src.Resume(context.Background(), tc.cps); err != nil {
				t.Fatal(err)
			}
			raws, _ := readAll(t, src)
			var gotA, gotB []int
			for _, r := range raws {
				n, _ := strconv.Atoi(r.Position.Offset)
				if r.Position.Source == a {
					gotA = append(gotA, n)
				} else {
					gotB = append(gotB, n)
				}
			}
			if !equalInts(gotA, tc.wantA) || !equalInts(gotB, tc.wantB) {
				t.Fatalf("read a=%v b=%v, want a=%v b=%v", gotA, gotB, tc.wantA, tc.wantB)
			}
		})
	}
	t.Run("bad offset", func(t *testing.T) {
		src, _ := Open([]string{a}, Options{})
		err := src.Resume(context.Background(), []change.Checkpoint{{Source: a, Applied: pos(a, "x1")}})
		if err == nil || !strings.Contains(err.Error(), a) {
			t.Fatalf("Resume error = %v, want one naming %s", err, a)
		}
	})
	t.Run("after read", func(t *testing.T) {
		src, _ := Open([]string{a}, Options{})
		if _, _, err := src.Read(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := src.Resume(context.Background(), nil); err == nil {
			t.Fatal("Resume after Read succeeded")
		}
		_ = src.Close(context.Background())
	})
}

func TestAcks(t *testing.T) {
	p := writeFile(t, t.TempDir(), "a", "1\n2\n3\n4\n")
	ctx := context.Background()
	src, err := Open([]string{p}, Options{BatchRecords: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, ack1, err := src.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, ack2, err := src.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(src.Committed()) != 0 {
		t.Fatal("committed before any ack")
	}
	if err := ack2(ctx, nil); err == nil {
		t.Fatal("out-of-order ack accepted")
	}
	if err := ack1(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := ack1(ctx, nil); err == nil {
		t.Fatal("second ack of one batch accepted")
	}
	if got := src.Committed()[p]; got.Offset != "1" {
		t.Fatalf("committed = %v, want line 1", got)
	}
	if err := ack2(ctx, nil); err != nil {
		t.Fatalf("in-order ack after a rejected one: %v", err)
	}
	if got := src.Committed()[p]; got.Offset != "2" {
		t.Fatalf("committed = %v, want line 2", got)
	}
	_ = src.Close(ctx)
}

func TestNackStopsReading(t *testing.T) {
	p := writeFile(t, t.TempDir(), "a", "1\n2\n3\n")
	ctx := context.Background()
	src, err := Open([]string{p}, Options{BatchRecords: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, ack, err := src.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ack(ctx, errors.New("sink down")); err != nil {
		t.Fatal(err)
	}
	_, _, err = src.Read(ctx)
	if err == nil || !strings.Contains(err.Error(), "sink down") || !strings.Contains(err.Error(), p+":1") {
		t.Fatalf("Read after nack = %v, want an error naming the batch and the cause", err)
	}
	if len(src.Committed()) != 0 {
		t.Fatalf("nack committed %v", src.Committed())
	}
	_ = src.Close(ctx)
}

func TestReadHonoursContextOnBlockedStdin(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	src, err := Open([]string{"-"}, Options{Stdin: pr})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := src.Read(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read = %v, want context.Canceled", err)
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer ccancel()
	if err := src.Close(cctx); err != nil {
		t.Fatal(err)
	}
}

func TestTruncationIsLogged(t *testing.T) {
	p := writeFile(t, t.TempDir(), "a", strings.Repeat("y", 100)+"\n{\n")
	var logs bytes.Buffer
	src, err := Open([]string{p}, Options{MaxRecordBytes: 10, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, src)
	for _, want := range []string{"record truncated", "position=" + p + ":1", "bytes=100", "not closed at end of input", "position=" + p + ":2"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}
