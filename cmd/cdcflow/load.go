package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/cdcflow/cdcflow/internal/config"
	"github.com/cdcflow/cdcflow/internal/deadletter"
	"github.com/cdcflow/cdcflow/internal/decode"
	"github.com/cdcflow/cdcflow/internal/pipeline"
	"github.com/cdcflow/cdcflow/internal/sink"
	"github.com/cdcflow/cdcflow/internal/sink/duckdb"
	"github.com/cdcflow/cdcflow/internal/source"
	"github.com/cdcflow/cdcflow/internal/source/file"
)

// sinkURL is a parsed --sink value.
type sinkURL struct {
	kind string // "duckdb" or "postgres"
	path string // DuckDB file
	url  string // PostgreSQL URL (a secret: never printed)
}

// parseSinkURL parses duckdb://PATH: duckdb://x.db is relative to the working
// directory, duckdb:///tmp/x.db absolute.
func parseSinkURL(raw string) (sinkURL, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return sinkURL{}, fmt.Errorf("--sink %q: want duckdb://PATH", raw)
	}
	switch scheme {
	case "duckdb":
		if rest == "" || strings.ContainsAny(rest, "?#") {
			return sinkURL{}, fmt.Errorf("--sink %q: want duckdb://PATH with a file path and no query", raw)
		}
		return sinkURL{kind: "duckdb", path: rest}, nil
	case "postgres", "postgresql":
		return sinkURL{kind: "postgres", url: raw}, nil
	}
	return sinkURL{}, fmt.Errorf("--sink: unknown scheme %q; want duckdb://PATH or postgres://…", scheme)
}

// job is one pipeline run, from flags or a config file.
type job struct {
	paths         []string // file source; nil when source is set
	source        func(ctx context.Context, snk sink.Sink) (source.Source, error)
	decode        decode.Options
	duck          duckdb.Options
	sink          func(ctx context.Context) (sink.Sink, error) // nil: DuckDB with duck
	deadLetters   string                                       // file; "" for none
	pipe          pipeline.Config
	progress      bool
	logger        *slog.Logger
	metricsListen string // "" for no endpoint
}

func loadCmd(s *streams) *cobra.Command {
	var (
		df          decodeFlags
		sinkRaw     string
		deadLetters string
		logOnly     bool
		noProgress  bool
		batch       int
	)
	c := &cobra.Command{
		Use:   "load --sink duckdb://PATH [flags] FILE...|-",
		Short: "Load CDC record files into a sink, once",
		Long: `load reads files (globs; - for stdin; gzip detected) through the pipeline
into a sink: the cdc_events log, a <table>_current view per source table and
merged typed tables. Source positions are stored with the rows, so loading
the same files again neither duplicates nor skips. Dead letters are stored in
the cdc_dead_letters table and, with --dead-letters, appended to a file.`,
		Example: `  cdcflow load --sink duckdb://demo.duckdb examples/data/*
  cdcflow load --sink duckdb:///var/lib/cdc.duckdb --format dsql --key orders=order_id stream/*.ndjson.gz`,
		Args: argsUsage(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if sinkRaw == "" {
				return usagef("load: --sink is required (e.g. --sink duckdb://demo.duckdb)")
			}
			su, err := parseSinkURL(sinkRaw)
			if err != nil {
				return usageError{err}
			}
			opts, err := df.options()
			if err != nil {
				return err
			}
			j := job{
				paths:       args,
				decode:      opts,
				duck:        duckdb.Options{Path: su.path, DeadLetterTable: true, LogOnly: logOnly},
				sink:        flagSink(su, logOnly),
				deadLetters: deadLetters,
				pipe:        pipeline.Config{BatchMaxEvents: batch},
				progress:    !noProgress && isTerminal(s.err),
				logger:      slog.New(slog.NewTextHandler(s.err, &slog.HandlerOptions{Level: slog.LevelWarn})),
			}
			if df.config != "" {
				cfg, _ := loadConfig(df.config) // already validated by df.options
				j.duck.Tables = duckTables(cfg)
				j.duck.SoftDelete = cfg.Sink.DuckDB != nil && cfg.Sink.DuckDB.SoftDelete
			}
			return runJob(cmd.Context(), s, j)
		},
	}
	df.register(c)
	c.Flags().StringVar(&sinkRaw, "sink", "", "where to load: duckdb://PATH (relative) or duckdb:///PATH (absolute)")
	c.Flags().StringVar(&deadLetters, "dead-letters", "", "also append dead letters to this NDJSON file")
	c.Flags().BoolVar(&logOnly, "log-only", false, "write only the event log and views, no merged tables")
	c.Flags().BoolVar(&noProgress, "no-progress", false, "never draw a progress bar")
	c.Flags().IntVar(&batch, "batch", pipeline.DefaultBatchMaxEvents, "events per sink transaction")
	return c
}

func runCmd(s *streams) *cobra.Command {
	var path string
	c := &cobra.Command{
		Use:   "run -c FILE",
		Short: "Run the pipeline a config file describes",
		Long: `run reads the source, decodes, and applies batches to the sink as the config
file says; it stops at the end of a file source, or cleanly on SIGINT/SIGTERM
(the in-flight batch is applied and acknowledged first).`,
		Args: argsUsage(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			if path == "" {
				return usagef("run: -c FILE is required")
			}
			cfg, err := loadConfig(path)
			if err != nil {
				return err
			}
			j, err := jobFromConfig(cfg, s)
			if err != nil {
				return usageError{fmt.Errorf("%s: %w", path, err)}
			}
			return runJob(cmd.Context(), s, j)
		},
	}
	c.Flags().StringVarP(&path, "config", "c", "", "config file (YAML)")
	return c
}

func jobFromConfig(cfg *config.Config, s *streams) (job, error) {

	level := slog.LevelInfo
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	hopts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(s.err, hopts)
	if cfg.Log.Format == config.LogJSON {
		h = slog.NewJSONHandler(s.err, hopts)
	}
	p := cfg.Pipeline
	var duck duckdb.Options
	var openSink func(context.Context) (sink.Sink, error)
	if d := cfg.Sink.DuckDB; d != nil {
		duck = duckOptions(cfg)
	} else {
		openSink = postgresOpener(cfg, slog.New(h))
	}
	var paths []string
	var openSource func(context.Context, sink.Sink) (source.Source, error)
	switch {
	case cfg.Source.Kafka != nil:
		openSource = kafkaOpener(cfg.Source.Kafka, slog.New(h))
	case cfg.Source.Kinesis != nil:
		openSource = kinesisOpener(cfg.Source.Kinesis, slog.New(h))
	default:
		paths = cfg.Source.File.Paths
	}
	return job{
		paths:         paths,
		source:        openSource,
		metricsListen: cfg.Metrics.Listen,
		decode:        decodeOptions(cfg),
		duck:          duck,
		sink:          openSink,
		deadLetters:   cfg.DeadLetters.File,
		pipe: pipeline.Config{
			BatchMaxEvents: p.BatchMaxEvents, BatchMaxBytes: int64(p.BatchMaxBytes), BatchMaxWait: p.BatchMaxWait.Std(),
			MaxAttempts: p.MaxAttempts, RetryInitial: p.RetryInitial.Std(), RetryMax: p.RetryMax.Std(),
			ParkTimeout: cfg.Decode.FragmentTimeout.Std(),
		},
		logger: slog.New(h),
	}, nil
}

// mergedTables maps the config's tables section to merged table names
// (schema.table keys follow the sink's table naming).
func mergedTables(cfg *config.Config) map[string]config.Table {
	naming := ""
	if cfg.Sink.DuckDB != nil {
		naming = cfg.Sink.DuckDB.TableNaming
	} else if cfg.Sink.Postgres != nil {
		naming = cfg.Sink.Postgres.TableNaming
	}
	out := map[string]config.Table{}
	for name, t := range cfg.Tables {
		merged := name
		if schema, table, ok := strings.Cut(name, "."); ok {
			merged = table
			if naming == duckdb.NamingSchemaTable {
				merged = schema + "_" + table
			}
		}
		out[merged] = t
	}
	return out
}

// duckTables maps the config's tables section to DuckDB table options.
func duckTables(cfg *config.Config) map[string]duckdb.TableOptions {
	out := map[string]duckdb.TableOptions{}
	for name, t := range mergedTables(cfg) {
		out[name] = duckdb.TableOptions{SoftDelete: t.SoftDelete, Columns: t.Columns}
	}
	return out
}

func runJob(ctx context.Context, s *streams, j job) error {
	dec, err := decode.New(j.decode)
	if err != nil {
		return usageError{err}
	}
	var snk sink.Sink
	if j.sink != nil {
		snk, err = j.sink(ctx)
	} else {
		snk, err = duckdb.Open(ctx, j.duck)
	}
	if err != nil {
		return err
	}
	closeCtx := context.WithoutCancel(ctx)
	defer snk.Close(closeCtx)
	var src source.Source
	if j.source != nil {
		src, err = j.source(ctx, snk)
		if err != nil {
			return err
		}
	} else {
		fsrc, err := file.Open(j.paths, file.Options{Stdin: s.in, Logger: j.logger})
		if err != nil {
			return usageError{err}
		}
		src = fsrc
	}
	cfg := j.pipe
	cfg.Source, cfg.Decoder, cfg.Sink, cfg.Logger = src, dec, snk, j.logger
	if j.metricsListen != "" {
		stop, err := serveMetrics(ctx, j, &cfg, src)
		if err != nil {
			src.Close(closeCtx)
			return usageError{err}
		}
		defer stop()
	}
	if j.deadLetters != "" {
		dl, err := deadletter.NewFile(j.deadLetters)
		if err != nil {
			return usageError{fmt.Errorf("dead letters: %w", err)}
		}
		defer dl.Close()
		cfg.DeadLetters = dl
	}
	var bar *progressbar.ProgressBar
	if j.progress {
		bar = progressbar.NewOptions64(-1,
			progressbar.OptionSetWriter(s.err),
			progressbar.OptionSetDescription("loading"),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("records"),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
		cfg.Progress = func(p pipeline.Progress) { _ = bar.Set64(p.Records) }
	}
	sum, err := pipeline.Run(ctx, cfg)
	if errors.Is(err, context.Canceled) && sum.Interrupted {
		err = nil // a clean SIGINT/SIGTERM shutdown
	}
	if bar != nil {
		_ = bar.Finish()
	}
	printSummary(s.err, sum)
	if err != nil {
		return err
	}
	if err := snk.Close(closeCtx); err != nil {
		return fmt.Errorf("close sink: %w", err)
	}
	return nil
}

func printSummary(w io.Writer, s pipeline.Summary) {
	fmt.Fprintf(w, "read %d records, %d events in %s (%.0f events/s)\n",
		s.Records, s.Events, s.Elapsed.Round(time.Millisecond), s.EventsPerSec)
	fmt.Fprintf(w, "applied %d, duplicates ignored %d, stale (older than stored) %d, logged %d, already stored %d\n",
		s.Applied, s.Duplicates, s.Stale, s.Logged, s.AlreadyStored)
	fmt.Fprintf(w, "dead letters %d%s, skipped %d%s\n", s.DeadTotal(), byReason(s.Dead), sum(s.Skipped), byReason(s.Skipped))
	if len(s.Tables) > 0 {
		fmt.Fprintf(w, "per table:%s\n", byReason(s.Tables))
	}
	if s.Retries > 0 || s.Bisects > 0 {
		fmt.Fprintf(w, "retries %d, bisects %d\n", s.Retries, s.Bisects)
	}
	if s.Interrupted {
		fmt.Fprintln(w, "interrupted: the in-flight batch was applied; run again to continue")
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// duckOptions returns the DuckDB sink options of cfg, whose sink is DuckDB.
func duckOptions(cfg *config.Config) duckdb.Options {
	d := cfg.Sink.DuckDB
	return duckdb.Options{Path: d.Path, TableNaming: d.TableNaming, SoftDelete: d.SoftDelete,
		DeadLetterTable: d.DeadLetterTable, Tables: duckTables(cfg),
		MemoryLimit: byteSize(d.MemoryLimit), Threads: d.Threads, CheckpointThreshold: byteSize(d.CheckpointThreshold)}
}

// byteSize spells a configured size for duckdb.Options ("" for 0: the
// sink's default).
func byteSize(b config.ByteSize) string {
	if b <= 0 {
		return ""
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}
