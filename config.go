package main

import (
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/rs/zerolog"

	"github.com/paperspace/warden/auth"
	"github.com/paperspace/warden/proxy"
)

// envPrefix starts the name of every variable warden reads.
const envPrefix = "WARDEN_"

// config is warden's whole configuration, read from the environment only.
// The README's table lists the same variables; TestREADMEListsEveryVariable
// keeps the two in step.
type config struct {
	// Listen is the address the proxy serves clients on.
	Listen string `env:"LISTEN" envDefault:":8080"`
	// Upstream is the model server that requests go to: http://host:port.
	Upstream string `env:"UPSTREAM" envDefault:"http://127.0.0.1:8000"`
	// AdminListen serves /healthz, /readyz and /metrics.
	AdminListen string `env:"ADMIN_LISTEN" envDefault:":9901"`
	// Mode is public or protected; empty chooses protected when a password
	// is set.
	Mode string `env:"MODE"`
	// Username is the Basic auth user name.
	Username string `env:"USERNAME" envDefault:"paperspace"`
	// Password is the secret, read once at start.
	Password string `env:"PASSWORD"`
	// PasswordFile holds the secret; read once at start.
	PasswordFile string `env:"PASSWORD_FILE"`
	// PreviousPassword is also accepted until PreviousPasswordUntil, so that
	// a rolling redeploy with a new secret causes no 401s.
	PreviousPassword string `env:"PREVIOUS_PASSWORD"`
	// PreviousPasswordFile holds the previous secret.
	PreviousPasswordFile string `env:"PREVIOUS_PASSWORD_FILE"`
	// The secrets may be given as their SHA-256 digests instead (hex), so
	// that no configuration holds them in plain text.
	PasswordSHA256             string `env:"PASSWORD_SHA256"`
	PasswordSHA256File         string `env:"PASSWORD_SHA256_FILE"`
	PreviousPasswordSHA256     string `env:"PREVIOUS_PASSWORD_SHA256"`
	PreviousPasswordSHA256File string `env:"PREVIOUS_PASSWORD_SHA256_FILE"`
	// PreviousPasswordUntil is when the previous secret stops working.
	PreviousPasswordUntil time.Time `env:"PREVIOUS_PASSWORD_UNTIL"`
	// ChildUser is the identity warden, started as root, gives the model
	// server in wrapper mode; RunAs is the one warden drops to.
	ChildUser string `env:"CHILD_USER"`
	RunAs     string `env:"RUN_AS"`
	// AuthSchemes lists the carriers of the secret that warden accepts:
	// basic, bearer, x-api-key.
	AuthSchemes string `env:"AUTH_SCHEMES" envDefault:"basic"`
	// Realm is named in the WWW-Authenticate challenge.
	Realm string `env:"REALM" envDefault:"warden"`
	// UpstreamTimeout bounds connecting and the wait for response headers.
	UpstreamTimeout time.Duration `env:"UPSTREAM_TIMEOUT" envDefault:"5m"`
	// UpstreamIdleTimeout closes idle upstream keep-alive connections,
	// before the upstream does (uvicorn: 5 s, gunicorn: 2 s).
	UpstreamIdleTimeout time.Duration `env:"UPSTREAM_IDLE_TIMEOUT" envDefault:"1s"`
	// UpstreamMaxConns limits upstream connections in use at once.
	UpstreamMaxConns int `env:"UPSTREAM_MAX_CONNS" envDefault:"1024"`
	// DrainDelay keeps serving after SIGTERM while /readyz says 503.
	DrainDelay time.Duration `env:"DRAIN_DELAY" envDefault:"5s"`
	// ShutdownTimeout is the time in-flight requests get after the drain.
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"30s"`
	// ReadHeaderTimeout bounds the time a client takes to send its headers.
	ReadHeaderTimeout time.Duration `env:"READ_HEADER_TIMEOUT" envDefault:"10s"`
	// IdleTimeout closes client keep-alive connections idle this long.
	IdleTimeout time.Duration `env:"IDLE_TIMEOUT" envDefault:"90s"`
	// MaxConns limits the client connections served at once (503 past it).
	MaxConns int `env:"MAX_CONNS" envDefault:"4096"`
	// MaxHeaderBytes limits request line plus headers (431 past it).
	MaxHeaderBytes int `env:"MAX_HEADER_BYTES" envDefault:"32768"`
	// MaxBodyBytes limits request bodies (413 past it); 0 means no limit.
	MaxBodyBytes int64 `env:"MAX_BODY_BYTES" envDefault:"0"`
	// AuthFailureLimit is the number of failed logins from one client within
	// AuthFailureWindow after which it gets 429; 0 turns throttling off.
	AuthFailureLimit int `env:"AUTH_FAILURE_LIMIT" envDefault:"20"`
	// AuthFailureWindow is the window failed logins are counted in.
	AuthFailureWindow time.Duration `env:"AUTH_FAILURE_WINDOW" envDefault:"1m"`
	// TrustedProxies are the peers whose X-Forwarded-For is believed when
	// deciding who the client is.
	TrustedProxies []string `env:"TRUSTED_PROXIES" envDefault:"127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7" envSeparator:","`
	// DenyPaths are path prefixes answered 403 even with valid credentials.
	DenyPaths []string `env:"DENY_PATHS" envSeparator:","`
	// SSEHeartbeat sends ": keep-alive" on an event stream silent this long;
	// 0 turns it off.
	SSEHeartbeat time.Duration `env:"SSE_HEARTBEAT" envDefault:"0s"`
	// ServerTiming adds a Server-Timing header to proxied responses.
	ServerTiming bool `env:"SERVER_TIMING" envDefault:"true"`
	// TLSCertFile and TLSKeyFile turn on TLS on the proxy listener.
	TLSCertFile string `env:"TLS_CERT_FILE"`
	TLSKeyFile  string `env:"TLS_KEY_FILE"`
	// AccessLog writes one line per request at info level.
	AccessLog bool `env:"ACCESS_LOG" envDefault:"true"`
	// LogLevel is a zerolog level: trace, debug, info, warn, error.
	LogLevel string `env:"LOG_LEVEL" envDefault:"info"`
	// LogFormat is json or console.
	LogFormat string `env:"LOG_FORMAT" envDefault:"json"`
}

const (
	modePublic    = "public"
	modeProtected = "protected"
)

// settings is what warden runs with: the configuration as read, and what
// complete made of it, once.
type settings struct {
	config
	mode string
	// proxy is the proxy's configuration, its credential checker included;
	// serve adds the logger and the metrics.
	proxy proxy.Config
	tls   *tls.Config
	// The secrets themselves live in the checker only; the start line shows
	// where they came from and their fingerprints.
	secretSource, fingerprint string
	// wrapper: warden starts the model server; privileges: who it and
	// warden run as (privsep.go).
	wrapper    bool
	privileges privileges
	// weakSecrets names the sources of the secrets found weak.
	weakSecrets                         []string
	schemes                             auth.Schemes
	previousSource, previousFingerprint string
	previousUntil                       time.Time // zero without a previous secret
	logLevel                            zerolog.Level
	unknownEnvVars                      []string
}

// loadConfig reads the configuration from environ, checks it (validate),
// and turns it into what warden runs with (complete). It reports every
// problem at once, each naming its variable.
func loadConfig(environ map[string]string) (*settings, error) {
	return loadConfigFor(environ, false)
}

// loadConfigFor is loadConfig for warden in wrapper mode or not, which
// decides what WARDEN_CHILD_USER may do.
func loadConfigFor(environ map[string]string, wrapper bool) (*settings, error) {
	var c config
	var problems []error
	if err := env.ParseWithOptions(&c, env.Options{Prefix: envPrefix, Environment: environ}); err != nil {
		problems = append(problems, envProblems(err)...)
	}
	problems = append(problems, c.validate(environ)...)
	s, more := c.complete(environ)
	problems = append(problems, more...)
	if s != nil {
		s.wrapper = wrapper
		var pp []error
		s.privileges, pp = planPrivileges(c.ChildUser, c.RunAs, wrapper, os.Geteuid())
		problems = append(problems, pp...)
	}
	if len(problems) > 0 {
		return nil, &configError{problems}
	}
	return s, nil
}

// configError lists every configuration problem in one message.
type configError struct{ problems []error }

func (e *configError) Error() string {
	var b strings.Builder
	b.WriteString("invalid configuration:")
	for _, p := range e.problems {
		b.WriteString("\n  ")
		b.WriteString(p.Error())
	}
	return b.String()
}

func (e *configError) Unwrap() []error { return e.problems }

// envProblems turns env's errors into messages that name the variable.
func envProblems(err error) []error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return []error{err}
	}
	out := make([]error, 0, len(agg.Errors))
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			out = append(out, fmt.Errorf("%s: %w", envName(pe.Name), pe.Err))
			continue
		}
		out = append(out, e)
	}
	return out
}

// envName returns the variable read into the config field with that name.
func envName(field string) string {
	f, ok := reflect.TypeFor[config]().FieldByName(field)
	if !ok {
		return field
	}
	return envPrefix + f.Tag.Get("env")
}

// envNames lists the variables warden reads, with their defaults.
func envNames() map[string]string {
	t := reflect.TypeFor[config]()
	names := map[string]string{}
	for i := range t.NumField() {
		f := t.Field(i)
		if tag := f.Tag.Get("env"); tag != "" && tag != "-" {
			names[envPrefix+tag] = f.Tag.Get("envDefault")
		}
	}
	return names
}

// validate checks every setting on its own and against the others, and
// reports every problem, each naming its variable. It reads no file and
// changes nothing: complete does that.
func (c *config) validate(environ map[string]string) []error {
	var problems []error
	bad := func(name, format string, args ...any) {
		problems = append(problems, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
	}

	for _, l := range []struct{ name, addr string }{
		{"WARDEN_LISTEN", c.Listen}, {"WARDEN_ADMIN_LISTEN", c.AdminListen},
	} {
		if _, _, err := net.SplitHostPort(l.addr); err != nil {
			bad(l.name, "want host:port or :port, got %q", l.addr)
		}
	}
	if _, port, _ := net.SplitHostPort(c.Listen); c.Listen == c.AdminListen && port != "0" {
		bad("WARDEN_ADMIN_LISTEN", "must differ from WARDEN_LISTEN (both %q)", c.Listen)
	}
	if _, err := upstreamAddr(c.Upstream); err != nil {
		bad("WARDEN_UPSTREAM", "%v", err)
	}

	for _, d := range []struct {
		name string
		v    time.Duration
		zero bool // zero allowed
	}{
		{"WARDEN_UPSTREAM_TIMEOUT", c.UpstreamTimeout, false},
		{"WARDEN_UPSTREAM_IDLE_TIMEOUT", c.UpstreamIdleTimeout, false},
		{"WARDEN_DRAIN_DELAY", c.DrainDelay, true},
		{"WARDEN_SHUTDOWN_TIMEOUT", c.ShutdownTimeout, true},
		{"WARDEN_READ_HEADER_TIMEOUT", c.ReadHeaderTimeout, false},
		{"WARDEN_IDLE_TIMEOUT", c.IdleTimeout, false},
	} {
		if d.v < 0 || (d.v == 0 && !d.zero) {
			bad(d.name, "must be a positive duration such as 30s, got %s", d.v)
		}
	}
	if c.UpstreamMaxConns < 1 {
		bad("WARDEN_UPSTREAM_MAX_CONNS", "must be at least 1, got %d", c.UpstreamMaxConns)
	}
	if c.MaxConns < 1 {
		bad("WARDEN_MAX_CONNS", "must be at least 1, got %d", c.MaxConns)
	}
	if c.MaxHeaderBytes < 4096 || c.MaxHeaderBytes > 1<<20 {
		bad("WARDEN_MAX_HEADER_BYTES", "must be between 4096 and 1048576, got %d", c.MaxHeaderBytes)
	}
	if c.MaxBodyBytes < 0 {
		bad("WARDEN_MAX_BODY_BYTES", "must be 0 (no limit) or positive, got %d", c.MaxBodyBytes)
	}
	if _, err := logLevel(c.LogLevel); err != nil {
		bad("WARDEN_LOG_LEVEL", "want trace, debug, info, warn, error, fatal, panic or disabled, got %q", c.LogLevel)
	}
	if c.LogFormat != "json" && c.LogFormat != "console" {
		bad("WARDEN_LOG_FORMAT", "want json or console, got %q", c.LogFormat)
	}
	if c.Realm == "" {
		bad("WARDEN_REALM", "must not be empty")
	}
	if _, err := auth.ParseSchemes(c.AuthSchemes); err != nil {
		bad("WARDEN_AUTH_SCHEMES", "%v", err)
	}
	if why := usernameProblem(c.Username); why != "" {
		bad("WARDEN_USERNAME", "%s", why)
	}

	if c.AuthFailureLimit < 0 {
		bad("WARDEN_AUTH_FAILURE_LIMIT", "must be 0 (off) or positive, got %d", c.AuthFailureLimit)
	}
	if c.AuthFailureWindow <= 0 {
		bad("WARDEN_AUTH_FAILURE_WINDOW", "must be a positive duration such as 1m, got %s", c.AuthFailureWindow)
	}
	if err := proxy.CheckDenyPaths(c.DenyPaths); err != nil {
		bad("WARDEN_DENY_PATHS", "%v", err)
	}
	if c.SSEHeartbeat < 0 {
		bad("WARDEN_SSE_HEARTBEAT", "must be 0 (off) or a positive duration such as 15s, got %s", c.SSEHeartbeat)
	}
	for _, s := range c.trustedProxies(environ) {
		if _, err := parsePrefix(s); err != nil {
			bad("WARDEN_TRUSTED_PROXIES", "%q is not a CIDR such as 10.0.0.0/8 or an address", s)
		}
	}
	problems = append(problems, c.validateSecrets(environ)...)
	problems = append(problems, validateTLS(environ)...)
	// Go's memory limit (main.go, limitGoMemory) would ignore a bad share
	// silently.
	if v, ok := environ["AUTOMEMLIMIT"]; ok && v != "off" {
		if r, err := strconv.ParseFloat(v, 64); err != nil || !(r > 0 && r <= 1) {
			bad("AUTOMEMLIMIT", "want off, or the share of the container's memory limit that Go may use, in (0, 1] such as 0.9; got %q", v)
		}
	}
	return problems
}

// bearerProblems reports a secret that no Bearer token can carry: RFC 6750
// allows only letters, digits, "-._~+/" and trailing "=", so with bearer
// enabled such a secret could never match. The message names where the
// secret came from, never the secret. A secret given as its digest cannot
// be checked.
func bearerProblems(secrets ...givenSecret) []error {
	var problems []error
	const why = "WARDEN_AUTH_SCHEMES: bearer is enabled, but the secret in %s has characters a Bearer token cannot carry (RFC 6750: letters, digits, - . _ ~ + / and trailing =); use such a secret, or leave bearer out"
	for _, g := range secrets {
		if g.plain != "" && !auth.IsBearerToken(g.plain) {
			problems = append(problems, fmt.Errorf(why, g.source))
		}
	}
	return problems
}

// validateSecrets checks which secrets are given and how, against
// WARDEN_MODE. No message here quotes a secret.
func (c *config) validateSecrets(environ map[string]string) []error {
	var problems []error
	set, source := secretGiven(environ, "WARDEN_PASSWORD", &problems)
	previousSet, previousSource := secretGiven(environ, "WARDEN_PREVIOUS_PASSWORD", &problems)
	_, untilSet := environ["WARDEN_PREVIOUS_PASSWORD_UNTIL"]
	switch {
	case previousSet && !set:
		problems = append(problems, fmt.Errorf("%s: needs a current secret in WARDEN_PASSWORD, WARDEN_PASSWORD_FILE, WARDEN_PASSWORD_SHA256 or WARDEN_PASSWORD_SHA256_FILE", previousSource))
	case previousSet && !untilSet:
		problems = append(problems, errors.New("WARDEN_PREVIOUS_PASSWORD_UNTIL: required with a previous secret, as an RFC 3339 time such as 2026-12-01T00:00:00Z"))
	case untilSet && !previousSet:
		problems = append(problems, errors.New("WARDEN_PREVIOUS_PASSWORD_UNTIL: set without a previous secret (WARDEN_PREVIOUS_PASSWORD, or its _FILE, _SHA256 or _SHA256_FILE form)"))
	}
	switch c.Mode {
	case "":
	case modeProtected:
		if !set {
			problems = append(problems, errors.New("WARDEN_MODE: protected needs WARDEN_PASSWORD, WARDEN_PASSWORD_FILE, WARDEN_PASSWORD_SHA256 or WARDEN_PASSWORD_SHA256_FILE"))
		}
	case modePublic:
		if set {
			problems = append(problems, fmt.Errorf("WARDEN_MODE: public conflicts with %s; unset one of them", source))
		}
	default:
		problems = append(problems, fmt.Errorf("WARDEN_MODE: want public or protected, got %q", c.Mode))
	}
	return problems
}

// secretForms are the ways a secret may be given, as suffixes of its
// variable's name: itself, a file holding it, its SHA-256 digest (hex), a
// file holding that.
var secretForms = [...]string{"", "_FILE", "_SHA256", "_SHA256_FILE"}

// secretGiven reports whether a secret is given, in one of the forms of the
// variable name, and which; a problem if several are, or if the one given
// is set but empty.
func secretGiven(environ map[string]string, name string, problems *[]error) (set bool, source string) {
	var given []string
	for _, form := range secretForms {
		if _, ok := environ[name+form]; ok {
			given = append(given, name+form)
		}
	}
	switch len(given) {
	case 0:
		return false, ""
	case 1:
	default:
		*problems = append(*problems, fmt.Errorf("%s: set one of %s, %s_FILE, %s_SHA256, %s_SHA256_FILE, not several", strings.Join(given, " and "), name, name, name, name))
		return true, given[len(given)-1]
	}
	if environ[given[0]] == "" {
		// An empty secret must not silently make the endpoint public.
		*problems = append(*problems, fmt.Errorf("%s: is set but empty", given[0]))
	}
	return true, given[0]
}

// usernameProblem says what is wrong with a Basic user name, or "".
func usernameProblem(u string) string {
	switch {
	case u == "":
		return "must not be empty"
	case strings.Contains(u, ":"):
		return "must not contain a colon (RFC 7617)"
	}
	return ""
}

// trustedProxies lists WARDEN_TRUSTED_PROXIES's entries; set but empty
// trusts no one (env would apply the default).
func (c *config) trustedProxies(environ map[string]string) []string {
	if v, ok := environ["WARDEN_TRUSTED_PROXIES"]; ok && strings.TrimSpace(v) == "" {
		return nil
	}
	var out []string
	for _, s := range c.TrustedProxies {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func logLevel(s string) (zerolog.Level, error) {
	lvl, err := zerolog.ParseLevel(s)
	if err == nil && lvl == zerolog.NoLevel {
		err = errors.New("no level")
	}
	return lvl, err
}

// complete turns the configuration into what warden runs with: it reads the
// secrets and the TLS key pair, once, and builds the credential checker and
// the proxy's configuration, once. Its problems are those of the files and
// of the credentials themselves, each naming its variable; settings that
// validate found wrong are left out, not reported twice.
func (c *config) complete(environ map[string]string) (*settings, []error) {
	var problems []error
	s := &settings{config: *c}
	s.secretSource, s.previousSource = sourceOf(environ, "WARDEN_PASSWORD"), sourceOf(environ, "WARDEN_PREVIOUS_PASSWORD")
	secret := readSecret(environ, "WARDEN_PASSWORD", &problems)
	previous := readSecret(environ, "WARDEN_PREVIOUS_PASSWORD", &problems)
	s.Password, s.PreviousPassword = "", "" // the secrets live in the checker only
	s.PasswordSHA256, s.PreviousPasswordSHA256 = "", ""

	s.mode = c.Mode
	if s.mode == "" {
		s.mode = modePublic
		if s.secretSource != "" {
			s.mode = modeProtected
		}
	}
	var checker proxy.Authenticator
	if secret.ok && usernameProblem(c.Username) == "" {
		var ch *auth.Checker
		var err error
		if secret.plain != "" {
			ch, err = auth.New(c.Username, secret.plain)
		} else {
			ch, err = auth.NewDigest(c.Username, secret.digest)
		}
		switch {
		case err != nil:
			problems = append(problems, fmt.Errorf("%s: %w", s.secretSource, err))
		case previous.ok && !c.PreviousPasswordUntil.IsZero():
			if previous.plain != "" {
				ch, err = ch.WithPrevious(previous.plain, c.PreviousPasswordUntil)
			} else {
				ch, err = ch.WithPreviousDigest(previous.digest, c.PreviousPasswordUntil)
			}
			if err != nil {
				problems = append(problems, fmt.Errorf("%s: %w", s.previousSource, err))
			}
			s.previousFingerprint, s.previousUntil = auth.FingerprintDigest(previous.digest), c.PreviousPasswordUntil
		}
		if schemes, serr := auth.ParseSchemes(c.AuthSchemes); serr == nil && err == nil {
			ch, err = ch.WithSchemes(schemes)
			if err != nil {
				problems = append(problems, fmt.Errorf("WARDEN_AUTH_SCHEMES: %w", err))
			}
			if schemes.Has(auth.CarrierBearer) {
				problems = append(problems, bearerProblems(secret, previous)...)
			}
			s.schemes = schemes
		}
		if err == nil && s.mode == modeProtected {
			checker = ch
		}
		s.fingerprint = auth.FingerprintDigest(secret.digest)
		// A secret given as its digest cannot be judged.
		for _, g := range []givenSecret{secret, previous} {
			if g.plain != "" && auth.Weak(g.plain) {
				s.weakSecrets = append(s.weakSecrets, g.source)
			}
		}
	}

	tlsConfig, tlsProblems := loadTLS(environ, c.TLSCertFile, c.TLSKeyFile)
	problems = append(problems, tlsProblems...)
	s.tls = tlsConfig
	s.logLevel, _ = logLevel(c.LogLevel)
	var trusted []netip.Prefix
	for _, t := range c.trustedProxies(environ) {
		if prefix, err := parsePrefix(t); err == nil {
			trusted = append(trusted, prefix)
		}
	}
	addr, _ := upstreamAddr(c.Upstream)
	s.proxy = proxy.Config{
		Upstream:            addr,
		Auth:                checker,
		Realm:               c.Realm,
		UpstreamTimeout:     c.UpstreamTimeout,
		UpstreamIdleTimeout: c.UpstreamIdleTimeout,
		UpstreamMaxConns:    c.UpstreamMaxConns,
		MaxBodyBytes:        c.MaxBodyBytes,
		MaxHeaderBytes:      c.MaxHeaderBytes,
		MaxConns:            c.MaxConns,
		ReadHeaderTimeout:   c.ReadHeaderTimeout,
		IdleTimeout:         c.IdleTimeout,
		AccessLog:           c.AccessLog,
		AuthFailureLimit:    c.AuthFailureLimit,
		AuthFailureWindow:   c.AuthFailureWindow,
		TrustedProxies:      trusted,
		ServerTiming:        c.ServerTiming,
		SSEHeartbeat:        c.SSEHeartbeat,
		DenyPaths:           c.DenyPaths,
	}

	known := envNames()
	for name := range environ {
		if strings.HasPrefix(name, envPrefix) {
			if _, ok := known[name]; !ok {
				s.unknownEnvVars = append(s.unknownEnvVars, name)
			}
		}
	}
	sort.Strings(s.unknownEnvVars)
	return s, problems
}

// sourceOf names the variable a secret is given in, or "" for none.
func sourceOf(environ map[string]string, name string) string {
	for _, form := range secretForms {
		if _, ok := environ[name+form]; ok {
			return name + form
		}
	}
	return ""
}

// givenSecret is a secret as configured: the secret itself, or only its
// SHA-256 digest.
type givenSecret struct {
	source string
	plain  string // "" when only the digest was given
	digest [sha256.Size]byte
	ok     bool
}

// readSecret reads one secret, once, in the form it is given in (validate
// has reported a secret given several ways). A problem names the variable,
// never the contents.
func readSecret(environ map[string]string, name string, problems *[]error) givenSecret {
	g := givenSecret{source: sourceOf(environ, name)}
	if g.source == "" {
		return g
	}
	value := environ[g.source]
	if value == "" {
		return g // validate reports it
	}
	if strings.HasSuffix(g.source, "_FILE") {
		v, err := readSecretFile(value)
		if err != nil {
			*problems = append(*problems, fmt.Errorf("%s: %w", g.source, err))
			return g
		}
		value = v
	}
	if strings.Contains(g.source, "_SHA256") {
		d, err := auth.ParseDigest(strings.TrimSpace(value))
		if err != nil {
			*problems = append(*problems, fmt.Errorf("%s: %w", g.source, err))
			return g
		}
		g.digest, g.ok = d, true
		return g
	}
	g.plain, g.digest, g.ok = value, sha256.Sum256([]byte(value)), true
	return g
}

// readSecretFile reads a secret and trims the trailing newline that tools
// like echo and kubectl leave. Errors name the path, never the contents.
func readSecretFile(path string) (string, error) {
	if path == "" {
		return "", errors.New("is set but empty")
	}
	b, err := os.ReadFile(path) //nolint:gosec // G304: reading the file the operator named is the point
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return "", fmt.Errorf("cannot read %s: %w", path, pe.Err)
		}
		return "", fmt.Errorf("cannot read %s", path)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// parsePrefix reads a CIDR, or a single address as a one-address prefix.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// loadTLS reads the certificate and key once, at start, when both are set.
// The TLS settings follow Mozilla's "intermediate" profile: TLS 1.2 or
// newer, ECDHE key exchange and AEAD ciphers only.
func loadTLS(environ map[string]string, certFile, keyFile string) (*tls.Config, []error) {
	_, certSet := environ["WARDEN_TLS_CERT_FILE"]
	_, keySet := environ["WARDEN_TLS_KEY_FILE"]
	if !certSet || !keySet {
		return nil, nil // none, or validate reports the half
	}
	var problems []error
	certPEM, err := os.ReadFile(certFile) //nolint:gosec // G304: reading the file the operator named is the point
	if err != nil {
		problems = append(problems, fmt.Errorf("WARDEN_TLS_CERT_FILE: %w", err))
	}
	keyPEM, err := os.ReadFile(keyFile) //nolint:gosec // G304: idem
	if err != nil {
		problems = append(problems, fmt.Errorf("WARDEN_TLS_KEY_FILE: %w", err))
	}
	if len(problems) > 0 {
		return nil, problems
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// The error names which input was bad; never echo the key itself.
		name := "WARDEN_TLS_CERT_FILE and WARDEN_TLS_KEY_FILE"
		switch msg := err.Error(); {
		case strings.Contains(msg, "certificate input"):
			name = "WARDEN_TLS_CERT_FILE"
		case strings.Contains(msg, "key input"), strings.Contains(msg, "private key"):
			if !strings.Contains(msg, "does not match") {
				name = "WARDEN_TLS_KEY_FILE"
			}
		}
		return nil, []error{fmt.Errorf("%s: %w", name, err)}
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		// TLS 1.3 suites are not configurable and all qualify.
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		// HTTP/1.1 only: fasthttp has no HTTP/2 (fasthttp#144).
		NextProtos: []string{"http/1.1"},
	}, nil
}

// validateTLS checks that the certificate and the key come together.
func validateTLS(environ map[string]string) []error {
	_, certSet := environ["WARDEN_TLS_CERT_FILE"]
	_, keySet := environ["WARDEN_TLS_KEY_FILE"]
	switch {
	case certSet && !keySet:
		return []error{errors.New("WARDEN_TLS_KEY_FILE: required with WARDEN_TLS_CERT_FILE")}
	case keySet && !certSet:
		return []error{errors.New("WARDEN_TLS_CERT_FILE: required with WARDEN_TLS_KEY_FILE")}
	}
	return nil
}

// upstreamAddr checks WARDEN_UPSTREAM and returns its host:port.
func upstreamAddr(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("not a URL: %q", raw)
	}
	switch {
	case u.Scheme != "http":
		return "", fmt.Errorf("want http://host:port, got scheme %q in %q", u.Scheme, raw)
	case u.Host == "":
		return "", fmt.Errorf("want http://host:port, got %q", raw)
	case u.User != nil:
		return "", errors.New("must not contain credentials")
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "":
		return "", fmt.Errorf("want http://host:port without path or query (requests keep their own), got %q", raw)
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}
