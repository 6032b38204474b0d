package store

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
)

// Cursors are opaque to clients: base64url of a version byte, a kind byte
// (so a key list's cursor is refused by the audit list), the last id
// returned, and a 4-byte checksum that catches edited or truncated
// cursors. They carry no authority, so a checksum is enough: a client
// that forges one only chooses where its own list starts.
const (
	cursorVersion = 1
	cursorKeys    = 'k'
	cursorAudit   = 'a'
)

func cursorSum(b []byte) []byte {
	h := sha256.New()
	h.Write([]byte("keygate cursor\x00"))
	h.Write(b)
	return h.Sum(nil)[:4]
}

func encodeCursor(kind byte, id string) string {
	b := make([]byte, 0, 2+len(id)+4)
	b = append(b, cursorVersion, kind)
	b = append(b, id...)
	b = append(b, cursorSum(b)...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor returns the id a cursor continues after; "" for an empty
// cursor; a FieldError for anything that is not one of ours.
func decodeCursor(kind byte, c string) (string, error) {
	if c == "" {
		return "", nil
	}
	bad := &FieldError{Field: "cursor", Msg: "not a cursor from a previous page"}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) < 2+1+4 || b[0] != cursorVersion || b[1] != kind {
		return "", bad
	}
	body, sum := b[:len(b)-4], b[len(b)-4:]
	if subtle.ConstantTimeCompare(sum, cursorSum(body)) != 1 {
		return "", bad
	}
	return string(body[2:]), nil
}
