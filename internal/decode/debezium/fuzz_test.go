package debezium

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cdcflow/cdcflow/internal/change"
)

// FuzzDecode: Decode never panics, fails only with *change.Poison or
// *change.Skip, and every event it emits keeps the invariants.
func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, file := range files {
		if strings.HasSuffix(file, ".golden.json") || strings.HasSuffix(file, ".key.json") {
			continue
		}
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		key, _ := os.ReadFile(strings.TrimSuffix(file, ".json") + ".key.json")
		f.Add(data, key)
	}
	f.Fuzz(func(t *testing.T, data, key []byte) {
		evs, err := Decode(nil, change.Raw{Data: data, Key: key}, testKeys)
		if err != nil {
			var p *change.Poison
			var s *change.Skip
			if !errors.As(err, &p) && !errors.As(err, &s) {
				t.Fatalf("error %T %v is neither poison nor skip", err, err)
			}
			if p != nil && p.Reason == "" {
				t.Fatal("poison without reason")
			}
			if len(evs) != 0 {
				t.Fatal("events returned with an error")
			}
			return
		}
		if len(evs) != 1 {
			t.Fatalf("%d events", len(evs))
		}
		e := evs[0]
		if !e.Op.Valid() {
			t.Fatalf("op %q", e.Op)
		}
		for _, img := range []json.RawMessage{e.Before, e.After} {
			if img == nil {
				continue
			}
			// UseNumber: 1E700 is valid JSON though no float64 holds it.
			var m map[string]any
			dec := json.NewDecoder(bytes.NewReader(img))
			dec.UseNumber()
			if err := dec.Decode(&m); err != nil || m == nil || !json.Valid(img) {
				t.Fatalf("image %q is not a JSON object: %v", img, err)
			}
		}
		if e.Image() == nil {
			t.Fatal("event without its image")
		}
		if e.Table == "" || e.Key == "" || len(e.KeyColumns) == 0 {
			t.Fatalf("empty table %q, key %q or key columns %v", e.Table, e.Key, e.KeyColumns)
		}
		for i := 0; i < len(e.Order.Seq); i++ {
			if e.Order.Seq[i] <= ' ' {
				t.Fatalf("seq %q holds byte %#x", e.Order.Seq, e.Order.Seq[i])
			}
		}
		if e.Order.LogFirst != (e.Order.Seq != "") {
			t.Fatalf("order %+v: LogFirst must go with a Seq", e.Order)
		}
		if e.Order.CommitNS < 0 {
			t.Fatalf("negative commit time %d", e.Order.CommitNS)
		}
	})
}
