package config

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// redactedText is what every secret prints as.
const redactedText = "***"

// Secret is a string that never prints its value: String, MarshalYAML,
// MarshalJSON, MarshalText, LogValue and every fmt verb render "***" (or ""
// when the secret is empty, so an unset secret stays visibly unset). Use
// Value, or a plain string conversion, to read it.
type Secret string

// Value returns the secret's value.
func (s Secret) Value() string { return string(s) }

// String returns "***", or "" for an empty secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redactedText
}

// Format renders the secret as String does, for every verb (%v, %s, %q, %x,
// %#v, ...).
func (s Secret) Format(f fmt.State, verb rune) { formatRedacted(f, verb, s.String()) }

// MarshalYAML renders the secret as String does.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// MarshalText renders the secret as String does.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// MarshalJSON renders the secret as a JSON string holding String's text.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(s.String())), nil }

// LogValue renders the secret as String does in log/slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// SecretURL is a connection string holding a password: a URL
// (postgres://user:password@host/db) or a key=value string
// (host=h password=p). It prints with only the password replaced by "***";
// a value it cannot take apart safely prints as "***" entirely.
type SecretURL string

// Value returns the connection string with its password.
func (s SecretURL) Value() string { return string(s) }

// String returns the connection string with its password replaced by "***".
func (s SecretURL) String() string { return redactURL(string(s)) }

// Format renders the URL as String does, for every verb.
func (s SecretURL) Format(f fmt.State, verb rune) { formatRedacted(f, verb, s.String()) }

// MarshalYAML renders the URL as String does.
func (s SecretURL) MarshalYAML() (any, error) { return s.String(), nil }

// MarshalText renders the URL as String does.
func (s SecretURL) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// MarshalJSON renders the URL as a JSON string holding String's text.
func (s SecretURL) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(s.String())), nil }

// LogValue renders the URL as String does in log/slog output.
func (s SecretURL) LogValue() slog.Value { return slog.StringValue(s.String()) }

func formatRedacted(f fmt.State, verb rune, text string) {
	if verb == 'q' || (verb == 'v' && f.Flag('#')) {
		text = strconv.Quote(text)
	}
	_, _ = io.WriteString(f, text)
}

// passwordParams are the connection parameters whose values are secret.
var passwordParams = []string{"password", "sslpassword"}

var dsnPassword = regexp.MustCompile(`(?i)\b(password|sslpassword)\s*=\s*('(?:[^'\\]|\\.)*'?|\S*)`)

// redactURL replaces the password of a connection URL or key=value string
// with "***". Anything it cannot parse with certainty becomes "***".
func redactURL(s string) string {
	if s == "" {
		return ""
	}
	scheme, rest, isURL := strings.Cut(s, "://")
	if !isURL {
		if strings.Contains(s, "=") {
			return dsnPassword.ReplaceAllString(s, "${1}="+redactedText)
		}
		return redactedText
	}
	// A password with an unescaped '/', '?' or '#' ends the authority early
	// and leaves its tail (and the '@') in the path, query or fragment.
	if i := strings.IndexAny(rest, "/?#"); i >= 0 && strings.Contains(rest[i:], "@") {
		return redactedText
	}
	u, err := url.Parse(s)
	if err != nil || !strings.EqualFold(u.Scheme, scheme) || u.Opaque != "" {
		return redactedText
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), redactedText)
		}
	}
	if u.RawQuery != "" {
		q := u.Query()
		changed := false
		for _, p := range passwordParams {
			for k := range q {
				if strings.EqualFold(k, p) {
					q[k] = []string{redactedText}
					changed = true
				}
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
	}
	u.Fragment, u.RawFragment = "", ""
	out := u.String()
	if !strings.Contains(out, "://") {
		// url.String drops "//" when the authority and path are empty
		// ("postgres://" becomes "postgres:"); keep the input's form.
		out = u.Scheme + "://" + strings.TrimPrefix(out, u.Scheme+":")
	}
	// url.String escapes '*' in a password; show it plainly.
	return strings.Replace(out, ":"+url.PathEscape(redactedText)+"@", ":"+redactedText+"@", 1)
}

// ByteSize is a number of bytes. In YAML it is an integer ("1024") or an
// integer with a unit: B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB,
// TiB (powers of 1024), as in "64MiB" or "16MB". Units are case-insensitive
// and may be separated from the number by a space.
type ByteSize int64

// Byte size units.
const (
	KiB ByteSize = 1 << 10
	MiB ByteSize = 1 << 20
	GiB ByteSize = 1 << 30
	TiB ByteSize = 1 << 40
	KB  ByteSize = 1000
	MB  ByteSize = 1000 * KB
	GB  ByteSize = 1000 * MB
	TB  ByteSize = 1000 * GB
)

var byteUnits = []struct {
	name string
	size ByteSize
}{
	// Largest first: String uses the largest unit that divides exactly.
	{"TiB", TiB}, {"TB", TB}, {"GiB", GiB}, {"GB", GB},
	{"MiB", MiB}, {"MB", MB}, {"KiB", KiB}, {"KB", KB},
	{"B", 1},
}

const byteUnitList = "B, KB, MB, GB, TB, KiB, MiB, GiB, TiB"

// ParseByteSize parses "1024", "64MiB", "16MB" or "1 GiB".
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("%q is not a byte size (use a whole number with an optional unit: 1024, 16MB, 64MiB)", s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a byte size: number too large", s)
	}
	if i < len(t) && (t[i] == '.' || t[i] == ',') {
		return 0, fmt.Errorf("%q is not a byte size: fractions are not supported (use a smaller unit: 1536MiB, not 1.5GiB)", s)
	}
	unit := strings.TrimSpace(t[i:])
	if unit == "" {
		return ByteSize(n), nil
	}
	for _, u := range byteUnits {
		if strings.EqualFold(unit, u.name) {
			if n > math.MaxInt64/int64(u.size) {
				return 0, fmt.Errorf("%q is not a byte size: too large", s)
			}
			return ByteSize(n) * u.size, nil
		}
	}
	return 0, fmt.Errorf("%q is not a byte size: unknown unit %q (use %s)", s, unit, byteUnitList)
}

// String renders b with the largest unit that divides it exactly: "64MiB",
// "16MB", "1023".
func (b ByteSize) String() string {
	if b != 0 {
		for _, u := range byteUnits[:len(byteUnits)-1] {
			if b%u.size == 0 {
				return strconv.FormatInt(int64(b/u.size), 10) + u.name
			}
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// UnmarshalText parses a byte size as ParseByteSize does.
func (b *ByteSize) UnmarshalText(text []byte) error {
	v, err := ParseByteSize(string(text))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// MarshalText renders b as String does.
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// MarshalYAML renders b as String does.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// Duration is a time.Duration written in YAML as a string with a unit, as
// time.ParseDuration accepts: "100ms", "5s", "1m30s", "2h".
type Duration time.Duration

// ParseDuration parses a duration as time.ParseDuration does, with an error
// that shows the expected form.
func ParseDuration(s string) (Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (use a number with a unit: 100ms, 5s, 1m, 2h)", s)
	}
	return Duration(d), nil
}

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String renders d as time.Duration does ("5m0s").
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalText parses a duration as ParseDuration does.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := ParseDuration(string(text))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalText renders d as String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// MarshalYAML renders d as String does.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }
