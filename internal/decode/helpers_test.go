package decode

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/testgen"
)

// t0 is the clock of every test: nothing here reads the real clock.
var t0 = time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)

// genKeys are the key columns of testgen's tables.
var genKeys = &change.Keys{Tables: testgen.DefaultKeys()}

// newDecoder returns a Decoder for o or fails the test.
func newDecoder(t testing.TB, o Options) *Decoder {
	t.Helper()
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// at is a file position: line n of src.
func at(src string, n int) change.Position {
	return change.Position{Source: src, Offset: strconv.Itoa(n)}
}

// decodeAll decodes raws in order with one Decoder and returns the output.
func decodeAll(d *Decoder, raws ...change.Raw) Output {
	var out Output
	for _, r := range raws {
		d.Decode(r, t0, &out)
	}
	return out
}

// checkEvents fails the test unless every event has a valid op, a key, and
// images that are nil or one JSON object.
func checkEvents(t testing.TB, evs []change.Event) {
	t.Helper()
	for i := range evs {
		e := &evs[i]
		if !e.Op.Valid() {
			t.Errorf("event %d at %s: op %q", i, e.Position, e.Op)
		}
		if e.Table == "" {
			t.Errorf("event %d at %s: no table", i, e.Position)
		}
		for name, img := range map[string]json.RawMessage{"before": e.Before, "after": e.After} {
			if img == nil {
				continue
			}
			if !isJSONObject(img) {
				t.Errorf("event %d at %s: %s is not a JSON object: %.200s", i, e.Position, name, img)
			}
		}
		if e.Image() == nil {
			t.Errorf("event %d at %s: op %s without its image", i, e.Position, e.Op)
		}
	}
}

func isJSONObject(b []byte) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal(b, &m) == nil && m != nil
}

// deadSummary renders dead letters as "reason@position" for messages.
func deadSummary(dead []change.DeadLetter) string {
	parts := make([]string, len(dead))
	for i, d := range dead {
		parts[i] = d.Reason + "@" + d.Position.String() + " (" + d.Detail + ")"
	}
	return strings.Join(parts, "; ")
}
