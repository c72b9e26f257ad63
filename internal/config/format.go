package config

import "fmt"

// The structs below hold secrets, directly or through pointers. They
// implement fmt.Formatter so that fmt never prints their fields raw: when fmt
// meets a verb a pointer does not support (%s on a *KafkaSource inside a
// Config), it prints the pointed-to struct with every Format and String
// method switched off, secrets included. Each Format prints the struct
// through a method-less copy of its type, whose fields still format
// themselves, so Secret and SecretURL fields render redacted.

// Format prints c with its secrets redacted, for every verb.
func (c Config) Format(f fmt.State, verb rune) {
	type plain Config
	fmt.Fprintf(f, fmt.FormatString(f, verb), plain(c))
}

// Format prints s with its secrets redacted, for every verb.
func (s Source) Format(f fmt.State, verb rune) {
	type plain Source
	fmt.Fprintf(f, fmt.FormatString(f, verb), plain(s))
}

// Format prints k with its secrets redacted, for every verb.
func (k KafkaSource) Format(f fmt.State, verb rune) {
	type plain KafkaSource
	fmt.Fprintf(f, fmt.FormatString(f, verb), plain(k))
}

// Format prints s with its secrets redacted, for every verb.
func (s SASL) Format(f fmt.State, verb rune) {
	type plain SASL
	fmt.Fprintf(f, fmt.FormatString(f, verb), plain(s))
}

// Format prints k with its secrets redacted, for every verb.
func (k KinesisSource) Format(f fmt.State, verb rune) {
	type plain KinesisSource
	fmt.Fprintf(f, fmt.FormatString(f, verb), plain(k))
}

// Format prints s with its secrets redacted, for every verb.
func (s Sink) Format(f fmt.State, verb rune) {
	type plain Sink
	fmt.Fprintf(f, fmt.FormatString(f, verb), plain(s))
}

// Format prints p with its secrets redacted, for every verb.
func (p PostgresSink) Format(f fmt.State, verb rune) {
	type plain PostgresSink
	fmt.Fprintf(f, fmt.FormatString(f, verb), plain(p))
}
