// Package auth checks a request's credentials against one fixed secret, in
// constant time. The secret may come in three carriers: HTTP Basic (RFC 7617,
// with a fixed user name), a Bearer token (RFC 6750) and an x-api-key header;
// which of them a Checker accepts is its Schemes.
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
	"math"
	"strings"
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

// Carrier is where a request's credential was found. It labels metrics, so
// that operators see which clients use which; it is never the secret.
type Carrier uint8

// The carriers.
const (
	CarrierNone   Carrier = iota // no credential at all
	CarrierBasic                 // Authorization: Basic
	CarrierBearer                // Authorization: Bearer
	CarrierAPIKey                // x-api-key
	CarrierOther                 // an Authorization scheme warden does not know
)

// Carriers lists every Carrier, for callers that pre-register metrics.
var Carriers = [...]Carrier{CarrierNone, CarrierBasic, CarrierBearer, CarrierAPIKey, CarrierOther}

var carrierNames = [...]string{
	CarrierNone:   "none",
	CarrierBasic:  "basic",
	CarrierBearer: "bearer",
	CarrierAPIKey: "x-api-key",
	CarrierOther:  "other",
}

// String returns the carrier's name as WARDEN_AUTH_SCHEMES spells it
// ("basic", "bearer", "x-api-key"), or "none" and "other".
func (c Carrier) String() string {
	if int(c) < len(carrierNames) {
		return carrierNames[c]
	}
	return fmt.Sprintf("carrier(%d)", uint8(c))
}

// Schemes is a set of carriers a Checker accepts.
type Schemes uint8

// The schemes, one bit per carrier.
const (
	SchemeBasic  Schemes = 1 << CarrierBasic
	SchemeBearer Schemes = 1 << CarrierBearer
	SchemeAPIKey Schemes = 1 << CarrierAPIKey
)

// Has reports whether s accepts credentials in carrier c.
func (s Schemes) Has(c Carrier) bool { return s&(1<<c) != 0 && c != CarrierNone && c != CarrierOther }

// String lists the schemes as ParseSchemes reads them ("basic,bearer").
func (s Schemes) String() string {
	var b []byte
	for _, c := range [...]Carrier{CarrierBasic, CarrierBearer, CarrierAPIKey} {
		if s.Has(c) {
			if len(b) > 0 {
				b = append(b, ',')
			}
			b = append(b, c.String()...)
		}
	}
	return string(b)
}

// ParseSchemes reads a comma-separated list of carrier names ("basic",
// "bearer", "x-api-key"; case and spaces around names do not matter). An
// empty list, an empty item or an unknown name is an error.
func ParseSchemes(list string) (Schemes, error) {
	var s Schemes
	for item := range strings.SplitSeq(list, ",") {
		name := strings.ToLower(strings.TrimSpace(item))
		switch name {
		case "basic":
			s |= SchemeBasic
		case "bearer":
			s |= SchemeBearer
		case "x-api-key":
			s |= SchemeAPIKey
		case "":
			return 0, fmt.Errorf("%q has an empty item; want a comma-separated list of basic, bearer, x-api-key", list)
		default:
			return 0, fmt.Errorf("unknown scheme %q; want basic, bearer or x-api-key", strings.TrimSpace(item))
		}
	}
	return s, nil
}

// IsBearerToken reports whether a secret can travel as a Bearer token: RFC
// 6750 §2.1 allows only 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" /
// "/" ) *"=". A secret with other characters can never match one.
func IsBearerToken(secret string) bool {
	return validBearer([]byte(secret))
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
	schemes  Schemes
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
	case len(user)+1+len(password) > MaxCredentialBytes:
		return nil, ErrTooLong
	}
	return NewDigest(user, sha256.Sum256([]byte(password)))
}

// NewDigest returns a Checker for a user name and the SHA-256 digest of the
// password, for a configuration that never holds the password itself. The
// check is the same as New's: a Checker holds digests only.
func NewDigest(user string, digest [sha256.Size]byte) (*Checker, error) {
	if containsColon(user) {
		return nil, ErrColonInUser
	}
	return &Checker{
		schemes:  SchemeBasic,
		user:     sha256.Sum256([]byte(user)),
		password: digest,
	}, nil
}

// WithPrevious returns a copy of c that also accepts a previous password
// until the given time.
func (c *Checker) WithPrevious(password string, until time.Time) (*Checker, error) {
	switch {
	case password == "":
		return nil, ErrEmptyPassword
	case len(password)+1 > MaxCredentialBytes:
		return nil, ErrTooLong
	}
	return c.WithPreviousDigest(sha256.Sum256([]byte(password)), until)
}

// WithPreviousDigest is WithPrevious with the previous password's SHA-256
// digest.
func (c *Checker) WithPreviousDigest(digest [sha256.Size]byte, until time.Time) (*Checker, error) {
	if until.IsZero() {
		return nil, errors.New("the previous password needs a deadline")
	}
	c2 := *c
	c2.previous = digest
	c2.previousUntil = until
	return &c2, nil
}

// ParseDigest reads a SHA-256 digest written as 64 hex digits (lowercase,
// as sha256sum and warden hash print it; upper case is accepted too).
func ParseDigest(s string) ([sha256.Size]byte, error) {
	var d [sha256.Size]byte
	if len(s) != 2*sha256.Size {
		return d, fmt.Errorf("want the 64 hex digits of a SHA-256 digest, got %d characters", len(s))
	}
	if _, err := hex.Decode(d[:], []byte(s)); err != nil {
		return d, errors.New("want the 64 hex digits of a SHA-256 digest: not hex")
	}
	return d, nil
}

// WithSchemes returns a copy of c that accepts the secret in the given
// carriers instead of Basic alone. At least one is needed.
func (c *Checker) WithSchemes(s Schemes) (*Checker, error) {
	if s&(SchemeBasic|SchemeBearer|SchemeAPIKey) == 0 {
		return nil, errors.New("no authentication scheme")
	}
	c2 := *c
	c2.schemes = s
	return &c2, nil
}

// Schemes returns the carriers c accepts.
func (c *Checker) Schemes() Schemes { return c.schemes }

// Credentials are what a request offers to prove it knows the secret.
type Credentials struct {
	// Authorization is the Authorization header's value, and
	// HasAuthorization whether the request had that header at all (its
	// value may be empty).
	Authorization    []byte
	HasAuthorization bool
	// APIKey is the first x-api-key header's value, and APIKeys how many
	// x-api-key headers the request had.
	APIKey  []byte
	APIKeys int
}

// Verify checks a request's credentials. Precedence is fixed: when the
// request has an Authorization header, it alone decides (a Basic or Bearer
// credential, whichever c accepts; any other scheme is refused); x-api-key
// is looked at only when there is none. Two x-api-key headers, or an empty
// one, are Malformed. The carrier says where the credential was found.
//
// Every comparison with the secret goes through SHA-256 digests compared in
// constant time with both the current and the previous secret, so the time
// taken depends on the carrier and on the length of what the client sent,
// never on the secret's length, on how much of it a guess shares, or on
// which secret matched.
func (c *Checker) Verify(cr Credentials, now time.Time) (Result, Carrier) {
	if cr.HasAuthorization || len(cr.Authorization) > 0 {
		h := cr.Authorization
		if len(h) == 0 {
			return Missing, CarrierNone
		}
		if token, ok := schemeToken(h, "basic"); ok {
			if !c.schemes.Has(CarrierBasic) {
				return Scheme, CarrierBasic
			}
			return c.checkBasic(token, now), CarrierBasic
		}
		if token, ok := schemeToken(h, "bearer"); ok {
			if !c.schemes.Has(CarrierBearer) {
				return Scheme, CarrierBearer
			}
			if len(token) > MaxCredentialBytes || !validBearer(token) {
				return Malformed, CarrierBearer
			}
			return c.checkSecret(token, now), CarrierBearer
		}
		return Scheme, CarrierOther
	}
	if cr.APIKeys <= 0 {
		return Missing, CarrierNone
	}
	if !c.schemes.Has(CarrierAPIKey) {
		return Scheme, CarrierAPIKey
	}
	if cr.APIKeys > 1 || len(cr.APIKey) == 0 || len(cr.APIKey) > MaxCredentialBytes {
		return Malformed, CarrierAPIKey
	}
	return c.checkSecret(cr.APIKey, now), CarrierAPIKey
}

// Check validates the value of an Authorization header alone: Verify of a
// request with no x-api-key. Basic is "Basic " (scheme case-insensitive,
// RFC 7235 §2.1) followed by the standard base64 of "user:password", split
// at the first colon so that the password may hold colons and any UTF-8;
// Bearer, when c accepts it, is "Bearer " and the secret.
func (c *Checker) Check(authorization []byte, now time.Time) Result {
	r, _ := c.Verify(Credentials{Authorization: authorization}, now)
	return r
}

// checkBasic checks the base64 token of a Basic credential. Both digests
// are always computed and compared with every secret, and the comparisons
// are combined without short-circuit, so the time taken depends on the
// length of what the client sent but not on the secrets, on which part was
// wrong or on which secret matched. now decides whether the previous
// password is still accepted.
func (c *Checker) checkBasic(encoded []byte, now time.Time) Result {
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

// checkSecret checks a credential that is the secret alone (a Bearer token,
// an x-api-key), the same way checkBasic checks the password.
func (c *Checker) checkSecret(secret []byte, now time.Time) Result {
	sum := sha256.Sum256(secret)
	currentOK := subtle.ConstantTimeCompare(sum[:], c.password[:])
	previousOK := subtle.ConstantTimeCompare(sum[:], c.previous[:])
	if c.previousUntil.IsZero() || !now.Before(c.previousUntil) {
		previousOK = 0
	}
	r := subtle.ConstantTimeSelect(previousOK, int(Previous), int(WrongPassword))
	r = subtle.ConstantTimeSelect(currentOK, int(OK), r)
	return Result(r) //nolint:gosec // G115: r is one of the Result constants above
}

// basicCredentials returns the token after a case-insensitive "Basic" scheme
// and the spaces that follow it (RFC 7235 §2.1: 1*SP). ok is false when the
// scheme is not Basic.
func basicCredentials(h []byte) (token []byte, ok bool) {
	return schemeToken(h, "basic")
}

// schemeToken returns the token after a case-insensitive auth scheme (given
// in lower case) and the spaces that follow it (RFC 9110 §11.4: 1*SP). ok is
// false when the header names another scheme.
func schemeToken(h []byte, scheme string) (token []byte, ok bool) {
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

// validBearer reports whether b is an RFC 6750 §2.1 b64token:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func validBearer(b []byte) bool {
	i := 0
	for i < len(b) && b64tokenChar[b[i]] {
		i++
	}
	if i == 0 {
		return false
	}
	for i < len(b) && b[i] == '=' {
		i++
	}
	return i == len(b)
}

var b64tokenChar = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-._~+/" {
		t[c] = true
	}
	return t
}()

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
	return challenge("Basic", realm, `, charset="UTF-8"`)
}

// Challenges returns one WWW-Authenticate value for each Authorization
// scheme in s: Basic (RFC 7617) and Bearer (RFC 6750 §3), in that order.
// With x-api-key alone there is no Authorization scheme to name, but a 401
// must carry a challenge (RFC 9110 §11.6.1): it is `X-API-Key realm="…"`,
// which clients that do not know it ignore.
func Challenges(realm string, s Schemes) []string {
	var out []string
	if s.Has(CarrierBasic) {
		out = append(out, Challenge(realm))
	}
	if s.Has(CarrierBearer) {
		out = append(out, challenge("Bearer", realm, ""))
	}
	if len(out) == 0 {
		out = append(out, challenge("X-API-Key", realm, ""))
	}
	return out
}

func challenge(scheme, realm, params string) string {
	b := make([]byte, 0, len(scheme)+len(realm)+len(params)+16)
	b = append(b, scheme...)
	b = append(b, ` realm="`...)
	for i := range len(realm) {
		if realm[i] == '"' || realm[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, realm[i])
	}
	b = append(b, '"')
	b = append(b, params...)
	return string(b)
}

// Fingerprint returns a short, non-reversible identifier of a secret, so that
// operators can tell which secret each replica loaded without seeing it. It
// is FingerprintDigest of the secret's SHA-256, so a secret gives the same
// fingerprint whether it was configured itself or as its digest.
func Fingerprint(secret string) string {
	return FingerprintDigest(sha256.Sum256([]byte(secret)))
}

// FingerprintDigest is the fingerprint of a secret given by its SHA-256
// digest: a PBKDF2 derivation of the digest (slow on purpose, to make
// guessing a weak password from its fingerprint expensive) truncated to 48
// bits.
func FingerprintDigest(digest [sha256.Size]byte) string {
	key, err := pbkdf2.Key(sha256.New, string(digest[:]), []byte("github.com/paperspace/warden/fingerprint/v2"), fingerprintIterations, 6)
	if err != nil {
		// Only a FIPS 140-only mode refuses this derivation; say so rather
		// than print something that looks like a fingerprint.
		return "unavailable"
	}
	return hex.EncodeToString(key)
}

// fingerprintIterations costs about 2 ms at start-up on one core.
const fingerprintIterations = 10_000

// Weak-secret thresholds: a secret shorter than MinSecretBytes, or with an
// estimated strength below MinSecretBits, is called out at start.
const (
	MinSecretBytes = 16
	MinSecretBits  = 64
)

// EstimateBits is a simple estimate of a secret's strength: its length
// times log2 of the size of the character classes it uses (lower case 26,
// upper case 26, digits 10, other printable ASCII 33, anything else 128).
// It is generous to a random secret and to a long passphrase alike, and
// says nothing of a password that a dictionary holds: it catches the
// short and the narrow.
func EstimateBits(secret string) float64 {
	var lower, upper, digit, other, high bool
	for i := range len(secret) {
		switch c := secret[i]; {
		case 'a' <= c && c <= 'z':
			lower = true
		case 'A' <= c && c <= 'Z':
			upper = true
		case '0' <= c && c <= '9':
			digit = true
		case c < 0x80:
			other = true
		default:
			high = true
		}
	}
	pool := 0
	for _, class := range []struct {
		used bool
		size int
	}{{lower, 26}, {upper, 26}, {digit, 10}, {other, 33}, {high, 128}} {
		if class.used {
			pool += class.size
		}
	}
	if pool == 0 {
		return 0
	}
	return float64(len(secret)) * math.Log2(float64(pool))
}

// Weak reports whether a secret is too short or too narrow to stand up to
// guessing: fewer than MinSecretBytes bytes, or fewer than MinSecretBits by
// EstimateBits.
func Weak(secret string) bool {
	return len(secret) < MinSecretBytes || EstimateBits(secret) < MinSecretBits
}
