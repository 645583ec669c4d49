// Package resp encodes Redis commands in RESP (the Redis serialization
// protocol), for the connections the sidecar's event loops keep to Redis
// themselves: the relay's set-up commands and the store's creates.
package resp

import "strconv"

// AppendCommand appends a command as an array of bulk strings.
func AppendCommand(b []byte, args ...string) []byte {
	b = AppendArray(b, len(args))
	for _, a := range args {
		b = AppendBulk(b, a)
	}
	return b
}

// AppendArray appends the header of an array of n elements.
func AppendArray(b []byte, n int) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, "\r\n"...)
}

// AppendBulk appends s as a bulk string.
func AppendBulk[S string | []byte](b []byte, s S) []byte {
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, "\r\n"...)
	b = append(b, s...)
	return append(b, "\r\n"...)
}

// AppendBulkInt appends v in decimal as a bulk string.
func AppendBulkInt(b []byte, v int64) []byte {
	var d [20]byte
	return AppendBulk(b, strconv.AppendInt(d[:0], v, 10))
}
