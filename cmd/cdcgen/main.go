// Command cdcgen writes deterministic random CDC streams for benchmarks and
// tests: one NDJSON file per shard in the chosen format, optionally the Kafka
// keys, and the expected final state.
//
//	cdcgen -format dsql -seed 1 -changes 1000000 -dup 0.1 -shards 4 -out /tmp/dsql
//
// The same flags always give the same bytes. Memory is bounded by the key
// space (-keyspace) and the reorder window, not by -changes.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"time"

	"github.com/cdcflow/cdcflow/internal/testgen"
)

func main() {
	if os.Getenv("GOGC") == "" {
		// The live heap is the key space; collecting less often trades
		// ~100 MB for a fifth of the CPU time on large runs.
		debug.SetGCPercent(200)
	}
	if err := run(os.Args[1:], os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "cdcgen:", err)
		}
		os.Exit(2)
	}
}

type config struct {
	format   string
	out      string
	keys     string
	final    string
	examples bool
	seed     int64
	opts     testgen.Options
	enc      testgen.EncodeOptions
}

func parse(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("cdcgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.format, "format", "dsql", "record format: dsql, debezium, dms or dynamodb")
	fs.StringVar(&c.out, "out", "", "output directory (created if missing)")
	fs.StringVar(&c.keys, "keys", "none", "Kafka keys: none, sidecar (shard-NNN.keys.ndjson, one key per line) or tsv (shard-NNN.tsv lines of key<TAB>value)")
	fs.StringVar(&c.final, "final", "", "also write the expected final state (as the project's decoders yield it) as JSON to this file")
	fs.BoolVar(&c.examples, "examples", false, "write the example streams of examples/data to -out instead")
	fs.Int64Var(&c.seed, "seed", 1, "history seed")
	fs.IntVar(&c.opts.Changes, "changes", 1000, "row changes after the snapshot")
	fs.IntVar(&c.opts.Keys, "keyspace", 0, "distinct keys over all tables (0: changes/5, at least 40)")
	fs.IntVar(&c.opts.SnapshotRows, "snapshot", 0, "rows read by an initial snapshot")
	fs.IntVar(&c.opts.MaxTxSize, "tx", 0, "most changes per transaction (0: 4)")
	fs.IntVar(&c.opts.WideColumns, "wide", 0, "columns of the wide table (0: 60, -1: no wide table)")
	fs.Float64Var(&c.opts.BigRatio, "big", 0, "share of rows with a large text value (0: 0.01, -1: none)")
	fs.IntVar(&c.opts.BigBytes, "big-bytes", 0, "size of large text values (0: 3000)")
	fs.Int64Var(&c.enc.Seed, "delivery-seed", 0, "varies shards, duplicates and order for the same history")
	fs.IntVar(&c.enc.Shards, "shards", 4, "shards (one file each)")
	fs.Float64Var(&c.enc.DupRatio, "dup", 0.1, "chance that a record is delivered twice")
	fs.IntVar(&c.enc.ReorderWindow, "reorder", 32, "per-shard reorder window (0 or 1: commit order)")
	fs.IntVar(&c.enc.FragmentBytes, "fragment", 0, "dsql: fragment after images longer than this many bytes (0: never)")
	fs.BoolVar(&c.enc.KeepChunksTogether, "chunks-together", false, "dsql: keep a chunked record and its fragments on one shard")
	fs.StringVar(&c.enc.UpdateOp, "update-op", "c", `dsql: op of updates, "c" or "u"`)
	fs.BoolVar(&c.enc.DebeziumSchema, "schema", false, "debezium: schema envelope on keys and values")
	fs.BoolVar(&c.enc.Tombstones, "tombstones", false, "debezium: a null record after each delete")
	fs.BoolVar(&c.enc.ControlRecords, "control", false, "dms: a create-table control record per table")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.out == "" {
		return c, errors.New("-out is required")
	}
	if !slices.Contains(testgen.Formats, testgen.Format(c.format)) {
		return c, fmt.Errorf("-format %q: want dsql, debezium, dms or dynamodb", c.format)
	}
	if c.enc.UpdateOp != "c" && c.enc.UpdateOp != "u" {
		return c, fmt.Errorf("-update-op %q: want c or u", c.enc.UpdateOp)
	}
	switch c.keys {
	case "none", "sidecar", "tsv":
	default:
		return c, fmt.Errorf("-keys %q: want none, sidecar or tsv", c.keys)
	}
	if c.enc.Shards < 1 || c.enc.Shards > 1024 {
		return c, fmt.Errorf("-shards %d: want 1 to 1024", c.enc.Shards)
	}
	if c.enc.DupRatio < 0 || c.enc.DupRatio >= 1 {
		return c, fmt.Errorf("-dup %g: want 0 <= dup < 1", c.enc.DupRatio)
	}
	return c, nil
}

// shardFile is the output of one shard.
type shardFile struct {
	data, keys *os.File
	dw, kw     *bufio.Writer
}

func run(args []string, stderr io.Writer) error {
	c, err := parse(args, stderr)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}
	if c.examples {
		for name, data := range testgen.ExampleFiles() {
			if err := os.WriteFile(filepath.Join(c.out, name), data, 0o644); err != nil {
				return err
			}
		}
		return nil
	}
	start := time.Now()
	files := make([]*shardFile, c.enc.Shards)
	defer func() {
		for _, f := range files {
			if f != nil {
				f.data.Close()
				if f.keys != nil {
					f.keys.Close()
				}
			}
		}
	}()
	ext := ".ndjson"
	if c.keys == "tsv" {
		ext = ".tsv"
	}
	for i := range files {
		f := &shardFile{}
		if f.data, err = os.Create(filepath.Join(c.out, fmt.Sprintf("shard-%03d%s", i, ext))); err != nil {
			return err
		}
		f.dw = bufio.NewWriterSize(f.data, 1<<20)
		if c.keys == "sidecar" {
			if f.keys, err = os.Create(filepath.Join(c.out, fmt.Sprintf("shard-%03d.keys.ndjson", i))); err != nil {
				return err
			}
			f.kw = bufio.NewWriterSize(f.keys, 1<<18)
		}
		files[i] = f
	}

	var records, dups, bytes int64
	null := []byte("null")
	emit := func(r testgen.Record) error {
		f := files[r.Shard]
		records++
		bytes += int64(len(r.Data))
		if r.Duplicate {
			dups++
		}
		key := r.Key
		if key == nil {
			key = null
		}
		switch c.keys {
		case "tsv":
			f.dw.Write(key)
			f.dw.WriteByte('\t')
		case "sidecar":
			f.kw.Write(key)
			f.kw.WriteByte('\n')
		}
		f.dw.Write(r.Data)
		return f.dw.WriteByte('\n')
	}
	g, err := testgen.Stream(c.seed, c.opts, testgen.Format(c.format), c.enc, emit)
	if err != nil {
		return err
	}
	for i, f := range files {
		if err := f.dw.Flush(); err != nil {
			return fmt.Errorf("write shard %d: %w", i, err)
		}
		if err := f.data.Close(); err != nil {
			return fmt.Errorf("close shard %d: %w", i, err)
		}
		if f.kw != nil {
			if err := f.kw.Flush(); err != nil {
				return fmt.Errorf("write keys of shard %d: %w", i, err)
			}
			if err := f.keys.Close(); err != nil {
				return fmt.Errorf("close keys of shard %d: %w", i, err)
			}
		}
	}
	files = nil
	live := g.Live()
	if c.final != "" {
		b, err := json.Marshal(testgen.ExpectedState(g.Final(), g.Tables(), testgen.Format(c.format), c.enc))
		if err != nil {
			return err
		}
		if err := os.WriteFile(c.final, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	o := g.Options()
	fmt.Fprintf(stderr, "cdcgen: %s seed %d: %d changes (+%d snapshot) over %d keys -> %d records (%d duplicates, %d bytes) in %d shard files in %s; %d live rows; %s\n",
		c.format, c.seed, o.Changes, o.SnapshotRows, o.Keys, records, dups, bytes, c.enc.Shards, c.out, live, time.Since(start).Round(time.Millisecond))
	return nil
}
