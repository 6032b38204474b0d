package store

import (
	"encoding/base64"
	"testing"
)

func TestCursorRoundTrip(t *testing.T) {
	for _, id := range []string{"key_01ARYZ6S41TSV4RRFFQ69G5FAV", "evt_x", "a"} {
		c := encodeCursor(cursorKeys, id)
		got, err := decodeCursor(cursorKeys, c)
		if err != nil || got != id {
			t.Errorf("decodeCursor(encodeCursor(%q)) = %q, %v", id, got, err)
		}
		if _, err := decodeCursor(cursorAudit, c); err == nil {
			t.Errorf("a key cursor was accepted as an audit cursor")
		}
	}
	if got, err := decodeCursor(cursorKeys, ""); got != "" || err != nil {
		t.Errorf(`decodeCursor("") = %q, %v; want the first page`, got, err)
	}
}

func TestCursorTampered(t *testing.T) {
	raw, _ := base64.RawURLEncoding.DecodeString(encodeCursor(cursorKeys, "key_01ARYZ6S41TSV4RRFFQ69G5FAV"))
	for i := range raw {
		for _, bit := range []byte{1, 0x80} {
			b := append([]byte(nil), raw...)
			b[i] ^= bit
			if id, err := decodeCursor(cursorKeys, base64.RawURLEncoding.EncodeToString(b)); err == nil {
				t.Errorf("cursor with byte %d changed was accepted (id %q)", i, id)
			}
		}
	}
	for _, c := range []string{"!", "AA", base64.RawURLEncoding.EncodeToString(raw[:len(raw)-1]), base64.RawURLEncoding.EncodeToString(append(raw, 0))} {
		_, err := decodeCursor(cursorKeys, c)
		if fe, ok := err.(*FieldError); !ok || fe.Field != "cursor" {
			t.Errorf("decodeCursor(%q) = %v, want a FieldError for cursor", c, err)
		}
	}
}

func FuzzCursor(f *testing.F) {
	f.Add(encodeCursor(cursorKeys, "key_01ARYZ6S41TSV4RRFFQ69G5FAV"))
	f.Add("")
	f.Add("AQ")
	f.Fuzz(func(t *testing.T, c string) {
		id, err := decodeCursor(cursorKeys, c)
		if err != nil || c == "" {
			return
		}
		if again := encodeCursor(cursorKeys, id); again != c {
			t.Errorf("accepted cursor %q re-encodes as %q", c, again)
		}
	})
}
