package store

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// The stored form of a token record (format 2), in both stores.
//
// A record is binary, much smaller than the JSON it replaced (bench/RESULTS.md):
// the key names the namespace and the id, so the value does not repeat them;
// ids and the hash are raw bytes rather than hex; times are integers.
//
//	0          0x02, the format
//	1          d, the number of ancestors (0..MaxAncestors)
//	2..        d × 16 bytes: the ancestors' ids, oldest first; the last is
//	           the parent (written by the create script, which reads them
//	           from the parent's record)
//	then the tail, which Go writes (AppendRecordTail):
//	8 bytes    Created, unix nanoseconds, big-endian
//	8 bytes    Expires, likewise
//	32 bytes   the SHA-256 of the secret
//	uvarint length + bytes: Revision, then Description
//	uvarint count, then each policy as uvarint length + bytes
//
// The Lua scripts read only bytes 0..2+16d (see luaCommon's ancestors).
// Records of the JSON format written before (they start with '{') are still
// read, so that tokens minted before an upgrade keep working until they
// expire (see DecodeRecord).
const recordFormat = 2

// RawID returns the 16 bytes of a valid (ValidID) id.
func RawID(id string) []byte {
	b := make([]byte, 16)
	j := 0
	for i := 0; i+1 < len(id); i++ {
		if id[i] == '-' {
			continue
		}
		b[j] = unhex(id[i])<<4 | unhex(id[i+1])
		j++
		i++
	}
	return b
}

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'a' + 10
}

// idString returns the canonical lowercase UUID of 16 raw bytes.
func idString(b []byte) string {
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:36], b[10:16])
	return string(s[:])
}

// AppendRecordTail appends what follows the ancestors in t's record. t must be
// valid (ValidateRecord).
func (t Token) AppendRecordTail(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(t.Created.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(t.Expires.UnixNano()))
	h, _ := hex.DecodeString(t.Hash)
	b = append(b, h...)
	b = appendString(b, t.Revision)
	b = appendString(b, t.Description)
	b = binary.AppendUvarint(b, uint64(len(t.Policies)))
	for _, p := range t.Policies {
		b = appendString(b, p)
	}
	return b
}

// encodeRecord is t's whole record, with its ancestors (oldest first).
func (t Token) encodeRecord(ancestors []string) []byte {
	b := make([]byte, 0, 2+16*len(ancestors)+96+len(t.Description)+len(t.Revision)+16*len(t.Policies))
	b = append(b, recordFormat, byte(len(ancestors)))
	for _, a := range ancestors {
		b = append(b, RawID(a)...)
	}
	return t.AppendRecordTail(b)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var errShortRecord = errors.New("record ends early")

// recordReader reads the fields of a record in order.
type recordReader struct {
	b   []byte
	err error
}

func (r *recordReader) bytes(n int) []byte {
	if r.err != nil || n > len(r.b) || n < 0 {
		r.err = errShortRecord
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *recordReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errShortRecord
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *recordReader) string() string {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.err = errShortRecord
		return ""
	}
	return string(r.bytes(int(n)))
}

func (r *recordReader) time() time.Time {
	b := r.bytes(8)
	if b == nil {
		return time.Time{}
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(b))).UTC()
}

// DecodeRecord parses the stored record of namespace/id (in Redis, the value
// at <prefix>:{namespace}:tok:<id>). A record that does not parse, or (JSON
// format) names another token, means the backend holds data this code did
// not write: the caller fails closed.
func DecodeRecord(b []byte, namespace, id string) (Token, error) {
	if len(b) > 0 && b[0] == '{' {
		return decodeJSONRecord(b, namespace, id)
	}
	if len(b) < 2 || b[0] != recordFormat || int(b[1]) > MaxAncestors {
		return Token{}, fmt.Errorf("record of %s/%s is not of a format this version reads", namespace, id)
	}
	t := Token{ID: id, Namespace: namespace}
	r := recordReader{b: b[2:]}
	if d := int(b[1]); d > 0 {
		anc := r.bytes(16 * d)
		t.Ancestors = make([]string, d)
		for i := range d {
			t.Ancestors[i] = idString(anc[16*i : 16*i+16])
		}
		t.Parent = t.Ancestors[d-1]
	}
	t.Created = r.time()
	t.Expires = r.time()
	t.Hash = hex.EncodeToString(r.bytes(32))
	t.Revision = r.string()
	t.Description = r.string()
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.err = errShortRecord
	}
	if r.err == nil {
		t.Policies = make([]string, 0, n)
		for range n {
			t.Policies = append(t.Policies, r.string())
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = errors.New("bytes after the last field")
	}
	if r.err != nil {
		return Token{}, fmt.Errorf("record of %s/%s does not parse: %w", namespace, id, r.err)
	}
	return t, nil
}
