package config

import (
	"bytes"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cdcflow/cdcflow/internal/change"
)

// Config is a whole cdcflow configuration file.
type Config struct {
	Source      Source           `yaml:"source"`
	Decode      Decode           `yaml:"decode"`
	Tables      map[string]Table `yaml:"tables,omitempty"` // "orders" or "public.orders" -> settings
	Sink        Sink             `yaml:"sink"`
	DeadLetters DeadLetters      `yaml:"dead_letters"`
	Pipeline    Pipeline         `yaml:"pipeline"`
	Metrics     Metrics          `yaml:"metrics"`
	Log         Log              `yaml:"log"`

	origin *origin // where the config was parsed from; nil when built in Go
}

// Source says where raw records come from. Exactly one field is set.
type Source struct {
	File    *FileSource    `yaml:"file,omitempty"`
	Kafka   *KafkaSource   `yaml:"kafka,omitempty"`
	Kinesis *KinesisSource `yaml:"kinesis,omitempty"`
}

// FileSource reads newline-delimited records from files.
type FileSource struct {
	// Paths are glob patterns, read in order; "-" is standard input.
	// Gzip-compressed files are detected by content.
	Paths []string `yaml:"paths"`
}

// KafkaSource consumes Kafka (or MSK) topics with a consumer group.
type KafkaSource struct {
	Brokers     []string `yaml:"brokers"`               // host:port seeds
	Topics      []string `yaml:"topics,omitempty"`      // exactly one of Topics, TopicRegex
	TopicRegex  string   `yaml:"topic_regex,omitempty"` // Go regexp matched against topic names
	Group       string   `yaml:"group"`                 // consumer group id
	Start       string   `yaml:"start"`                 // StartEarliest or StartLatest, for partitions without a commit
	MaxInFlight int      `yaml:"max_in_flight"`         // batches read but not yet acknowledged
	TLS         TLS      `yaml:"tls"`
	SASL        *SASL    `yaml:"sasl,omitempty"`
}

// TLS configures transport security for a Kafka connection.
type TLS struct {
	Enabled            bool   `yaml:"enabled"`
	CAFile             string `yaml:"ca_file,omitempty"`   // PEM roots; system roots when empty
	CertFile           string `yaml:"cert_file,omitempty"` // client certificate (with KeyFile)
	KeyFile            string `yaml:"key_file,omitempty"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// SASL configures Kafka authentication.
//
// For SASLAWSMSKIAM, Username and Password are an AWS access key id and
// secret access key (with SessionToken for temporary credentials); when all
// three are empty the AWS default credential chain is used.
type SASL struct {
	Mechanism    string `yaml:"mechanism"`
	Username     string `yaml:"username,omitempty"`
	Password     Secret `yaml:"password,omitempty"`
	SessionToken Secret `yaml:"session_token,omitempty"`
}

// KinesisSource reads every shard of a Kinesis data stream.
type KinesisSource struct {
	Stream          string `yaml:"stream"`             // stream name or ARN
	Region          string `yaml:"region,omitempty"`   // AWS default chain when empty
	Endpoint        string `yaml:"endpoint,omitempty"` // http(s) URL, for kinesalite or LocalStack
	Start           string `yaml:"start"`              // StartTrimHorizon, StartLatest or StartAtTimestamp
	Timestamp       string `yaml:"timestamp,omitempty"`
	AccessKeyID     string `yaml:"access_key_id,omitempty"` // AWS default chain when empty
	SecretAccessKey Secret `yaml:"secret_access_key,omitempty"`
	SessionToken    Secret `yaml:"session_token,omitempty"`

	// Shard leases, with sink.postgres only: every daemon reading the stream
	// into the same PostgreSQL schema takes a share of the shards through a
	// lease table in that schema (docs/kinesis.md, "Several daemons").
	Owner    string   `yaml:"owner,omitempty"`     // this daemon's unique name in the lease table; host name and process id when empty
	LeaseTTL Duration `yaml:"lease_ttl,omitempty"` // a lease not renewed for this long may be taken by another daemon; DefaultLeaseTTL when zero
}

// DefaultLeaseTTL is the lease TTL of a Kinesis source whose lease_ttl is
// not set (the kinesis package's default).
const DefaultLeaseTTL = 30 * time.Second

// Lease TTL bounds: renewals run every third of the TTL, and a daemon that
// cannot renew stops reading a shard after two thirds of it.
const (
	MinLeaseTTL = time.Second
	MaxLeaseTTL = time.Hour
)

// StartTime returns the parsed Timestamp; the zero time when it is empty or
// invalid (Validate reports invalid ones).
func (k *KinesisSource) StartTime() time.Time {
	t, err := time.Parse(time.RFC3339, k.Timestamp)
	if err != nil {
		return time.Time{}
	}
	return t
}

// Decode configures decoding.
type Decode struct {
	Format           string   `yaml:"format"`             // one of Formats
	MaxFragmentBytes ByteSize `yaml:"max_fragment_bytes"` // memory bound for held DSQL fragments
	FragmentTimeout  Duration `yaml:"fragment_timeout"`   // held fragments older than this are dead-lettered
}

// Table holds per-table settings.
type Table struct {
	Key        []string          `yaml:"key"`                   // key columns, in order
	Columns    map[string]string `yaml:"columns,omitempty"`     // column -> SQL type, overriding inference
	SoftDelete *bool             `yaml:"soft_delete,omitempty"` // overrides the sink's soft_delete
}

// Sink says where changes are stored. Exactly one field is set.
type Sink struct {
	DuckDB   *DuckDBSink   `yaml:"duckdb,omitempty"`
	Postgres *PostgresSink `yaml:"postgres,omitempty"`
}

// DuckDBSink stores changes in a DuckDB database file.
type DuckDBSink struct {
	Path            string `yaml:"path"`
	TableNaming     string `yaml:"table_naming"`      // NamingTable or NamingSchemaTable
	SoftDelete      bool   `yaml:"soft_delete"`       // keep deleted rows, marked, in merged tables
	DeadLetterTable bool   `yaml:"dead_letter_table"` // store dead letters in a table too

	// DuckDB resources (docs/sinks.md, "DuckDB specifics").
	MemoryLimit         ByteSize `yaml:"memory_limit"`         // DuckDB's buffer pool
	Threads             int      `yaml:"threads"`              // DuckDB's threads
	CheckpointThreshold ByteSize `yaml:"checkpoint_threshold"` // WAL size that triggers a checkpoint; <= 2/3 of memory_limit
}

// PostgresSink stores changes in a PostgreSQL database.
type PostgresSink struct {
	URL             SecretURL `yaml:"url"`    // postgres:// URL or key=value connection string
	Schema          string    `yaml:"schema"` // schema the tables are created in
	TableNaming     string    `yaml:"table_naming"`
	SoftDelete      bool      `yaml:"soft_delete"`
	DeadLetterTable bool      `yaml:"dead_letter_table"`
}

// DeadLetters configures the dead-letter file.
type DeadLetters struct {
	File string `yaml:"file,omitempty"` // NDJSON file dead letters are appended to; none when empty
}

// Pipeline configures batching and retries.
type Pipeline struct {
	BatchMaxEvents int      `yaml:"batch_max_events"`
	BatchMaxBytes  ByteSize `yaml:"batch_max_bytes"`
	BatchMaxWait   Duration `yaml:"batch_max_wait"`
	MaxAttempts    int      `yaml:"max_attempts"`  // tries per batch before it is bisected
	RetryInitial   Duration `yaml:"retry_initial"` // first backoff, doubled per attempt
	RetryMax       Duration `yaml:"retry_max"`     // backoff cap
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	Listen string `yaml:"listen,omitempty"` // host:port; no endpoint when empty
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn or error
	Format string `yaml:"format"` // text or json
}

// Enumerated values.
const (
	StartEarliest    = "earliest"     // Kafka: oldest retained offset
	StartLatest      = "latest"       // Kafka and Kinesis: only new records
	StartTrimHorizon = "trim_horizon" // Kinesis: oldest retained record
	StartAtTimestamp = "at_timestamp" // Kinesis: from KinesisSource.Timestamp

	NamingTable       = "table"        // sink tables are named after the source table
	NamingSchemaTable = "schema_table" // sink tables are named schema_table

	SASLPlain       = "plain"
	SASLScramSHA256 = "scram-sha-256"
	SASLScramSHA512 = "scram-sha-512"
	SASLAWSMSKIAM   = "aws-msk-iam"

	// Decode formats; the same strings as the decode package's Format constants.
	FormatAuto     = "auto"
	FormatDSQL     = "dsql"
	FormatDebezium = "debezium"
	FormatDMS      = "dms"
	FormatDynamoDB = "dynamodb"

	LogText = "text"
	LogJSON = "json"
)

// Defaults applied to absent fields. The source and sink defaults apply when
// that source or sink is present in the file.
var (
	DefaultDecode = Decode{
		Format:           FormatAuto,
		MaxFragmentBytes: 64 * MiB,
		FragmentTimeout:  Duration(5 * time.Minute),
	}
	DefaultPipeline = Pipeline{
		BatchMaxEvents: 10000,
		BatchMaxBytes:  16 * MiB,
		BatchMaxWait:   Duration(250 * time.Millisecond),
		MaxAttempts:    5,
		RetryInitial:   Duration(100 * time.Millisecond),
		RetryMax:       Duration(30 * time.Second),
	}
	DefaultLog     = Log{Level: "info", Format: LogText}
	DefaultKafka   = KafkaSource{Group: "cdcflow", Start: StartEarliest, MaxInFlight: 64}
	DefaultKinesis = KinesisSource{Start: StartTrimHorizon}
	DefaultDuckDB  = DuckDBSink{Path: "cdcflow.duckdb", TableNaming: NamingTable, DeadLetterTable: true,
		MemoryLimit: 112 * MB, Threads: 1, CheckpointThreshold: 64 * MB}
	DefaultPostgres = PostgresSink{Schema: "public", TableNaming: NamingTable, DeadLetterTable: true}
)

// Default returns the configuration every file is decoded over: the defaults
// of every top-level section, no source, no sink, no tables.
func Default() Config {
	return Config{Decode: DefaultDecode, Pipeline: DefaultPipeline, Log: DefaultLog}
}

// Keys returns the key columns of every configured table. Default is nil,
// so unlisted tables use change.DefaultKey.
func (c *Config) Keys() *change.Keys {
	k := &change.Keys{Tables: make(map[string][]string, len(c.Tables))}
	for name, t := range c.Tables {
		k.Tables[name] = slices.Clone(t.Key)
	}
	return k
}

// Table returns the settings of schema.table, looked up like change.Keys.For:
// "schema.table" first, then "table".
func (c *Config) Table(schema, table string) (Table, bool) {
	if schema != "" {
		if t, ok := c.Tables[schema+"."+table]; ok {
			return t, true
		}
	}
	t, ok := c.Tables[table]
	return t, ok
}

// SoftDelete reports whether deletes of schema.table are kept as marked rows:
// the table's soft_delete when set, else the sink's.
func (c *Config) SoftDelete(schema, table string) bool {
	if t, ok := c.Table(schema, table); ok && t.SoftDelete != nil {
		return *t.SoftDelete
	}
	switch {
	case c.Sink.DuckDB != nil:
		return c.Sink.DuckDB.SoftDelete
	case c.Sink.Postgres != nil:
		return c.Sink.Postgres.SoftDelete
	}
	return false
}

// Redacted returns c as YAML with every secret replaced by "***" (for
// connection URLs, only the password). It includes the defaults, so it shows
// the configuration actually in effect. Every "$" in a value is written as
// "$$", so the output parses back to the same configuration (secrets aside).
func (c *Config) Redacted() string {
	var n yaml.Node
	if err := n.Encode(c); err != nil {
		// Only reachable with values no YAML file can produce.
		return "# cannot render the configuration\n"
	}
	escapeDollars(&n)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return "# cannot render the configuration\n"
	}
	_ = enc.Close()
	return b.String()
}

// escapeDollars doubles "$" in the string values of n so that ${...}
// expansion gives them back.
func escapeDollars(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" {
		n.Value = strings.ReplaceAll(n.Value, "$", "$$")
	}
	for i, c := range n.Content {
		if n.Kind == yaml.MappingNode && i%2 == 0 {
			continue // keys are not expanded
		}
		escapeDollars(c)
	}
}
