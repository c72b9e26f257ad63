package postgres

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/sqlgen"
)

// The event log is written with COPY ... FROM STDIN (FORMAT binary), encoded
// here directly from the events: no per-value interface boxing or type
// lookups, and the encoding (with the planning it drives) runs while the
// server parses what was already sent.

// copyHeader starts a binary COPY stream: signature, flags, extension length.
var copyHeader = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")

// copyTrailer ends a binary COPY stream.
var copyTrailer = []byte{0xff, 0xff}

// pgEpochMicros is 2000-01-01T00:00:00Z in microseconds since the Unix epoch.
const pgEpochMicros = 946684800 * 1_000_000

func appendInt16(b []byte, v int16) []byte { return binary.BigEndian.AppendUint16(b, uint16(v)) }
func appendInt32(b []byte, v int32) []byte { return binary.BigEndian.AppendUint32(b, uint32(v)) }

// appendNull appends a NULL field.
func appendNull(b []byte) []byte { return appendInt32(b, -1) }

// appendText appends a text field, made storable: PostgreSQL text holds
// neither NUL nor invalid UTF-8 (callers reject such values where they
// matter; positions and dead-letter details are rendered readable instead).
func appendText(b []byte, s string) []byte {
	if !storable(s) {
		s = cleanText(s)
	}
	b = appendInt32(b, int32(len(s)))
	return append(b, s...)
}

// appendTextOrNull appends s, or NULL when s is "".
func appendTextOrNull(b []byte, s string) []byte {
	if s == "" {
		return appendNull(b)
	}
	return appendText(b, s)
}

// appendJSONB appends a jsonb field (version 1, then the JSON text), or NULL
// for a nil document.
func appendJSONB(b []byte, doc []byte) []byte {
	if doc == nil {
		return appendNull(b)
	}
	b = appendInt32(b, int32(len(doc)+1))
	b = append(b, 1)
	return append(b, doc...)
}

func appendInt8(b []byte, v int64) []byte {
	b = appendInt32(b, 8)
	return binary.BigEndian.AppendUint64(b, uint64(v))
}

// appendTimestampNS appends a timestamptz field of ns nanoseconds since the
// Unix epoch, truncated to microseconds.
func appendTimestampNS(b []byte, ns int64) []byte {
	us := ns / 1000
	if ns < 0 && ns%1000 != 0 {
		us--
	}
	return appendInt8(b, us-pgEpochMicros)
}

func appendTimestamp(b []byte, t time.Time) []byte {
	return appendInt8(b, t.UnixMicro()-pgEpochMicros)
}

// storable reports whether s can be stored as PostgreSQL text as it is.
func storable(s string) bool {
	return strings.IndexByte(s, 0) < 0 && utf8.ValidString(s)
}

func storableBytes(b []byte) bool {
	return bytes.IndexByte(b, 0) < 0 && utf8.Valid(b)
}

// copySQL is COPY table (cols) FROM STDIN (FORMAT binary); table is quoted by the caller.
func copySQL(table string, cols []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = sqlgen.QuoteIdent(c)
	}
	return "COPY " + table + " (" + strings.Join(q, ", ") + ") FROM STDIN (FORMAT binary)"
}

// cleanText renders s storable: invalid UTF-8 becomes U+FFFD and NUL the
// six characters \u0000.
func cleanText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", `\u0000`)
}

// appendPosition appends p as change.Position.String renders it.
func appendPosition(b []byte, p change.Position) []byte {
	b = append(b, p.Source...)
	if p.Partition != "" {
		b = append(b, '[')
		b = append(b, p.Partition...)
		b = append(b, "]@"...)
	} else if p.Offset != "" {
		b = append(b, ':')
	}
	b = append(b, p.Offset...)
	if p.Indexed {
		b = append(b, '#')
		b = strconv.AppendInt(b, int64(p.Index), 10)
	}
	return b
}

// appendStreamOrder appends source \x01 partition \x01 Position.Sortable():
// bytes ordered as change.ComparePosition orders positions.
func appendStreamOrder(b []byte, p change.Position) []byte {
	b = append(b, p.Source...)
	b = append(b, 1)
	b = append(b, p.Partition...)
	b = append(b, 1)
	b = appendSortableOffset(b, p.Offset)
	if p.Indexed {
		b = append(b, '#')
		b = change.AppendSortableUint(b, uint64(p.Index))
	}
	return b
}

// appendSortableOffset appends change.SortableDecimal(off), or off itself
// when it is not a decimal, as Position.Sortable does.
func appendSortableOffset(b []byte, off string) []byte {
	s := strings.TrimLeft(off, "0")
	if s == "" {
		s = "0"
	}
	if len(s) > 99 {
		return append(b, off...)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return append(b, off...)
		}
	}
	b = append(b, byte('0'+len(s)/10), byte('0'+len(s)%10))
	return append(b, s...)
}

// appendVarText appends a text field built by fn (which appends raw bytes),
// patching in its length afterwards.
func appendVarText(b []byte, fn func([]byte) []byte) []byte {
	at := len(b)
	b = appendInt32(b, 0)
	b = fn(b)
	field := b[at+4:]
	if !storableBytes(field) {
		clean := cleanText(string(field))
		b = append(b[:at+4], clean...)
	}
	binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-4))
	return b
}
