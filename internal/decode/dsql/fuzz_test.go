package dsql

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
)

// fuzzBound is the assembler bound in FuzzDecode, small so that eviction
// happens often.
const fuzzBound = 2048

// FuzzDecode feeds one input as a single record and, line by line, as a
// stream of records (so fuzzed fragments form sets). It checks that nothing
// panics, that emitted events are well formed, that the hand scanner agrees
// with json.Valid, and that the assembler stays under its bound.
func FuzzDecode(f *testing.F) {
	inputs, _ := filepath.Glob("testdata/*.json")
	for _, in := range inputs {
		if strings.HasSuffix(in, ".golden.json") {
			continue
		}
		b, err := os.ReadFile(in)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		for _, line := range bytes.Split(b, []byte("\n")) {
			f.Add(line)
		}
	}
	main, frags := chunkSet(f, "F", `{"id":"fz","v":[1,{"w":"\u00e9"}]}`, 3, "u", "after")
	f.Add(bytes.Join([][]byte{frags[2], main, frags[0], frags[0], frags[1]}, []byte("\n")))

	f.Fuzz(func(t *testing.T, data []byte) {
		d := NewDecoder(testKeys, fuzzBound, time.Minute)
		now := t0
		records := append([][]byte{data}, bytes.Split(data, []byte("\n"))...)
		for i, rec := range records {
			Detect(rec)
			n := 0
			evs, err := d.Decode(nil, change.Raw{Data: rec, Position: change.Position{Source: "f", Partition: strconv.Itoa(i % 2), Offset: strconv.Itoa(i)}}, now)
			n = len(evs)
			checkEvents(t, evs)
			var p *change.Poison
			var s *change.Skip
			switch {
			case err == nil:
				if n != 1 {
					t.Fatalf("record %d: no error and %d events", i, n)
				}
			case errors.As(err, &p):
				if n != 0 || p.Reason == "" {
					t.Fatalf("record %d: poison %v with %d events", i, p, n)
				}
				if p.Reason == change.ReasonInvalidJSON && json.Valid(rec) && !strings.Contains(p.Detail, "reassembled") && !strings.Contains(p.Detail, "dead-lettered") && !strings.Contains(p.Detail, "nesting too deep") {
					t.Fatalf("record %d: valid JSON rejected as invalid: %v\n%q", i, p, rec)
				}
			case errors.As(err, &s):
				if n != 0 || s.Reason == "" {
					t.Fatalf("record %d: skip %v with %d events", i, s, n)
				}
			default:
				t.Fatalf("record %d: error of type %T: %v", i, err, err)
			}
			if !json.Valid(rec) && (p == nil || n != 0) {
				t.Fatalf("record %d: invalid JSON not dead-lettered (err %v, %d events)\n%q", i, err, n, rec)
			}
			checkDead(t, d.TakeDead())
			if d.Asm.HeldBytes() > fuzzBound || d.Asm.HeldBytes() < 0 || d.Asm.HeldCount() < 0 {
				t.Fatalf("assembler holds %d bytes in %d pieces, bound %d", d.Asm.HeldBytes(), d.Asm.HeldCount(), fuzzBound)
			}
			now = now.Add(10 * time.Second)
			checkDead(t, d.Expire(now))
		}
		checkDead(t, d.Drain())
		if d.Asm.HeldBytes() != 0 || d.Asm.HeldCount() != 0 {
			t.Fatalf("after Drain: %d bytes in %d pieces", d.Asm.HeldBytes(), d.Asm.HeldCount())
		}
	})
}

func checkEvents(t *testing.T, evs []change.Event) {
	t.Helper()
	for _, e := range evs {
		for name, img := range map[string][]byte{"before": e.Before, "after": e.After} {
			if img != nil && (!json.Valid(img) || bytes.TrimLeft(img, " \t\r\n")[0] != '{') {
				t.Fatalf("event %s is not a JSON object: %q", name, img)
			}
		}
		if e.Table == "" || e.Key == "" || !e.Op.Valid() || e.Image() == nil {
			t.Fatalf("malformed event %+v", e)
		}
	}
}

func checkDead(t *testing.T, dead []change.DeadLetter) {
	t.Helper()
	for _, dl := range dead {
		if dl.Reason == "" || dl.Format != Format || dl.Raw == nil || dl.Detail == "" {
			t.Fatalf("malformed dead letter %+v", dl)
		}
	}
}
