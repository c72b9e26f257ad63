package kinesis

import (
	"bytes"
	"crypto/md5"
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// kplMagic starts every record the Kinesis Producer Library aggregated.
var kplMagic = []byte{0xF3, 0x89, 0x9A, 0xC2}

// subRecord is one user record inside a KPL aggregate.
type subRecord struct {
	PartitionKey string
	Data         []byte // aliases the aggregate's bytes
}

// deaggregate splits a KPL aggregated record into its user records. The
// layout is public: magic, a protobuf AggregatedRecord, and the MD5 of the
// protobuf bytes:
//
//	message AggregatedRecord {
//	  repeated string partition_key_table     = 1;
//	  repeated string explicit_hash_key_table = 2;
//	  repeated Record records                 = 3;
//	}
//	message Record {
//	  required uint64 partition_key_index     = 1;
//	  optional uint64 explicit_hash_key_index = 2;
//	  required bytes  data                    = 3;
//	  repeated Tag    tags                    = 4;
//	}
//
// It returns ok=false (and why) when data is not a valid aggregate: no magic,
// an MD5 mismatch, a malformed message or no records at all. Like the KCL,
// the caller then delivers the record whole, so nothing is lost: a decoder
// rejects it with its position if it is not a change record either.
func deaggregate(data []byte) (recs []subRecord, ok bool, why error) {
	if !bytes.HasPrefix(data, kplMagic) {
		return nil, false, nil
	}
	if len(data) < len(kplMagic)+md5.Size {
		return nil, false, errors.New("kpl aggregate: shorter than magic and md5")
	}
	body := data[len(kplMagic) : len(data)-md5.Size]
	sum := md5.Sum(body)
	if !bytes.Equal(sum[:], data[len(data)-md5.Size:]) {
		return nil, false, errors.New("kpl aggregate: md5 mismatch")
	}
	var (
		keys []string
		raw  [][]byte
	)
	for b := body; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, false, fmt.Errorf("kpl aggregate: tag: %w", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, false, fmt.Errorf("kpl aggregate: partition_key_table: %w", protowire.ParseError(n))
			}
			keys = append(keys, string(v))
			b = b[n:]
		case num == 3 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, false, fmt.Errorf("kpl aggregate: records[%d]: %w", len(raw), protowire.ParseError(n))
			}
			raw = append(raw, v)
			b = b[n:]
		default: // explicit_hash_key_table and unknown fields
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return nil, false, fmt.Errorf("kpl aggregate: field %d: %w", num, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	if len(raw) == 0 {
		return nil, false, errors.New("kpl aggregate: no records")
	}
	recs = make([]subRecord, len(raw))
	for i, r := range raw {
		pk, d, err := parseSubRecord(r)
		if err != nil {
			return nil, false, fmt.Errorf("kpl aggregate: records[%d]: %w", i, err)
		}
		if pk >= uint64(len(keys)) {
			return nil, false, fmt.Errorf("kpl aggregate: records[%d]: partition_key_index %d out of range (table has %d)", i, pk, len(keys))
		}
		recs[i] = subRecord{PartitionKey: keys[pk], Data: d}
	}
	return recs, true, nil
}

// parseSubRecord reads one Record message: its partition key index and data.
func parseSubRecord(b []byte) (pk uint64, data []byte, err error) {
	var havePK, haveData bool
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, nil, fmt.Errorf("tag: %w", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return 0, nil, fmt.Errorf("partition_key_index: %w", protowire.ParseError(n))
			}
			pk, havePK = v, true
			b = b[n:]
		case num == 3 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return 0, nil, fmt.Errorf("data: %w", protowire.ParseError(n))
			}
			data, haveData = v, true
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return 0, nil, fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	switch {
	case !havePK:
		return 0, nil, errors.New("partition_key_index missing")
	case !haveData:
		return 0, nil, errors.New("data missing")
	}
	if data == nil {
		data = []byte{}
	}
	return pk, data, nil
}
