package file

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/cdcflow/cdcflow/internal/change"
	"github.com/cdcflow/cdcflow/internal/source"
)

// Defaults used when an Options field is zero.
const (
	DefaultBatchRecords   = 1000
	DefaultBatchBytes     = 16 << 20
	DefaultMaxRecordBytes = 16 << 20
)

// Stdin is the path that names standard input.
const Stdin = "-"

// Options configure a Source.
type Options struct {
	BatchRecords   int          // records per Read at most; 0 means DefaultBatchRecords
	BatchBytes     int          // a batch ends once its records hold this many bytes; 0 means DefaultBatchBytes
	MaxRecordBytes int          // longer lines and documents are truncated; 0 means DefaultMaxRecordBytes
	Stdin          io.Reader    // what "-" reads; nil means os.Stdin
	Logger         *slog.Logger // nil means slog.Default()
}

// Source reads records from files and stdin. Read is called from one
// goroutine; acks may come from another.
type Source struct {
	inputs []input
	opts   Options
	log    *slog.Logger

	mu        sync.Mutex
	started   bool
	closed    bool
	skip      map[string]skipRule
	committed map[string]change.Position
	failed    error // set by a negative ack or a read error; every later Read returns it
	eof       bool
	seq       uint64 // batches read
	acked     uint64 // batches acked

	batches chan batch
	done    chan struct{}
	exited  chan struct{}
}

var (
	_ source.Source  = (*Source)(nil)
	_ source.Resumer = (*Source)(nil)
)

type input struct {
	name string // Position.Source: absolute path, or "-"
}

// skipRule drops records before a resume point: line < at, or line <= at
// when inclusive.
type skipRule struct {
	at        int64
	inclusive bool
}

func (r skipRule) skips(line int64) bool {
	return line < r.at || (r.inclusive && line == r.at)
}

type batch struct {
	raws []change.Raw
	ends []change.Position // last position of each input in the batch
	err  error             // a read error, or source.ErrEndOfInput
}

// Open checks every path and returns a Source reading them in order. A path
// is a file, a glob (its matches sorted; no match is an error naming it) or
// "-" for stdin (at most once).
func Open(paths []string, opts Options) (*Source, error) {
	if len(paths) == 0 {
		return nil, errors.New("open file source: no input paths")
	}
	if opts.BatchRecords <= 0 {
		opts.BatchRecords = DefaultBatchRecords
	}
	if opts.BatchBytes <= 0 {
		opts.BatchBytes = DefaultBatchBytes
	}
	if opts.MaxRecordBytes <= 0 {
		opts.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if opts.Stdin == nil {
		opts.Stdin = os.Stdin
	}
	s := &Source{
		opts:      opts,
		log:       opts.Logger,
		committed: map[string]change.Position{},
		batches:   make(chan batch, 1),
		done:      make(chan struct{}),
		exited:    make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	seen := map[string]bool{}
	add := func(name string) {
		if !seen[name] {
			seen[name] = true
			s.inputs = append(s.inputs, input{name: name})
		}
	}
	stdin := false
	for _, p := range paths {
		switch {
		case p == Stdin:
			if stdin {
				return nil, errors.New(`open file source: stdin ("-") listed twice`)
			}
			stdin = true
			add(Stdin)
		case p == "":
			return nil, errors.New("open file source: empty path")
		default:
			files, err := expand(p)
			if err != nil {
				return nil, fmt.Errorf("open file source: %w", err)
			}
			for _, f := range files {
				add(f)
			}
		}
	}
	return s, nil
}

// expand resolves one path or glob to sorted absolute file paths.
func expand(p string) ([]string, error) {
	matches := []string{p}
	if _, err := os.Stat(p); err != nil && strings.ContainsAny(p, "*?[") {
		m, gerr := filepath.Glob(p)
		if gerr != nil {
			return nil, fmt.Errorf("glob %q: %w", p, gerr)
		}
		if len(m) == 0 {
			return nil, fmt.Errorf("glob %q matches no files", p)
		}
		sort.Strings(m)
		matches = m
	}
	out := make([]string, 0, len(matches))
	for _, m := range matches {
		fi, err := os.Stat(m)
		if err != nil {
			return nil, fmt.Errorf("input %s: %w", m, err)
		}
		if fi.IsDir() {
			return nil, fmt.Errorf("input %s is a directory (use a glob such as %s)", m, filepath.Join(m, "*.ndjson"))
		}
		abs, err := filepath.Abs(m)
		if err != nil {
			return nil, fmt.Errorf("input %s: %w", m, err)
		}
		out = append(out, filepath.Clean(abs))
	}
	return out, nil
}

// Inputs returns the Position.Source of every input, in reading order.
func (s *Source) Inputs() []string {
	out := make([]string, len(s.inputs))
	for i, in := range s.inputs {
		out[i] = in.name
	}
	return out
}

// CanResume reports whether records of the named input can be skipped on
// resume: true for files, false for stdin.
func (s *Source) CanResume(name string) bool { return name != Stdin }

// Resume skips, in each file with a checkpoint, the records before its
// Resume position when Held, else the records at or before Applied.
// Checkpoints of other sources, of partitions other than "", and of stdin are
// ignored. It must be called before the first Read.
func (s *Source) Resume(_ context.Context, cps []change.Checkpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("resume file source: already reading")
	}
	names := map[string]bool{}
	for _, in := range s.inputs {
		names[in.name] = true
	}
	skip := map[string]skipRule{}
	for _, cp := range cps {
		if !names[cp.Source] || cp.Partition != "" || !s.CanResume(cp.Source) {
			continue
		}
		pos, inclusive := cp.Applied, true
		if cp.Held {
			pos, inclusive = cp.Resume, false
		}
		line, err := strconv.ParseInt(pos.Offset, 10, 64)
		if err != nil || line < 0 {
			return fmt.Errorf("resume %s: checkpoint offset %q is not a line number", cp.Source, pos.Offset)
		}
		r := skipRule{at: line, inclusive: inclusive}
		if old, ok := skip[cp.Source]; ok && !lessSkip(r, old) {
			continue // keep the more conservative rule
		}
		skip[cp.Source] = r
	}
	s.skip = skip
	return nil
}

// lessSkip reports whether a skips fewer records than b.
func lessSkip(a, b skipRule) bool {
	ea, eb := a.at*2, b.at*2
	if a.inclusive {
		ea++
	}
	if b.inclusive {
		eb++
	}
	return ea < eb
}

// Read returns the next batch of at most Options.BatchRecords records, or
// source.ErrEndOfInput once every input is read.
func (s *Source) Read(ctx context.Context) ([]change.Raw, source.AckFunc, error) {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return nil, nil, errors.New("read file source: closed")
	case s.failed != nil:
		err := s.failed
		s.mu.Unlock()
		return nil, nil, err
	case s.eof:
		s.mu.Unlock()
		return nil, nil, source.ErrEndOfInput
	}
	if !s.started {
		s.started = true
		go s.produce(s.skip)
	}
	s.mu.Unlock()

	select {
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case b := <-s.batches:
		s.mu.Lock()
		defer s.mu.Unlock()
		if b.err != nil {
			if errors.Is(b.err, source.ErrEndOfInput) {
				s.eof = true
			} else if s.failed == nil {
				s.failed = b.err
			}
			return nil, nil, b.err
		}
		s.seq++
		return b.raws, s.ackFunc(s.seq, b.ends), nil
	}
}

func (s *Source) ackFunc(seq uint64, ends []change.Position) source.AckFunc {
	return func(_ context.Context, err error) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if seq <= s.acked {
			return fmt.Errorf("ack file batch %d: already acknowledged", seq)
		}
		if seq != s.acked+1 {
			return fmt.Errorf("ack file batch %d: batches must be acknowledged in order (last was %d)", seq, s.acked)
		}
		s.acked = seq
		if err != nil {
			if s.failed == nil {
				s.failed = fmt.Errorf("file batch ending at %s was not applied; restart to resume from the stored checkpoints: %w", ends[len(ends)-1], err)
			}
			return nil
		}
		for _, p := range ends {
			if old, ok := s.committed[p.Source]; !ok || change.ComparePosition(old, p) < 0 {
				s.committed[p.Source] = p
			}
		}
		return nil
	}
}

// Committed returns, per input, the position of the last acknowledged record.
func (s *Source) Committed() map[string]change.Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]change.Position, len(s.committed))
	for k, v := range s.committed {
		out[k] = v
	}
	return out
}

// Close stops reading. It does not wait past ctx for a read blocked on stdin.
func (s *Source) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	started := s.started
	s.mu.Unlock()
	close(s.done)
	if !started {
		return nil
	}
	select {
	case <-s.exited:
	case <-ctx.Done():
	}
	return nil
}

// produce reads every input and sends batches until done is closed.
func (s *Source) produce(skip map[string]skipRule) {
	defer close(s.exited)
	p := producer{s: s, skip: skip}
	for _, in := range s.inputs {
		if err := p.readInput(in); err != nil {
			if errors.Is(err, errStopped) {
				return
			}
			if p.flush() {
				s.send(batch{err: err})
			}
			return
		}
	}
	if p.flush() {
		s.send(batch{err: source.ErrEndOfInput})
	}
}

var errStopped = errors.New("file source closed")

// send delivers b unless the source is closing; it reports whether it did.
func (s *Source) send(b batch) bool {
	select {
	case s.batches <- b:
		return true
	case <-s.done:
		return false
	}
}

type producer struct {
	s     *Source
	skip  map[string]skipRule
	arena arena
	raws  []change.Raw
	ends  []change.Position
	bytes int
}

// add appends a record, flushing when the batch is full.
func (p *producer) add(name string, rec *record) error {
	pos := change.Position{Source: name, Offset: strconv.FormatInt(rec.line, 10)}
	p.raws = append(p.raws, change.Raw{Data: p.arena.copy(rec.data), Position: pos})
	if n := len(p.ends); n > 0 && p.ends[n-1].Source == name {
		p.ends[n-1] = pos
	} else {
		p.ends = append(p.ends, pos)
	}
	p.bytes += len(rec.data)
	if len(p.raws) >= p.s.opts.BatchRecords || p.bytes >= p.s.opts.BatchBytes {
		if !p.flush() {
			return errStopped
		}
	}
	return nil
}

// flush sends the pending batch; it reports false when the source is closing.
func (p *producer) flush() bool {
	if len(p.raws) == 0 {
		return true
	}
	ok := p.s.send(batch{raws: p.raws, ends: p.ends})
	p.raws, p.ends, p.bytes = nil, nil, 0
	return ok
}

func (p *producer) readInput(in input) error {
	var r io.Reader
	if in.name == Stdin {
		r = p.s.opts.Stdin
	} else {
		f, err := os.Open(in.name)
		if err != nil {
			return fmt.Errorf("read %w", err)
		}
		defer f.Close()
		r = f
	}
	br := bufio.NewReaderSize(r, 256<<10)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("read %s: gzip: %w", in.name, err)
		}
		defer zr.Close()
		r = zr
	} else {
		r = br
	}
	rr := newRecordReader(r, p.s.opts.MaxRecordBytes)
	rule, resuming := p.skip[in.name]
	var skipped int64
	for {
		select {
		case <-p.s.done:
			return errStopped
		default:
		}
		rec, err := rr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read %s after line %d: %w", in.name, rr.line, err)
		}
		if resuming && rule.skips(rec.line) {
			skipped++
			continue
		}
		if rec.truncated {
			p.s.log.Warn("record truncated; it will be dead-lettered",
				"position", in.name+":"+strconv.FormatInt(rec.line, 10), "bytes", rec.size, "max_record_bytes", p.s.opts.MaxRecordBytes)
		}
		if rec.open {
			p.s.log.Warn("JSON document not closed at end of input; it will be dead-lettered",
				"position", in.name+":"+strconv.FormatInt(rec.line, 10), "lines", rec.lines)
		}
		if err := p.add(in.name, &rec); err != nil {
			return err
		}
	}
	if resuming {
		p.s.log.Info("resumed file", "file", in.name, "skipped_records", skipped, "checkpoint_line", rule.at)
		if rr.line < rule.at {
			p.s.log.Warn("file is shorter than its checkpoint; was it replaced since the checkpoint was stored?",
				"file", in.name, "lines", rr.line, "checkpoint_line", rule.at)
		}
	}
	return nil
}

// arena hands out copies of record bytes carved from large slabs. A slab is
// never reused: records keep it alive until they are garbage.
type arena struct{ buf []byte }

const slabSize = 1 << 20

func (a *arena) copy(b []byte) []byte {
	if len(b) > slabSize/4 {
		return append(make([]byte, 0, len(b)), b...)
	}
	if cap(a.buf)-len(a.buf) < len(b) {
		a.buf = make([]byte, 0, slabSize)
	}
	start := len(a.buf)
	a.buf = append(a.buf, b...)
	return a.buf[start:len(a.buf):len(a.buf)]
}
