package deadletter

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/cdcflow/cdcflow/internal/change"
)

// Line is the JSON shape of one dead letter.
type Line struct {
	Reason   string `json:"reason"`
	Detail   string `json:"detail"`
	Format   string `json:"format"`
	Position string `json:"position"`
	Raw      []byte `json:"raw"` // base64 in JSON
	At       string `json:"at"`
}

// Writer writes dead letters as JSON lines to an io.Writer (for example
// os.Stderr for `cdcflow inspect`). It buffers; call Flush.
type Writer struct {
	mu   sync.Mutex
	name string
	bw   *bufio.Writer
	enc  *json.Encoder
	now  func() time.Time
}

// New returns a Writer that writes to w. name identifies w in errors
// ("stderr", a path).
func New(w io.Writer, name string) *Writer {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	return &Writer{name: name, bw: bw, enc: enc, now: time.Now}
}

// Write appends one JSON line per dead letter.
func (w *Writer) Write(dl []change.DeadLetter) error {
	if len(dl) == 0 {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	at := w.now().UTC().Format(time.RFC3339Nano)
	for i := range dl {
		d := &dl[i]
		l := Line{Reason: d.Reason, Detail: d.Detail, Format: d.Format, Position: d.Position.String(), Raw: d.Raw, At: at}
		if l.Raw == nil {
			l.Raw = []byte{}
		}
		if err := w.enc.Encode(&l); err != nil {
			return fmt.Errorf("write dead letter %s to %s: %w", d.Position, w.name, err)
		}
	}
	return nil
}

// Flush hands buffered lines to the underlying writer.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.bw.Flush(); err != nil {
		return fmt.Errorf("flush dead letters to %s: %w", w.name, err)
	}
	return nil
}

// File is a Writer on a file opened for appending; Flush also fsyncs.
type File struct {
	*Writer
	f *os.File
}

// NewFile opens (creating if needed, mode 0640) path for appending dead
// letters.
func NewFile(path string) (*File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open dead-letter file: %w", err)
	}
	return &File{Writer: New(f, path), f: f}, nil
}

// Flush writes buffered lines and fsyncs the file.
func (f *File) Flush() error {
	if err := f.Writer.Flush(); err != nil {
		return err
	}
	if err := f.f.Sync(); err != nil {
		return fmt.Errorf("sync dead-letter file %s: %w", f.name, err)
	}
	return nil
}

// Close flushes, fsyncs and closes the file.
func (f *File) Close() error {
	ferr := f.Flush()
	if err := f.f.Close(); err != nil && ferr == nil {
		ferr = fmt.Errorf("close dead-letter file %s: %w", f.name, err)
	}
	return ferr
}
