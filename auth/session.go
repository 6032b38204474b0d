package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"sync"
	"time"
)

// Session cookies (CONTRACT §4 step 6). A cookie value is base64url without
// padding of
//
//	version (1) | key id length (1) | epoch (8) | issued (8) | expires (8) |
//	key id | HMAC-SHA256 of everything before it (32)
//
// with integers big-endian and times in Unix seconds. It names the key and
// the key's session epoch, so bumping the epoch, disabling, expiring or
// deleting the key ends its sessions when the proxy looks the id up; it
// never carries a secret.
const (
	// MinSessionSecretLen is the shortest signing secret NewSessionSigner
	// accepts (config's sessions.secrets rule).
	MinSessionSecretLen = 32
	// MaxSessionKeyIDLen is the longest key id a cookie can carry.
	MaxSessionKeyIDLen = 255
	// SessionClockSkew is how far in the future a cookie's issue time may
	// be, for replicas whose clocks differ a little.
	SessionClockSkew = time.Minute

	// MaxSessionCookieLen is the longest cookie value Verify considers;
	// longer values are refused before any decoding. It is the unpadded
	// base64 length of the longest cookie.
	MaxSessionCookieLen = (maxSessionRawLen*8 + 5) / 6

	sessionVersion   = 1
	sessionHeaderLen = 1 + 1 + 8 + 8 + 8
	sessionMACLen    = sha256.Size
	minSessionRawLen = sessionHeaderLen + 1 + sessionMACLen
	maxSessionRawLen = sessionHeaderLen + MaxSessionKeyIDLen + sessionMACLen
	// minSessionCookieLen is the unpadded base64 length of the shortest
	// cookie (a one-byte key id).
	minSessionCookieLen = (minSessionRawLen*8 + 5) / 6
)

// Session is what a verified cookie says.
type Session struct {
	// KeyID is the key the session was minted from. VerifyAppend leaves it
	// empty and appends the id to the caller's buffer instead.
	KeyID string
	// Epoch is the key's session epoch at minting; the session is over
	// when the key's current epoch differs.
	Epoch int64
	// Issued and Expires are the cookie's issue and expiry times, to the
	// second, in UTC.
	Issued  time.Time
	Expires time.Time
}

// SessionSigner mints and verifies session cookie values. The first secret
// signs; every secret verifies, so a new secret can be put first without
// logging everyone out and the old one dropped after the session ttl. It is
// safe for concurrent use and must not be copied after first use. The zero
// value refuses to sign and rejects every cookie.
type SessionSigner struct {
	secrets [][]byte
	enc     *base64.Encoding
	// scratch pools *sessionScratch so that signing and verifying do not
	// allocate: HMAC state per secret and the decoded cookie.
	scratch sync.Pool
}

// sessionScratch is one goroutine's working state.
type sessionScratch struct {
	macs []hash.Hash // one per secret, same order
	raw  [maxSessionRawLen]byte
	sum  [sessionMACLen]byte
}

// NewSessionSigner returns a signer over secrets, newest (signing) first.
// Each must be at least MinSessionSecretLen bytes. The secrets are copied.
func NewSessionSigner(secrets [][]byte) (*SessionSigner, error) {
	if len(secrets) == 0 {
		return nil, errors.New("auth: no session signing secret")
	}
	s := &SessionSigner{enc: base64.RawURLEncoding.Strict()}
	for i, sec := range secrets {
		if len(sec) < MinSessionSecretLen {
			return nil, fmt.Errorf("auth: session signing secret %d is shorter than %d bytes", i, MinSessionSecretLen)
		}
		s.secrets = append(s.secrets, append([]byte(nil), sec...))
	}
	s.scratch.New = func() any {
		sc := &sessionScratch{macs: make([]hash.Hash, len(s.secrets))}
		for i, sec := range s.secrets {
			sc.macs[i] = hmac.New(sha256.New, sec)
		}
		return sc
	}
	return s, nil
}

// errSessionArgs is AppendCookieValue's refusal of arguments no cookie can
// carry.
var errSessionArgs = errors.New("auth: session needs a key id of 1 to 255 bytes and expires after issued")

// AppendCookieValue appends to dst a cookie value for a session of key
// keyID at the given session epoch, issued and expiring at the given times
// (both truncated to the second), signed with the first secret. It fails
// for an empty or over-long key id, expires not after issued, or a zero
// SessionSigner.
func (s *SessionSigner) AppendCookieValue(dst []byte, keyID string, epoch int64, issued, expires time.Time) ([]byte, error) {
	if len(s.secrets) == 0 {
		return dst, errors.New("auth: session signer has no secret")
	}
	iss, exp := issued.Unix(), expires.Unix()
	if len(keyID) == 0 || len(keyID) > MaxSessionKeyIDLen || exp <= iss {
		return dst, errSessionArgs
	}
	sc := s.scratch.Get().(*sessionScratch)
	defer s.scratch.Put(sc)
	raw := sc.raw[:0]
	raw = append(raw, sessionVersion, byte(len(keyID)))
	raw = binary.BigEndian.AppendUint64(raw, uint64(epoch))
	raw = binary.BigEndian.AppendUint64(raw, uint64(iss))
	raw = binary.BigEndian.AppendUint64(raw, uint64(exp))
	raw = append(raw, keyID...)
	m := sc.macs[0]
	m.Reset()
	m.Write(raw)
	raw = m.Sum(raw)
	return s.enc.AppendEncode(dst, raw), nil
}

// Verify checks a cookie value at now and returns its session. Any
// failure is ErrSessionInvalid: a value that is not canonical unpadded
// base64url, truncated or extended, tampered with, signed by a secret this
// signer does not hold, expired (at its second of expiry), or issued more
// than SessionClockSkew after now. Verify allocates once, for the KeyID
// string; VerifyAppend does not allocate.
//
// Verify does not know whether the key still exists or its epoch is still
// current: the caller looks the key up by Session.KeyID and compares.
func (s *SessionSigner) Verify(value []byte, now time.Time) (Session, error) {
	sc, id, sess, err := s.verify(value, now)
	if err != nil {
		return Session{}, err
	}
	sess.KeyID = string(id)
	s.scratch.Put(sc)
	return sess, nil
}

// VerifyAppend is Verify without allocating: it appends the key id to dst
// and returns the extended slice, with Session.KeyID left empty. With
// cap(dst)-len(dst) >= MaxSessionKeyIDLen the append never allocates. On
// error it returns dst unchanged.
func (s *SessionSigner) VerifyAppend(dst, value []byte, now time.Time) ([]byte, Session, error) {
	sc, id, sess, err := s.verify(value, now)
	if err != nil {
		return dst, Session{}, err
	}
	dst = append(dst, id...)
	s.scratch.Put(sc)
	return dst, sess, nil
}

// verify does Verify's work; on success the key id is a slice of sc.raw,
// valid until sc goes back to the pool (the caller's job). On failure sc
// is already back.
func (s *SessionSigner) verify(value []byte, now time.Time) (*sessionScratch, []byte, Session, error) {
	if len(s.secrets) == 0 || len(value) > MaxSessionCookieLen || len(value) < minSessionCookieLen {
		return nil, nil, Session{}, ErrSessionInvalid
	}
	// The decoder skips '\r' and '\n'; refusing anything outside the
	// alphabet keeps exactly one accepted spelling per cookie.
	for _, c := range value {
		if !isBase64URL(c) {
			return nil, nil, Session{}, ErrSessionInvalid
		}
	}
	sc := s.scratch.Get().(*sessionScratch)
	n, err := s.enc.Decode(sc.raw[:], value)
	raw := sc.raw[:n]
	if err != nil || n < minSessionRawLen || raw[0] != sessionVersion ||
		n != sessionHeaderLen+int(raw[1])+sessionMACLen {
		s.scratch.Put(sc)
		return nil, nil, Session{}, ErrSessionInvalid
	}
	body, mac := raw[:n-sessionMACLen], raw[n-sessionMACLen:]
	ok := false
	for _, m := range sc.macs {
		m.Reset()
		m.Write(body)
		if hmac.Equal(m.Sum(sc.sum[:0]), mac) {
			ok = true
			break
		}
	}
	if !ok {
		s.scratch.Put(sc)
		return nil, nil, Session{}, ErrSessionInvalid
	}
	sess := Session{
		Epoch:   int64(binary.BigEndian.Uint64(body[2:10])),
		Issued:  time.Unix(int64(binary.BigEndian.Uint64(body[10:18])), 0).UTC(),
		Expires: time.Unix(int64(binary.BigEndian.Uint64(body[18:26])), 0).UTC(),
	}
	if !now.Before(sess.Expires) || sess.Issued.After(now.Add(SessionClockSkew)) {
		s.scratch.Put(sc)
		return nil, nil, Session{}, ErrSessionInvalid
	}
	return sc, body[sessionHeaderLen:], sess, nil
}

// isBase64URL reports whether c is in the base64url alphabet.
func isBase64URL(c byte) bool {
	return base62Value(c) >= 0 || c == '-' || c == '_'
}
