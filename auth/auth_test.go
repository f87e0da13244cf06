package auth

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

// now is the time checks run at; only the previous password cares.
var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func basic(userPass string) []byte {
	return []byte("Basic " + base64.StdEncoding.EncodeToString([]byte(userPass)))
}

func mustNew(t testing.TB, user, password string) *Checker {
	t.Helper()
	c, err := New(user, password)
	if err != nil {
		t.Fatalf("New(%q, …) = %v", user, err)
	}
	return c
}

func TestCheckAcceptsOnlyTheExactPair(t *testing.T) {
	t.Parallel()
	c := mustNew(t, "paperspace", "s3cret:with:colons ünïcødé")
	tests := []struct {
		name   string
		header []byte
		want   Result
	}{
		{"exact pair", basic("paperspace:s3cret:with:colons ünïcødé"), OK},
		{"scheme in lower case", []byte("basic " + base64.StdEncoding.EncodeToString([]byte("paperspace:s3cret:with:colons ünïcødé"))), OK},
		{"scheme in upper case", []byte("BASIC " + base64.StdEncoding.EncodeToString([]byte("paperspace:s3cret:with:colons ünïcødé"))), OK},
		{"several spaces after the scheme", []byte("Basic   " + base64.StdEncoding.EncodeToString([]byte("paperspace:s3cret:with:colons ünïcødé"))), OK},
		{"no header", nil, Missing},
		{"empty header", []byte(""), Missing},
		{"bearer token", []byte("Bearer abc"), Scheme},
		{"digest", []byte("Digest username=\"paperspace\""), Scheme},
		{"scheme glued to token", []byte("Basicabc"), Scheme},
		{"short garbage", []byte("Bas"), Scheme},
		{"scheme without token", []byte("Basic"), Malformed},
		{"scheme and spaces only", []byte("Basic   "), Malformed},
		{"not base64", []byte("Basic !!!!"), Malformed},
		{"base64 without colon", basic("paperspace"), Malformed},
		{"trailing garbage after token", append(basic("paperspace:s3cret:with:colons ünïcødé"), " x"...), Malformed},
		{"too long", basic("paperspace:" + strings.Repeat("a", MaxCredentialBytes)), Malformed},
		{"wrong user", basic("admin:s3cret:with:colons ünïcødé"), WrongUser},
		{"user differs in case", basic("Paperspace:s3cret:with:colons ünïcødé"), WrongUser},
		{"wrong user and password", basic("admin:nope"), WrongUser},
		{"empty user", basic(":s3cret:with:colons ünïcødé"), WrongUser},
		{"wrong password", basic("paperspace:nope"), WrongPassword},
		{"password prefix", basic("paperspace:s3cret"), WrongPassword},
		{"password with extra byte", basic("paperspace:s3cret:with:colons ünïcødé "), WrongPassword},
		{"empty password", basic("paperspace:"), WrongPassword},
		{"split at the first colon", basic("paperspace:s3cret:with:colons ünïcødé:"), WrongPassword},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := c.Check(tt.header, now); got != tt.want {
				t.Errorf("Check(%q) = %v, want %v", tt.header, got, tt.want)
			}
		})
	}
}

func TestCheckWantsStandardPaddedBase64(t *testing.T) {
	t.Parallel()
	// This pair encodes with '+', '/' and padding in standard base64.
	const pair = "paperspace:~~~??>"
	std := base64.StdEncoding.EncodeToString([]byte(pair))
	if !strings.ContainsAny(std, "+/") || !strings.HasSuffix(std, "=") {
		t.Fatalf("test pair encodes as %q: want '+' or '/' and padding", std)
	}
	c := mustNew(t, "paperspace", "~~~??>")
	tests := []struct {
		name, token string
		want        Result
	}{
		{"standard", std, OK},
		{"url-safe alphabet", base64.URLEncoding.EncodeToString([]byte(pair)), Malformed},
		{"no padding", base64.RawStdEncoding.EncodeToString([]byte(pair)), Malformed},
	}
	for _, tt := range tests {
		if got := c.Check([]byte("Basic "+tt.token), now); got != tt.want {
			t.Errorf("%s: Check = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestPreviousPasswordWorksUntilItsDeadline(t *testing.T) {
	t.Parallel()
	deadline := now.Add(time.Hour)
	c, err := mustNew(t, "paperspace", "new-secret").WithPrevious("old-secret", deadline)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		header []byte
		at     time.Time
		want   Result
	}{
		{"current before the deadline", basic("paperspace:new-secret"), now, OK},
		{"previous before the deadline", basic("paperspace:old-secret"), now, Previous},
		{"previous just before the deadline", basic("paperspace:old-secret"), deadline.Add(-time.Nanosecond), Previous},
		{"previous at the deadline", basic("paperspace:old-secret"), deadline, WrongPassword},
		{"previous after the deadline", basic("paperspace:old-secret"), deadline.Add(time.Hour), WrongPassword},
		{"current after the deadline", basic("paperspace:new-secret"), deadline.Add(time.Hour), OK},
		{"previous with the wrong user", basic("admin:old-secret"), now, WrongUser},
		{"neither", basic("paperspace:other"), now, WrongPassword},
	}
	for _, tt := range tests {
		if got := c.Check(tt.header, tt.at); got != tt.want {
			t.Errorf("%s: Check = %v, want %v", tt.name, got, tt.want)
		}
	}
	// The original checker is unchanged.
	if got := mustNew(t, "paperspace", "new-secret").Check(basic("paperspace:old-secret"), now); got != WrongPassword {
		t.Errorf("a checker without a previous password accepted it: %v", got)
	}
	if _, err := mustNew(t, "u", "p").WithPrevious("", deadline); err == nil {
		t.Error("an empty previous password was accepted")
	}
	if _, err := mustNew(t, "u", "p").WithPrevious("x", time.Time{}); err == nil {
		t.Error("a previous password without a deadline was accepted")
	}
	if !Previous.Accepted() || !OK.Accepted() || WrongPassword.Accepted() {
		t.Error("Accepted is wrong")
	}
}

func TestCheckAcceptsTheLongestAllowedPair(t *testing.T) {
	t.Parallel()
	user := "u"
	password := strings.Repeat("p", MaxCredentialBytes-len(user)-1)
	c := mustNew(t, user, password)
	if got := c.Check(basic(user+":"+password), now); got != OK {
		t.Fatalf("Check = %v, want %v", got, OK)
	}
}

func TestNewRejectsUnusableCredentials(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, user, password string
		want                 error
	}{
		{"empty password", "paperspace", "", ErrEmptyPassword},
		{"colon in user", "paper:space", "x", ErrColonInUser},
		{"too long", "paperspace", strings.Repeat("x", MaxCredentialBytes), ErrTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.user, tt.password); !errors.Is(err, tt.want) {
				t.Fatalf("New = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestNewKeepsNoCopyOfThePassword(t *testing.T) {
	t.Parallel()
	const password = "plaintext-must-not-be-kept"
	c := mustNew(t, "paperspace", password)
	raw := string(c.user[:]) + string(c.password[:])
	if strings.Contains(raw, password) {
		t.Fatal("Checker holds the password in clear")
	}
}

func TestChallengeQuotesTheRealm(t *testing.T) {
	t.Parallel()
	tests := []struct{ realm, want string }{
		{"warden", `Basic realm="warden", charset="UTF-8"`},
		{`my "model"`, `Basic realm="my \"model\"", charset="UTF-8"`},
		{`back\slash`, `Basic realm="back\\slash", charset="UTF-8"`},
	}
	for _, tt := range tests {
		if got := Challenge(tt.realm); got != tt.want {
			t.Errorf("Challenge(%q) = %s, want %s", tt.realm, got, tt.want)
		}
	}
}

func TestFingerprintIsShortStableAndDistinct(t *testing.T) {
	t.Parallel()
	a, b := Fingerprint("secret-a"), Fingerprint("secret-b")
	if a != Fingerprint("secret-a") {
		t.Fatal("fingerprint is not stable")
	}
	if a == b {
		t.Fatalf("two secrets share fingerprint %s", a)
	}
	if len(a) != 12 {
		t.Fatalf("fingerprint %q has %d characters, want 12", a, len(a))
	}
	if strings.Contains(a, "secret") {
		t.Fatalf("fingerprint %q shows the secret", a)
	}
}

func TestResultNames(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, r := range Results {
		name := r.String()
		if name == "" || seen[name] {
			t.Fatalf("result %d has empty or duplicate name %q", r, name)
		}
		seen[name] = true
	}
	if got := Result(200).String(); got != "result(200)" {
		t.Fatalf("unknown result name = %q", got)
	}
}

func TestCheckAllocatesNothing(t *testing.T) {
	c := mustNew(t, "paperspace", "secret")
	for _, h := range [][]byte{basic("paperspace:secret"), basic("paperspace:wrong"), []byte("Bearer x"), nil} {
		if n := testing.AllocsPerRun(100, func() { c.Check(h, now) }); n != 0 {
			t.Errorf("Check(%q) allocates %.0f times, want 0", h, n)
		}
	}
}

func FuzzCheck(f *testing.F) {
	const user, password, previous = "paperspace", "pa:ss wörd", "old:one"
	c, err := mustNew(f, user, password).WithPrevious(previous, now.Add(time.Minute))
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		string(basic(user + ":" + previous)),
		"", "Basic", "Basic ", "basic cGFwZXJzcGFjZTpwYTpzcyB3w7ZyZA==",
		string(basic(user + ":" + password)), string(basic(user + ":" + password + "x")),
		"Basic dXNlcjpwYXNz",                 // RFC 7617 style example
		"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", // RFC 7617 §2: Aladdin:open sesame
		"Bearer x", "Basic =", "Basic ====", "BASIC\x00", "Basic \xff\xfe",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, header []byte) {
		got := c.Check(header, now)
		// Only the exact pair, in some accepted spelling, may pass.
		encoded, isBasic := basicCredentials(header)
		decoded, err := base64.StdEncoding.DecodeString(string(encoded))
		exact := isBasic && err == nil && string(decoded) == user+":"+password
		exactPrevious := isBasic && err == nil && string(decoded) == user+":"+previous
		if (got == OK) != exact || (got == Previous) != exactPrevious {
			t.Fatalf("Check(%q) = %v, but exact pair = %v, previous pair = %v", header, got, exact, exactPrevious)
		}
		if got > WrongPassword {
			t.Fatalf("Check(%q) = unknown result %d", header, got)
		}
	})
}

func mustSchemes(t testing.TB, c *Checker, list string) *Checker {
	t.Helper()
	s, err := ParseSchemes(list)
	if err != nil {
		t.Fatal(err)
	}
	c, err = c.WithSchemes(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestVerifyEveryCarrierWithItsPrecedence(t *testing.T) {
	t.Parallel()
	const secret = "tok-EN_1.2~3+4/5=="
	all := mustSchemes(t, mustNew(t, "paperspace", secret), "basic, Bearer,x-api-key")
	auth := func(h string) Credentials { return Credentials{Authorization: []byte(h), HasAuthorization: true} }
	key := func(v string, n int) Credentials { return Credentials{APIKey: []byte(v), APIKeys: n} }
	tests := []struct {
		name    string
		cr      Credentials
		want    Result
		carrier Carrier
	}{
		{"nothing", Credentials{}, Missing, CarrierNone},
		{"basic", auth(string(basic("paperspace:" + secret))), OK, CarrierBasic},
		{"basic, wrong password", auth(string(basic("paperspace:x"))), WrongPassword, CarrierBasic},
		{"bearer", auth("Bearer " + secret), OK, CarrierBearer},
		{"bearer, scheme in any case", auth("bEARER " + secret), OK, CarrierBearer},
		{"bearer, several spaces", auth("Bearer   " + secret), OK, CarrierBearer},
		{"bearer, wrong token", auth("Bearer nope"), WrongPassword, CarrierBearer},
		{"bearer, token with the user name", auth("Bearer paperspace:" + secret), Malformed, CarrierBearer},
		{"bearer, prefix of the secret", auth("Bearer tok-EN"), WrongPassword, CarrierBearer},
		{"bearer without token", auth("Bearer"), Malformed, CarrierBearer},
		{"bearer and spaces only", auth("Bearer   "), Malformed, CarrierBearer},
		{"bearer, not token syntax", auth("Bearer a b"), Malformed, CarrierBearer},
		{"bearer, '=' inside", auth("Bearer a=b"), Malformed, CarrierBearer},
		{"bearer, too long", auth("Bearer " + strings.Repeat("a", MaxCredentialBytes+1)), Malformed, CarrierBearer},
		{"bearer glued to token", auth("Bearer" + secret), Scheme, CarrierOther},
		{"digest", auth(`Digest username="paperspace"`), Scheme, CarrierOther},
		{"x-api-key", key(secret, 1), OK, CarrierAPIKey},
		{"x-api-key, wrong", key("nope", 1), WrongPassword, CarrierAPIKey},
		{"x-api-key, with the scheme", key("Bearer "+secret, 1), WrongPassword, CarrierAPIKey},
		{"x-api-key twice", key(secret, 2), Malformed, CarrierAPIKey},
		{"x-api-key empty", key("", 1), Malformed, CarrierAPIKey},
		{"x-api-key too long", key(strings.Repeat("a", MaxCredentialBytes+1), 1), Malformed, CarrierAPIKey},
		{"Authorization decides over x-api-key", Credentials{Authorization: []byte("Bearer nope"), HasAuthorization: true, APIKey: []byte(secret), APIKeys: 1}, WrongPassword, CarrierBearer},
		{"an empty Authorization decides too", Credentials{HasAuthorization: true, APIKey: []byte(secret), APIKeys: 1}, Missing, CarrierNone},
		{"an unknown scheme decides too", Credentials{Authorization: []byte("Digest x"), HasAuthorization: true, APIKey: []byte(secret), APIKeys: 1}, Scheme, CarrierOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, c := all.Verify(tt.cr, now)
			if r != tt.want || c != tt.carrier {
				t.Errorf("Verify = %v, %v; want %v, %v", r, c, tt.want, tt.carrier)
			}
		})
	}
}

func TestVerifyRefusesCarriersNotEnabled(t *testing.T) {
	t.Parallel()
	const secret = "s3cret"
	cr := map[Carrier]Credentials{
		CarrierBasic:  {Authorization: basic("paperspace:" + secret), HasAuthorization: true},
		CarrierBearer: {Authorization: []byte("Bearer " + secret), HasAuthorization: true},
		CarrierAPIKey: {APIKey: []byte(secret), APIKeys: 1},
	}
	for _, list := range []string{"basic", "bearer", "x-api-key", "basic,bearer", "basic,x-api-key", "bearer,x-api-key"} {
		c := mustSchemes(t, mustNew(t, "paperspace", secret), list)
		for carrier, creds := range cr {
			r, got := c.Verify(creds, now)
			want := Scheme
			if c.Schemes().Has(carrier) {
				want = OK
			}
			if r != want || got != carrier {
				t.Errorf("schemes %s, %v: Verify = %v, %v; want %v, %v", list, carrier, r, got, want, carrier)
			}
		}
	}
	// The default is Basic alone, and Check is Verify of Authorization.
	c := mustNew(t, "paperspace", secret)
	if c.Schemes() != SchemeBasic || c.Check([]byte("Bearer "+secret), now) != Scheme {
		t.Error("a new checker accepts more than Basic")
	}
	if _, err := c.WithSchemes(0); err == nil {
		t.Error("a checker without schemes was made")
	}
}

func TestVerifyAcceptsThePreviousSecretInEveryCarrier(t *testing.T) {
	t.Parallel()
	deadline := now.Add(time.Hour)
	c, err := mustSchemes(t, mustNew(t, "paperspace", "new"), "basic,bearer,x-api-key").WithPrevious("old", deadline)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		cr   Credentials
		at   time.Time
		want Result
	}{
		{Credentials{Authorization: []byte("Bearer old"), HasAuthorization: true}, now, Previous},
		{Credentials{Authorization: []byte("Bearer old"), HasAuthorization: true}, deadline, WrongPassword},
		{Credentials{Authorization: []byte("Bearer new"), HasAuthorization: true}, deadline, OK},
		{Credentials{APIKey: []byte("old"), APIKeys: 1}, now, Previous},
		{Credentials{APIKey: []byte("old"), APIKeys: 1}, deadline.Add(time.Second), WrongPassword},
		{Credentials{APIKey: []byte("new"), APIKeys: 1}, now, OK},
	} {
		if r, _ := c.Verify(tt.cr, tt.at); r != tt.want {
			t.Errorf("Verify(%q / %q at %v) = %v, want %v", tt.cr.Authorization, tt.cr.APIKey, tt.at.Sub(now), r, tt.want)
		}
	}
}

func TestParseSchemes(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		want Schemes
		ok   bool
	}{
		{"basic", SchemeBasic, true},
		{"bearer", SchemeBearer, true},
		{"x-api-key", SchemeAPIKey, true},
		{" Basic , BEARER,X-Api-Key ", SchemeBasic | SchemeBearer | SchemeAPIKey, true},
		{"bearer,bearer", SchemeBearer, true},
		{"", 0, false},
		{"basic,", 0, false},
		{"basic,,bearer", 0, false},
		{"digest", 0, false},
		{"apikey", 0, false},
	} {
		got, err := ParseSchemes(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseSchemes(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
	if s := (SchemeAPIKey | SchemeBasic).String(); s != "basic,x-api-key" {
		t.Errorf("String = %q", s)
	}
	for _, c := range Carriers {
		if c.String() == "" || strings.HasPrefix(c.String(), "carrier(") {
			t.Errorf("carrier %d has no name", c)
		}
	}
}

func TestIsBearerToken(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"abc": true, "A-Z_a.z~0+9/": true, "abc==": true, "a=": true,
		"": false, "=": false, "a=b": false, "a b": false, "a:b": false, "ünï": false, "a\"b": false,
	} {
		if got := IsBearerToken(s); got != want {
			t.Errorf("IsBearerToken(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestChallengesNameEachAuthorizationScheme(t *testing.T) {
	t.Parallel()
	basicOnly := []string{`Basic realm="w\"x", charset="UTF-8"`}
	for _, tt := range []struct {
		schemes Schemes
		want    []string
	}{
		{SchemeBasic, basicOnly},
		{SchemeBasic | SchemeAPIKey, basicOnly},
		{SchemeBasic | SchemeBearer, []string{basicOnly[0], `Bearer realm="w\"x"`}},
		{SchemeBearer | SchemeAPIKey, []string{`Bearer realm="w\"x"`}},
		{SchemeAPIKey, []string{`X-API-Key realm="w\"x"`}},
	} {
		if got := Challenges(`w"x`, tt.schemes); strings.Join(got, "|") != strings.Join(tt.want, "|") {
			t.Errorf("Challenges(%v) = %q, want %q", tt.schemes, got, tt.want)
		}
	}
}

func TestVerifyAllocatesNothing(t *testing.T) {
	c := mustSchemes(t, mustNew(t, "paperspace", "secret"), "basic,bearer,x-api-key")
	for _, cr := range []Credentials{
		{Authorization: basic("paperspace:secret"), HasAuthorization: true},
		{Authorization: []byte("Bearer secret"), HasAuthorization: true},
		{Authorization: []byte("Bearer wrong"), HasAuthorization: true},
		{APIKey: []byte("secret"), APIKeys: 1},
		{},
	} {
		if n := testing.AllocsPerRun(100, func() { c.Verify(cr, now) }); n != 0 {
			t.Errorf("Verify(%q / %q) allocates %.0f times, want 0", cr.Authorization, cr.APIKey, n)
		}
	}
}

func FuzzVerify(f *testing.F) {
	const user, password, previous = "paperspace", "pa-ss_w0rd", "old.one"
	c, err := mustSchemes(f, mustNew(f, user, password), "basic,bearer,x-api-key").WithPrevious(previous, now.Add(time.Minute))
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("Bearer "+password), true, []byte(""), 0)
	f.Add([]byte(""), false, []byte(previous), 1)
	f.Add([]byte(""), false, []byte(password), 2)
	f.Add([]byte("bearer  "+previous+"=="), true, []byte(password), 1)
	f.Add(basic(user+":"+password), true, []byte(password), 1)
	f.Fuzz(func(t *testing.T, authorization []byte, has bool, key []byte, keys int) {
		cr := Credentials{Authorization: authorization, HasAuthorization: has, APIKey: key, APIKeys: keys}
		r, carrier := c.Verify(cr, now)
		// What may pass, worked out the slow way.
		var secret string
		matched := false
		switch {
		case has || len(authorization) > 0:
			if tok, ok := basicCredentials(authorization); ok && len(authorization) > 0 {
				d, err := base64.StdEncoding.DecodeString(string(tok))
				if u, p, found := strings.Cut(string(d), ":"); err == nil && found && u == user {
					secret, matched = p, true
				}
			} else if tok, ok := schemeToken(authorization, "bearer"); ok && len(authorization) > 0 {
				secret, matched = string(tok), true
			}
		case keys == 1:
			secret, matched = string(key), true
		}
		wantOK := matched && secret == password
		wantPrevious := matched && secret == previous
		if (r == OK) != wantOK || (r == Previous) != wantPrevious {
			t.Fatalf("Verify(%+v) = %v via %v; want ok %v, previous %v", cr, r, carrier, wantOK, wantPrevious)
		}
		if r > WrongPassword || carrier > CarrierOther {
			t.Fatalf("Verify(%+v) = unknown %d, %d", cr, r, carrier)
		}
	})
}

func TestNewDigestChecksLikeNew(t *testing.T) {
	t.Parallel()
	digest, err := ParseDigest(sha256Hex("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewDigest("paperspace", digest)
	if err != nil {
		t.Fatal(err)
	}
	c, _ = c.WithSchemes(SchemeBasic | SchemeBearer)
	c, err = c.WithPreviousDigest(mustDigest(t, sha256Hex("old")), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for h, want := range map[string]Result{
		string(basic("paperspace:s3cret")): OK,
		"Bearer s3cret":                    OK,
		"Bearer old":                       Previous,
		string(basic("paperspace:nope")):   WrongPassword,
	} {
		if got := c.Check([]byte(h), now); got != want {
			t.Errorf("Check(%q) = %v, want %v", h, got, want)
		}
	}
	if Fingerprint("s3cret") != FingerprintDigest(digest) {
		t.Error("a secret and its digest have different fingerprints")
	}
	for _, bad := range []string{"", "abc", sha256Hex("x")[:63], sha256Hex("x") + "0", strings.Repeat("g", 64)} {
		if _, err := ParseDigest(bad); err == nil {
			t.Errorf("ParseDigest(%q) accepted", bad)
		}
	}
	if _, err := ParseDigest(strings.ToUpper(sha256Hex("x"))); err != nil {
		t.Errorf("upper case refused: %v", err)
	}
	if _, err := NewDigest("a:b", digest); !errors.Is(err, ErrColonInUser) {
		t.Errorf("colon in user: %v", err)
	}
	if _, err := c.WithPreviousDigest(digest, time.Time{}); err == nil {
		t.Error("a previous digest without a deadline was accepted")
	}
}

func TestWeakSecrets(t *testing.T) {
	t.Parallel()
	for secret, weak := range map[string]bool{
		"":                                   true,
		"hunter2":                            true,
		"aaaaaaaaaaaaaaa":                    true,  // 15 bytes
		"aaaaaaaaaaaaaaaa":                   false, // 16 lower-case letters: 16 × log2(26) = 75 bits by the estimate
		"0123456789012345":                   true,  // 16 digits: 53 bits
		"correct horse battery staple":       false, // 28 × log2(59) = 165
		"kcvJQbSEfixjrjLWYdyDnVYqGNWfLjD6A2": false,
		"12345678901234567890":               false, // 20 digits: 66 bits
	} {
		if got := Weak(secret); got != weak {
			t.Errorf("Weak(%q) = %v (%.1f bits), want %v", secret, got, EstimateBits(secret), weak)
		}
	}
}

func sha256Hex(s string) string {
	d := sha256.Sum256([]byte(s))
	return hex.EncodeToString(d[:])
}

func mustDigest(t *testing.T, s string) [sha256.Size]byte {
	t.Helper()
	d, err := ParseDigest(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
