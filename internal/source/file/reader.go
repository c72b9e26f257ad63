package file

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// record is one record found by recordReader. data is valid until the next
// call to next.
type record struct {
	data      []byte
	line      int64 // first line, from 1
	lines     int64 // how many lines it spans
	size      int64 // bytes before truncation, without the final line terminator
	truncated bool
	open      bool // a document still open at end of input
}

// recordReader splits a byte stream into records (see the package doc).
type recordReader struct {
	br      *bufio.Reader
	max     int
	line    int64 // lines consumed so far
	scratch []byte
	doc     []byte
}

func newRecordReader(r io.Reader, max int) *recordReader {
	size := 256 << 10
	if br, ok := r.(*bufio.Reader); ok && br.Size() >= size {
		return &recordReader{br: br, max: max}
	}
	return &recordReader{br: bufio.NewReaderSize(r, size), max: max}
}

// readLine returns the next line without its terminator, truncated to max
// bytes, and the line's length before truncation. It returns io.EOF only when
// no bytes are left.
func (r *recordReader) readLine() (line []byte, full int64, err error) {
	frag, err := r.br.ReadSlice('\n')
	if err == nil || (err == io.EOF && len(frag) > 0) {
		// The whole line is in the reader's buffer: no copy.
		line = trimEOL(frag)
		full = int64(len(line))
		if len(line) > r.max {
			line = line[:r.max]
		}
		return line, full, nil
	}
	if err == io.EOF {
		return nil, 0, io.EOF
	}
	if !errors.Is(err, bufio.ErrBufferFull) {
		return nil, 0, err
	}
	// A long line: keep up to max+2 bytes (room for "\r\n"), count the rest.
	r.scratch = r.scratch[:0]
	var total int64
	var last2 [2]byte // the last two bytes seen, for the terminator
	for {
		total += int64(len(frag))
		if room := r.max + 2 - len(r.scratch); room > 0 {
			r.scratch = append(r.scratch, frag[:min(len(frag), room)]...)
		}
		switch n := len(frag); {
		case n >= 2:
			last2 = [2]byte{frag[n-2], frag[n-1]}
		case n == 1:
			last2 = [2]byte{last2[1], frag[0]}
		}
		if err == nil || err == io.EOF {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, 0, err
		}
		frag, err = r.br.ReadSlice('\n')
	}
	full = total
	if last2[1] == '\n' {
		full--
		if last2[0] == '\r' {
			full--
		}
	}
	line = r.scratch[:min(int64(len(r.scratch)), full)]
	if len(line) > r.max {
		line = line[:r.max]
	}
	return line, full, nil
}

func trimEOL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
	}
	return b
}

// next returns the next record, or io.EOF.
func (r *recordReader) next() (record, error) {
	for {
		line, full, err := r.readLine()
		if err != nil {
			return record{}, err
		}
		r.line++
		t := bytes.TrimSpace(line)
		if len(t) == 0 && full == int64(len(line)) {
			continue
		}
		if !(len(t) == 1 && (t[0] == '{' || t[0] == '[')) {
			return record{data: line, line: r.line, lines: 1, size: full, truncated: full > int64(len(line))}, nil
		}
		return r.document(line)
	}
}

// document accumulates a multi-line JSON document whose first line is first.
func (r *recordReader) document(first []byte) (record, error) {
	rec := record{line: r.line, lines: 1, size: int64(len(first))}
	r.doc = append(r.doc[:0], first...)
	var sc scanner
	sc.feed(first)
	for sc.depth > 0 {
		line, full, err := r.readLine()
		if err == io.EOF {
			rec.open = true
			break
		}
		if err != nil {
			return record{}, err
		}
		r.line++
		rec.lines++
		rec.size += 1 + full
		if full > int64(len(line)) {
			rec.truncated = true
		}
		sc.feed(line)
		if room := r.max - len(r.doc); room > 0 {
			r.doc = append(r.doc, '\n')
			r.doc = append(r.doc, line[:min(len(line), room-1)]...)
		}
	}
	if rec.size > int64(r.max) {
		rec.truncated = true
	}
	rec.data = r.doc
	return rec, nil
}

// scanner tracks bracket depth outside JSON strings, line by line. JSON
// strings cannot span lines, so an unterminated string ends with its line:
// one bad line cannot swallow the rest of a document.
type scanner struct {
	depth int
}

func (s *scanner) feed(line []byte) {
	inStr, esc := false, false
	for _, c := range line {
		if inStr {
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
		case '{', '[':
			s.depth++
		case '}', ']':
			s.depth--
		}
	}
}
