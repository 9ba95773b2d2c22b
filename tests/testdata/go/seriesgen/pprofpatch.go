package main

// Rewriting a gzipped pprof profile written by runtime/pprof: its collection time (Profile field 9,
// time_nanos) becomes the series' minute, and a comment (field 13, an index into the string table,
// field 6) names the service version. Every other byte of the encoded message is kept as Go wrote it;
// fields stay in Go's order (the new string follows the last string-table entry, the comment goes last).

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

const (
	fieldStringTable = 6
	fieldTimeNanos   = 9
	fieldComment     = 13
)

type rawField struct {
	number int
	wire   int
	bytes  []byte // the whole encoded field (tag included)
}

func readVarint(b []byte) (uint64, int, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, 0, errors.New("bad varint")
	}
	return v, n, nil
}

func splitFields(msg []byte) ([]rawField, error) {
	var out []rawField
	for i := 0; i < len(msg); {
		start := i
		tag, n, err := readVarint(msg[i:])
		if err != nil {
			return nil, fmt.Errorf("tag at %d: %w", i, err)
		}
		i += n
		wire := int(tag & 7)
		switch wire {
		case 0:
			_, n, err := readVarint(msg[i:])
			if err != nil {
				return nil, err
			}
			i += n
		case 1:
			i += 8
		case 2:
			length, n, err := readVarint(msg[i:])
			if err != nil {
				return nil, err
			}
			i += n + int(length)
		case 5:
			i += 4
		default:
			return nil, fmt.Errorf("wire type %d at %d", wire, start)
		}
		if i > len(msg) {
			return nil, errors.New("truncated field")
		}
		out = append(out, rawField{number: int(tag >> 3), wire: wire, bytes: msg[start:i]})
	}
	return out, nil
}

func appendVarintField(dst []byte, number int, v uint64) []byte {
	dst = binary.AppendUvarint(dst, uint64(number)<<3)
	return binary.AppendUvarint(dst, v)
}

func appendBytesField(dst []byte, number int, v []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(number)<<3|2)
	dst = binary.AppendUvarint(dst, uint64(len(v)))
	return append(dst, v...)
}

// patchProfile returns the gzipped profile with time_nanos set and a comment added.
func patchProfile(gz []byte, timeNanos int64, comment string) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, err
	}
	msg, err := io.ReadAll(zr)
	if err != nil {
		return nil, err
	}
	fields, err := splitFields(msg)
	if err != nil {
		return nil, err
	}
	strings, lastString := 0, -1
	for i, f := range fields {
		if f.number == fieldStringTable {
			strings++
			lastString = i
		}
	}
	if lastString < 0 {
		return nil, errors.New("profile has no string table")
	}
	out := make([]byte, 0, len(msg)+len(comment)+16)
	sawTime := false
	for i, f := range fields {
		if f.number == fieldTimeNanos {
			out = appendVarintField(out, fieldTimeNanos, uint64(timeNanos))
			sawTime = true
		} else {
			out = append(out, f.bytes...)
		}
		if i == lastString && comment != "" {
			out = appendBytesField(out, fieldStringTable, []byte(comment))
		}
	}
	if !sawTime {
		out = appendVarintField(out, fieldTimeNanos, uint64(timeNanos))
	}
	if comment != "" {
		out = appendVarintField(out, fieldComment, uint64(strings))
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(out); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
