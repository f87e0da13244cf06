// Package auth checks HTTP Basic credentials (RFC 7617) against one fixed
// user name and password, in constant time.
//
// It does no I/O and no logging: callers get a Result and decide what to
// record. A Checker is immutable after New and safe for concurrent use.
package auth

import (
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// MaxCredentialBytes bounds the decoded "user:password" pair that Check will
// look at. Longer credentials are malformed: the decode buffer lives on the
// stack, so the check allocates nothing, and no real client sends kilobytes of
// Basic credentials.
const MaxCredentialBytes = 4096

// maxEncoded is the longest base64 text that can decode to MaxCredentialBytes.
var maxEncoded = base64.StdEncoding.EncodedLen(MaxCredentialBytes)

// Result says why a check passed or failed. Only OK grants access; the other
// values exist for metrics and logs, never for the client, who gets the same
// 401 whatever the reason.
type Result uint8

// The results of Check, in the order a request can fail.
const (
	OK            Result = iota
	Previous             // accepted with the previous secret, before its deadline
	Missing              // no Authorization header
	Scheme               // a scheme other than Basic
	Malformed            // not base64, no colon, or too long
	WrongUser            // user name differs (the password may differ too)
	WrongPassword        // right user name, wrong password
)

// Results lists every Result, for callers that pre-register metrics.
var Results = [...]Result{OK, Previous, Missing, Scheme, Malformed, WrongUser, WrongPassword}

// Accepted reports whether the result grants access.
func (r Result) Accepted() bool { return r == OK || r == Previous }

var resultNames = [...]string{
	OK:            "ok",
	Previous:      "previous",
	Missing:       "missing",
	Scheme:        "scheme",
	Malformed:     "malformed",
	WrongUser:     "wrong_user",
	WrongPassword: "wrong_password",
}

// String returns a short snake_case name, used as a metric label.
func (r Result) String() string {
	if int(r) < len(resultNames) {
		return resultNames[r]
	}
	return fmt.Sprintf("result(%d)", uint8(r))
}

// Errors returned by New.
var (
	ErrEmptyPassword = errors.New("password is empty")
	ErrColonInUser   = errors.New("user name contains a colon")
	ErrTooLong       = fmt.Errorf("user name and password together exceed %d bytes", MaxCredentialBytes-1)
)

// Checker holds SHA-256 digests of the expected user name and password, never
// the password itself, and optionally of a previous password that is still
// accepted until a deadline, so that a rolling redeploy that changes the
// secret causes no 401s.
type Checker struct {
	user     [sha256.Size]byte
	password [sha256.Size]byte
	previous [sha256.Size]byte
	// previousUntil is when the previous password stops working; the zero
	// time means there is none.
	previousUntil time.Time
}

// New returns a Checker for the given pair. The user name may not contain a
// colon (RFC 7617 §2: the first colon separates the two); the password may
// contain anything but must not be empty.
func New(user, password string) (*Checker, error) {
	switch {
	case password == "":
		return nil, ErrEmptyPassword
	case containsColon(user):
		return nil, ErrColonInUser
	case len(user)+1+len(password) > MaxCredentialBytes:
		return nil, ErrTooLong
	}
	return &Checker{
		user:     sha256.Sum256([]byte(user)),
		password: sha256.Sum256([]byte(password)),
	}, nil
}

// WithPrevious returns a copy of c that also accepts a previous password
// until the given time.
func (c *Checker) WithPrevious(password string, until time.Time) (*Checker, error) {
	switch {
	case password == "":
		return nil, ErrEmptyPassword
	case until.IsZero():
		return nil, errors.New("the previous password needs a deadline")
	case len(password)+1 > MaxCredentialBytes:
		return nil, ErrTooLong
	}
	c2 := *c
	c2.previous = sha256.Sum256([]byte(password))
	c2.previousUntil = until
	return &c2, nil
}

// Check validates the value of an Authorization header. It accepts exactly
// "Basic " (scheme case-insensitive, RFC 7235 §2.1) followed by the standard
// base64 of "user:password", split at the first colon so that the password
// may hold colons and any UTF-8.
//
// Both digests are always computed and compared with every secret, and the
// comparisons are combined without short-circuit, so the time taken depends
// on the length of what the client sent but not on the secrets or on which
// part was wrong or which secret matched. now decides whether the previous
// password is still accepted.
func (c *Checker) Check(authorization []byte, now time.Time) Result {
	if len(authorization) == 0 {
		return Missing
	}
	encoded, ok := basicCredentials(authorization)
	if !ok {
		return Scheme
	}
	if len(encoded) == 0 || len(encoded) > maxEncoded {
		return Malformed
	}
	var buf [MaxCredentialBytes]byte
	n, err := base64.StdEncoding.Decode(buf[:], encoded)
	if err != nil {
		return Malformed
	}
	decoded := buf[:n]
	colon := indexColon(decoded)
	if colon < 0 {
		return Malformed
	}
	userSum := sha256.Sum256(decoded[:colon])
	passwordSum := sha256.Sum256(decoded[colon+1:])
	userOK := subtle.ConstantTimeCompare(userSum[:], c.user[:])
	passwordOK := subtle.ConstantTimeCompare(passwordSum[:], c.password[:])
	previousOK := subtle.ConstantTimeCompare(passwordSum[:], c.previous[:])
	if c.previousUntil.IsZero() || !now.Before(c.previousUntil) {
		previousOK = 0
	}
	// Pick the result from the combined bits without a branch, so that
	// not even the branch predictor can tell which part was wrong.
	r := subtle.ConstantTimeSelect(userOK, int(WrongPassword), int(WrongUser))
	r = subtle.ConstantTimeSelect(userOK&previousOK, int(Previous), r)
	r = subtle.ConstantTimeSelect(userOK&passwordOK, int(OK), r)
	return Result(r) //nolint:gosec // G115: r is one of the Result constants above
}

// basicCredentials returns the token after a case-insensitive "Basic" scheme
// and the spaces that follow it (RFC 7235 §2.1: 1*SP). ok is false when the
// scheme is not Basic.
func basicCredentials(h []byte) (token []byte, ok bool) {
	const scheme = "basic"
	if len(h) < len(scheme) {
		return nil, false
	}
	for i := range len(scheme) {
		if h[i]|0x20 != scheme[i] {
			return nil, false
		}
	}
	rest := h[len(scheme):]
	if len(rest) == 0 {
		return nil, true
	}
	if rest[0] != ' ' {
		return nil, false // "Basicfoo" is another scheme
	}
	for len(rest) > 0 && rest[0] == ' ' {
		rest = rest[1:]
	}
	return rest, true
}

func indexColon(b []byte) int {
	for i, c := range b {
		if c == ':' {
			return i
		}
	}
	return -1
}

func containsColon(s string) bool {
	for i := range len(s) {
		if s[i] == ':' {
			return true
		}
	}
	return false
}

// Challenge returns the value of the WWW-Authenticate header for a realm
// (RFC 7617 §2 and §2.1). Quotes and backslashes in the realm are escaped.
func Challenge(realm string) string {
	b := make([]byte, 0, len(realm)+32)
	b = append(b, `Basic realm="`...)
	for i := range len(realm) {
		if realm[i] == '"' || realm[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, realm[i])
	}
	b = append(b, `", charset="UTF-8"`...)
	return string(b)
}

// Fingerprint returns a short, non-reversible identifier of a secret, so that
// operators can tell which secret each replica loaded without seeing it. It
// is a PBKDF2 derivation (slow on purpose, to make guessing a weak password
// from its fingerprint expensive) truncated to 48 bits.
func Fingerprint(secret string) string {
	key, err := pbkdf2.Key(sha256.New, secret, []byte("github.com/paperspace/warden/fingerprint/v1"), fingerprintIterations, 6)
	if err != nil {
		// Only a FIPS 140-only mode refuses this derivation; say so rather
		// than print something that looks like a fingerprint.
		return "unavailable"
	}
	return hex.EncodeToString(key)
}

// fingerprintIterations costs about 2 ms at start-up on one core.
const fingerprintIterations = 10_000
