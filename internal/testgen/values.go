package testgen

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// tricky are strings that break naive JSON, SQL and CSV handling.
var tricky = []string{
	"plain",
	"Zoë Ångström",
	"naïve café",
	"日本語テキスト",
	"emoji 🚀🔥👩‍💻",
	`quote " inside`,
	`single ' quote`,
	`back\slash \\ twice`,
	"new\nline",
	"crlf\r\nline",
	"tab\tseparated",
	"",
	" leading and trailing ",
	"line sep \u2028 para sep \u2029",
	"null",
	"'); DROP TABLE orders; --",
	"{\"looks\":\"like json\"}",
	"ümlaut \"quoted\" \\ and\nnewline 🎉",
}

var firstNames = []string{"Ada", "Zoë", "José", "Łukasz", "Søren", "Mei", "Ngozi", "O'Brien", "Anaïs", "Björk", "Владимир", "محمد", "李"}
var lastNames = []string{"Lovelace", "Müller", "García", "Nowak", "Kierkegaard", "Chen", "Okafor", "D'Angelo", `"The Hammer"`, "Smith\\Jones", "Иванов", "🦄"}
var statuses = []string{"new", "paid", "packed", "shipped", "delivered", "cancelled", "returned"}
var cities = []string{"Zürich", "São Paulo", "Kraków", "東京", "New York", "Reykjavík", "Ōsaka", "Llanfair­pwll"}
var tagPool = []string{"vip", "b2b", "newsletter", "🚀", "beta", "spam\"y", "a\\b", "multi word", "ünïcödé"}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

// num returns n as a json.Number.
func num(n int64) json.Number { return json.Number(strconv.FormatInt(n, 10)) }

// decimal renders units/10^scale with exactly scale fraction digits, the
// way PostgreSQL prints NUMERIC(p, scale).
func decimal(units int64, scale int) json.Number {
	neg := units < 0
	if neg {
		units = -units
	}
	s := strconv.FormatInt(units, 10)
	if scale > 0 {
		for len(s) <= scale {
			s = "0" + s
		}
		s = s[:len(s)-scale] + "." + s[len(s)-scale:]
	}
	if neg {
		s = "-" + s
	}
	return json.Number(s)
}

// timestamp renders ns as an RFC 3339 UTC string with microsecond precision
// and trailing zeros trimmed (Go's RFC3339Nano, Debezium's ZonedTimestamp).
func timestamp(ns int64) string {
	return time.Unix(0, ns).UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano)
}

// randomTime returns a timestamp string in 2020-2025 with a random precision.
func randomTime(r *rand.Rand) string {
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	ns := base + r.Int64N(int64(5*365*24*time.Hour))
	switch r.IntN(3) {
	case 0:
		ns -= ns % int64(time.Second)
	case 1:
		ns -= ns % int64(time.Millisecond)
	}
	return timestamp(ns)
}

func randomText(r *rand.Rand) string {
	if r.IntN(3) == 0 {
		return pick(r, tricky)
	}
	return fmt.Sprintf("%s %s #%d", pick(r, firstNames), pick(r, lastNames), r.IntN(1000))
}

// bigText returns a text of about n bytes with newlines, quotes and emoji.
func bigText(r *rand.Rand, n int) string {
	var b strings.Builder
	line := 0
	for b.Len() < n {
		line++
		fmt.Fprintf(&b, "line %03d: %s — \"%s\" \\ %s\n", line, pick(r, tricky), pick(r, firstNames), pick(r, cities))
	}
	return b.String()
}

func randomTags(r *rand.Rand) []any {
	n := r.IntN(4)
	out := make([]any, 0, n)
	seen := map[string]bool{}
	for len(out) < n {
		t := pick(r, tagPool)
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}

func randomProfile(r *rand.Rand) map[string]any {
	p := map[string]any{
		"tier":  pick(r, []string{"gold", "silver", "bronze"}),
		"score": decimal(r.Int64N(100000)-5000, 2),
		"prefs": map[string]any{
			"lang":       pick(r, []string{"de", "en", "ja", "pt-BR"}),
			"newsletter": r.IntN(2) == 0,
			"quiet":      nil,
		},
		"history": []any{num(r.Int64N(100)), num(r.Int64N(100)), decimal(r.Int64N(1000), 1)},
	}
	switch r.IntN(5) {
	case 0:
		p["empty_obj"] = map[string]any{}
	case 1:
		p["empty_list"] = []any{}
	case 2:
		p["motto"] = pick(r, tricky)
	case 3:
		p["deep"] = map[string]any{"a": map[string]any{"b": map[string]any{"c": []any{true, nil, "x"}}}}
	}
	return p
}

func randomShipping(r *rand.Rand) map[string]any {
	return map[string]any{
		"address": map[string]any{
			"street": fmt.Sprintf("%d %s", 1+r.IntN(300), pick(r, []string{"Hauptstraße", "Main St", "Rue de l'Église", "Calle \"Mayor\""})),
			"city":   pick(r, cities),
			"zip":    fmt.Sprintf("%05d", r.IntN(100000)),
		},
		"express": r.IntN(4) == 0,
		"weights": []any{decimal(r.Int64N(5000), 3), num(r.Int64N(20))},
	}
}

func randomAttrs(r *rand.Rand) any {
	if r.IntN(3) == 0 {
		return nil
	}
	return map[string]any{
		"color": pick(r, []string{"red", "grün", "青"}),
		"size":  pick(r, []any{json.Number("42"), "XL", nil}),
	}
}

// bigRef is an integer beyond float64's exact range, to catch decoders that
// parse numbers as float64.
func bigRef(r *rand.Rand) json.Number {
	return num(9007199254740993 + 2*r.Int64N(1<<40))
}
