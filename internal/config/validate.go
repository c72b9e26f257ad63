package config

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxIdentifierBytes is the longest table or schema name accepted: the
// PostgreSQL limit, beyond which names are silently truncated.
const MaxIdentifierBytes = 63

// Accepted enumerated values, in the order error messages list them.
var (
	Formats        = []string{FormatAuto, FormatDSQL, FormatDebezium, FormatDMS, FormatDynamoDB}
	KafkaStarts    = []string{StartEarliest, StartLatest}
	KinesisStarts  = []string{StartTrimHorizon, StartLatest, StartAtTimestamp}
	SASLMechanisms = []string{SASLPlain, SASLScramSHA256, SASLScramSHA512, SASLAWSMSKIAM}
	TableNamings   = []string{NamingTable, NamingSchemaTable}
	LogLevels      = []string{"debug", "info", "warn", "error"}
	LogFormats     = []string{LogText, LogJSON}
)

// Validate checks every field of c and returns all problems, each naming its
// field path (and, for a parsed Config, its file and line), sorted by line
// and joined with errors.Join. It does no I/O: files and brokers are not
// checked for existence.
func (c *Config) Validate() error {
	v := &validator{origin: c.origin}
	v.source(&c.Source)
	v.decode(&c.Decode)
	v.tables(c.Tables)
	v.sink(&c.Sink)
	v.kinesisLeases(c)
	v.noControl("dead_letters.file", c.DeadLetters.File)
	v.pipeline(&c.Pipeline)
	if c.Metrics.Listen != "" {
		v.hostPort("metrics.listen", c.Metrics.Listen, true)
	}
	v.oneOf("log.level", c.Log.Level, LogLevels)
	v.oneOf("log.format", c.Log.Format, LogFormats)
	return v.errs.err()
}

type validator struct {
	origin *origin
	errs   errorList
}

func (v *validator) add(path, format string, args ...any) {
	file := ""
	if v.origin != nil {
		file = v.origin.file
	}
	v.errs.add(file, v.origin.line(path), path, format, args...)
}

func (v *validator) source(s *Source) {
	var set []string
	if s.File != nil {
		set = append(set, "file")
	}
	if s.Kafka != nil {
		set = append(set, "kafka")
	}
	if s.Kinesis != nil {
		set = append(set, "kinesis")
	}
	if len(set) != 1 {
		v.exactlyOne("source", []string{"file", "kafka", "kinesis"}, set)
	}
	if f := s.File; f != nil {
		v.nonEmptyList("source.file.paths", len(f.Paths), "path")
		for i, p := range f.Paths {
			path := indexPath("source.file.paths", i)
			if !v.text(path, p) {
				continue
			}
			if _, err := filepath.Match(p, ""); err != nil {
				v.add(path, "%q is not a valid glob pattern: %v", p, err)
			}
		}
	}
	if k := s.Kafka; k != nil {
		v.kafka(k)
	}
	if k := s.Kinesis; k != nil {
		v.kinesis(k)
	}
}

var topicName = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

func (v *validator) kafka(k *KafkaSource) {
	const p = "source.kafka"
	v.nonEmptyList(p+".brokers", len(k.Brokers), "broker")
	for i, b := range k.Brokers {
		v.hostPort(indexPath(p+".brokers", i), b, false)
	}
	switch {
	case len(k.Topics) > 0 && k.TopicRegex != "":
		v.add(p, "exactly one of topics, topic_regex must be set (found both)")
	case len(k.Topics) == 0 && k.TopicRegex == "":
		v.add(p, "exactly one of topics, topic_regex must be set")
	}
	for i, t := range k.Topics {
		if !topicName.MatchString(t) || t == "." || t == ".." {
			v.add(indexPath(p+".topics", i), "%q is not a valid Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -)", t)
		}
	}
	if k.TopicRegex != "" {
		if _, err := regexp.Compile(k.TopicRegex); err != nil {
			v.add(p+".topic_regex", "invalid regular expression: %v", err)
		}
	}
	v.text(p+".group", k.Group)
	v.oneOf(p+".start", k.Start, KafkaStarts)
	if k.MaxInFlight < 1 {
		v.add(p+".max_in_flight", "must be at least 1, got %d", k.MaxInFlight)
	}
	t := k.TLS
	if !t.Enabled {
		for _, f := range []struct {
			name string
			set  bool
		}{{"ca_file", t.CAFile != ""}, {"cert_file", t.CertFile != ""}, {"key_file", t.KeyFile != ""}, {"insecure_skip_verify", t.InsecureSkipVerify}} {
			if f.set {
				v.add(p+".tls."+f.name, "set, but tls.enabled is false")
			}
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		v.add(p+".tls", "cert_file and key_file must be set together")
	}
	v.noControl(p+".tls.ca_file", t.CAFile)
	v.noControl(p+".tls.cert_file", t.CertFile)
	v.noControl(p+".tls.key_file", t.KeyFile)
	if s := k.SASL; s != nil {
		const sp = p + ".sasl"
		if s.Mechanism == "" {
			v.add(sp+".mechanism", "must be set (one of %s)", strings.Join(SASLMechanisms, ", "))
		} else {
			v.oneOf(sp+".mechanism", s.Mechanism, SASLMechanisms)
		}
		switch s.Mechanism {
		case SASLPlain, SASLScramSHA256, SASLScramSHA512:
			if s.Username == "" {
				v.add(sp+".username", "must be set for mechanism %s", s.Mechanism)
			}
			if s.Password == "" {
				v.add(sp+".password", "must be set for mechanism %s", s.Mechanism)
			}
			if s.SessionToken != "" {
				v.add(sp+".session_token", "only applies to mechanism %s", SASLAWSMSKIAM)
			}
		case SASLAWSMSKIAM:
			if (s.Username == "") != (s.Password == "") {
				v.add(sp, "username (access key id) and password (secret access key) must be set together, or both left empty for the AWS default credentials")
			}
			if s.SessionToken != "" && s.Username == "" {
				v.add(sp+".session_token", "requires username and password")
			}
		}
		v.noControl(sp+".username", s.Username)
	}
}

var streamName = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,128}$`)

func (v *validator) kinesis(k *KinesisSource) {
	const p = "source.kinesis"
	switch {
	case k.Stream == "":
		v.add(p+".stream", "must be set")
	case strings.HasPrefix(k.Stream, "arn:"):
		v.noControl(p+".stream", k.Stream)
	case !streamName.MatchString(k.Stream):
		v.add(p+".stream", "%q is not a valid stream name (1 to 128 of a-z A-Z 0-9 _ . -) or ARN", k.Stream)
	}
	if strings.ContainsFunc(k.Region, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		v.add(p+".region", "%q is not a region name", k.Region)
	}
	if k.Endpoint != "" {
		u, err := url.Parse(k.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.add(p+".endpoint", "%q is not an http:// or https:// URL", k.Endpoint)
		}
	}
	v.oneOf(p+".start", k.Start, KinesisStarts)
	switch {
	case k.Start == StartAtTimestamp && k.Timestamp == "":
		v.add(p+".timestamp", "must be set when start is %s", StartAtTimestamp)
	case k.Start != StartAtTimestamp && k.Timestamp != "":
		v.add(p+".timestamp", "only applies when start is %s", StartAtTimestamp)
	case k.Timestamp != "":
		if _, err := time.Parse(time.RFC3339, k.Timestamp); err != nil {
			v.add(p+".timestamp", "%q is not an RFC 3339 time (like 2025-01-31T12:00:00Z)", k.Timestamp)
		}
	}
	if (k.AccessKeyID == "") != (k.SecretAccessKey == "") {
		v.add(p, "access_key_id and secret_access_key must be set together, or both left empty for the AWS default credentials")
	}
	if k.SessionToken != "" && k.AccessKeyID == "" {
		v.add(p+".session_token", "requires access_key_id and secret_access_key")
	}
	v.noControl(p+".access_key_id", k.AccessKeyID)
	if len(k.Owner) > 200 {
		v.add(p+".owner", "is %d bytes long, at most 200", len(k.Owner))
	} else {
		v.noControl(p+".owner", k.Owner)
	}
	if ttl := k.LeaseTTL.Std(); k.LeaseTTL != 0 && (ttl < MinLeaseTTL || ttl > MaxLeaseTTL) {
		v.add(p+".lease_ttl", "must be between %s and %s, got %s", MinLeaseTTL, MaxLeaseTTL, k.LeaseTTL)
	}
}

// kinesisLeases checks that the lease keys of a Kinesis source are used
// with a sink that stores leases.
func (v *validator) kinesisLeases(c *Config) {
	k := c.Source.Kinesis
	if k == nil || c.Sink.DuckDB == nil {
		return
	}
	const why = "only applies with sink.postgres (DuckDB has one writer: one daemon reads every shard)"
	if k.Owner != "" {
		v.add("source.kinesis.owner", why)
	}
	if k.LeaseTTL != 0 {
		v.add("source.kinesis.lease_ttl", why)
	}
}

func (v *validator) decode(d *Decode) {
	v.oneOf("decode.format", d.Format, Formats)
	if d.MaxFragmentBytes <= 0 {
		v.add("decode.max_fragment_bytes", "must be positive, got %s", d.MaxFragmentBytes)
	}
	if d.FragmentTimeout <= 0 {
		v.add("decode.fragment_timeout", "must be positive, got %s", d.FragmentTimeout)
	}
}

// sqlType is a column type override: a type name of words, with optional
// precision/scale and array brackets. It is spliced into DDL, so nothing
// else (quotes, semicolons, comments) may pass.
var sqlType = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*( [A-Za-z][A-Za-z0-9_]*)*( ?\( ?[0-9]+( ?, ?[0-9]+)? ?\))?( [A-Za-z][A-Za-z0-9_]*)*(\[\])*$`)

func (v *validator) tables(ts map[string]Table) {
	names := make([]string, 0, len(ts))
	for name := range ts {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		t := ts[name]
		p := keyPath("tables", name)
		v.tableName(p, name)
		kp := p + ".key"
		v.nonEmptyList(kp, len(t.Key), "column")
		for i, col := range t.Key {
			ip := indexPath(kp, i)
			if v.ident(ip, "key column", col, 0) {
				if j := slices.Index(t.Key, col); j < i {
					v.add(ip, "column %q is listed twice (also at key[%d])", col, j)
				}
			}
		}
		cols := make([]string, 0, len(t.Columns))
		for col := range t.Columns {
			cols = append(cols, col)
		}
		slices.Sort(cols)
		for _, col := range cols {
			cp := keyPath(p+".columns", col)
			v.ident(cp, "column", col, 0)
			if typ := t.Columns[col]; !sqlType.MatchString(typ) {
				v.add(cp, "%q is not a SQL type name (words, optional (precision, scale), optional []: DECIMAL(12,2), TEXT, TIMESTAMP WITH TIME ZONE)", typ)
			}
		}
	}
}

// tableName checks "table" or "schema.table".
func (v *validator) tableName(path, name string) {
	parts := strings.Split(name, ".")
	if len(parts) > 2 {
		v.add(path, "table name %q has more than one dot (use table or schema.table)", name)
		return
	}
	if len(parts) == 2 {
		v.ident(path, "schema name", parts[0], MaxIdentifierBytes)
	}
	v.ident(path, "table name", parts[len(parts)-1], MaxIdentifierBytes)
}

// ident checks an identifier: not empty, valid UTF-8, no control characters,
// at most maxLen bytes (0: no limit). It reports false after adding an error.
func (v *validator) ident(path, what, s string, maxLen int) bool {
	switch {
	case s == "":
		v.add(path, "%s must not be empty", what)
	case !utf8.ValidString(s):
		v.add(path, "%s %q is not valid UTF-8", what, s)
	case strings.ContainsFunc(s, unicode.IsControl):
		v.add(path, "%s %q contains a control character", what, s)
	case maxLen > 0 && len(s) > maxLen:
		v.add(path, "%s %q is %d bytes long (at most %d)", what, s, len(s), maxLen)
	default:
		return true
	}
	return false
}

func (v *validator) sink(s *Sink) {
	var set []string
	if s.DuckDB != nil {
		set = append(set, "duckdb")
	}
	if s.Postgres != nil {
		set = append(set, "postgres")
	}
	if len(set) != 1 {
		v.exactlyOne("sink", []string{"duckdb", "postgres"}, set)
	}
	if d := s.DuckDB; d != nil {
		v.text("sink.duckdb.path", d.Path)
		v.oneOf("sink.duckdb.table_naming", d.TableNaming, TableNamings)
		switch {
		case d.MemoryLimit <= 0:
			v.add("sink.duckdb.memory_limit", "must be positive, got %s", d.MemoryLimit)
		case d.CheckpointThreshold <= 0:
			v.add("sink.duckdb.checkpoint_threshold", "must be positive, got %s", d.CheckpointThreshold)
		case d.CheckpointThreshold > d.MemoryLimit*2/3:
			v.add("sink.duckdb.checkpoint_threshold", "%s is more than 2/3 of memory_limit %s: DuckDB must hold the rows of a checkpoint in memory",
				d.CheckpointThreshold, d.MemoryLimit)
		}
		if d.Threads < 1 {
			v.add("sink.duckdb.threads", "must be at least 1, got %d", d.Threads)
		}
	}
	if pg := s.Postgres; pg != nil {
		if msg := checkPostgresURL(pg.URL.Value()); msg != "" {
			v.add("sink.postgres.url", "%s", msg)
		}
		v.ident("sink.postgres.schema", "schema name", pg.Schema, MaxIdentifierBytes)
		v.oneOf("sink.postgres.table_naming", pg.TableNaming, TableNamings)
	}
}

// checkPostgresURL returns what is wrong with a connection string, without
// quoting any part of it: it holds a password.
func checkPostgresURL(s string) string {
	if s == "" {
		return "must be set (a postgres:// URL or a key=value connection string)"
	}
	if strings.ContainsFunc(s, unicode.IsControl) {
		return "contains a control character"
	}
	scheme, rest, isURL := strings.Cut(s, "://")
	if !isURL {
		if strings.Contains(s, "=") {
			return ""
		}
		return "is neither a postgres:// URL nor a key=value connection string"
	}
	if scheme != "postgres" && scheme != "postgresql" {
		return "URL scheme must be postgres or postgresql"
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 && strings.Contains(rest[i:], "@") {
		return "is not a valid URL: percent-encode '/', '?', '#' and '@' in the user name and password"
	}
	if _, err := url.Parse(s); err != nil {
		return "is not a valid URL (percent-encode special characters in the user name and password)"
	}
	return ""
}

func (v *validator) pipeline(p *Pipeline) {
	if p.BatchMaxEvents < 1 {
		v.add("pipeline.batch_max_events", "must be at least 1, got %d", p.BatchMaxEvents)
	}
	if p.BatchMaxBytes <= 0 {
		v.add("pipeline.batch_max_bytes", "must be positive, got %s", p.BatchMaxBytes)
	}
	if p.BatchMaxWait <= 0 {
		v.add("pipeline.batch_max_wait", "must be positive, got %s", p.BatchMaxWait)
	}
	if p.MaxAttempts < 1 {
		v.add("pipeline.max_attempts", "must be at least 1, got %d", p.MaxAttempts)
	}
	if p.RetryInitial <= 0 {
		v.add("pipeline.retry_initial", "must be positive, got %s", p.RetryInitial)
	}
	if p.RetryMax < p.RetryInitial {
		v.add("pipeline.retry_max", "%s is less than retry_initial (%s)", p.RetryMax, p.RetryInitial)
	}
}

func (v *validator) exactlyOne(path string, options, set []string) {
	msg := fmt.Sprintf("exactly one of %s must be set", strings.Join(options, ", "))
	if len(set) > 1 {
		msg += fmt.Sprintf(" (found %s)", strings.Join(set, ", "))
	}
	v.add(path, "%s", msg)
}

func (v *validator) oneOf(path, value string, allowed []string) {
	if !slices.Contains(allowed, value) {
		v.add(path, "%q is not one of %s", value, strings.Join(allowed, ", "))
	}
}

func (v *validator) nonEmptyList(path string, n int, what string) {
	if n == 0 {
		v.add(path, "must list at least one %s", what)
	}
}

// text checks a required free-text value: set, no control characters.
func (v *validator) text(path, s string) bool {
	if s == "" {
		v.add(path, "must not be empty")
		return false
	}
	return v.noControl(path, s)
}

func (v *validator) noControl(path, s string) bool {
	if strings.ContainsFunc(s, unicode.IsControl) {
		v.add(path, "%q contains a control character", s)
		return false
	}
	return true
}

// hostPort checks "host:port"; the host may be empty only when emptyHost.
func (v *validator) hostPort(path, s string, emptyHost bool) {
	host, port, err := net.SplitHostPort(s)
	if err != nil || (host == "" && !emptyHost) || strings.ContainsFunc(host, unicode.IsControl) {
		v.add(path, "%q is not host:port", s)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 || (n == 0 && !emptyHost) {
		v.add(path, "%q has an invalid port (1 to 65535)", s)
	}
}
