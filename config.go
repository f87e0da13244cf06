package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/paperspace/warden/auth"

	"github.com/caarlos0/env/v11"
	"github.com/rs/zerolog"
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
	// MaxHeaderBytes limits request line plus headers (431 past it).
	MaxHeaderBytes int `env:"MAX_HEADER_BYTES" envDefault:"32768"`
	// MaxBodyBytes limits request bodies (413 past it); 0 means no limit.
	MaxBodyBytes int64 `env:"MAX_BODY_BYTES" envDefault:"0"`
	// AccessLog writes one line per request at info level.
	AccessLog bool `env:"ACCESS_LOG" envDefault:"true"`
	// LogLevel is a zerolog level: trace, debug, info, warn, error.
	LogLevel string `env:"LOG_LEVEL" envDefault:"info"`
	// LogFormat is json or console.
	LogFormat string `env:"LOG_FORMAT" envDefault:"json"`

	// Set by load, not read from the environment.
	secret         string        `env:"-"`
	secretSource   string        `env:"-"` // "WARDEN_PASSWORD" or "WARDEN_PASSWORD_FILE"
	upstreamAddr   string        `env:"-"` // host:port
	logLevel       zerolog.Level `env:"-"`
	unknownEnvVars []string      `env:"-"`
}

const (
	modePublic    = "public"
	modeProtected = "protected"
)

// loadConfig reads and validates the configuration, and reads the secret.
// It reports every problem at once, each naming its variable.
func loadConfig(environ map[string]string) (*config, error) {
	var cfg config
	var problems []error
	if err := env.ParseWithOptions(&cfg, env.Options{Prefix: envPrefix, Environment: environ}); err != nil {
		problems = append(problems, envProblems(err)...)
	}
	problems = append(problems, cfg.validate(environ)...)
	if len(problems) > 0 {
		return nil, &configError{problems}
	}
	return &cfg, nil
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

	if addr, err := upstreamAddr(c.Upstream); err != nil {
		bad("WARDEN_UPSTREAM", "%v", err)
	} else {
		c.upstreamAddr = addr
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
	if c.MaxHeaderBytes < 4096 || c.MaxHeaderBytes > 1<<20 {
		bad("WARDEN_MAX_HEADER_BYTES", "must be between 4096 and 1048576, got %d", c.MaxHeaderBytes)
	}
	if c.MaxBodyBytes < 0 {
		bad("WARDEN_MAX_BODY_BYTES", "must be 0 (no limit) or positive, got %d", c.MaxBodyBytes)
	}
	if lvl, err := zerolog.ParseLevel(c.LogLevel); err != nil || lvl == zerolog.NoLevel {
		bad("WARDEN_LOG_LEVEL", "want trace, debug, info, warn, error, fatal, panic or disabled, got %q", c.LogLevel)
	} else {
		c.logLevel = lvl
	}
	if c.LogFormat != "json" && c.LogFormat != "console" {
		bad("WARDEN_LOG_FORMAT", "want json or console, got %q", c.LogFormat)
	}
	if c.Realm == "" {
		bad("WARDEN_REALM", "must not be empty")
	}
	if c.Username == "" {
		bad("WARDEN_USERNAME", "must not be empty")
	} else if strings.Contains(c.Username, ":") {
		bad("WARDEN_USERNAME", "must not contain a colon (RFC 7617)")
	}

	problems = append(problems, c.loadSecret(environ)...)

	known := envNames()
	for name := range environ {
		if strings.HasPrefix(name, envPrefix) {
			if _, ok := known[name]; !ok {
				c.unknownEnvVars = append(c.unknownEnvVars, name)
			}
		}
	}
	sort.Strings(c.unknownEnvVars)
	return problems
}

// loadSecret reads the secret once, from WARDEN_PASSWORD or the file named
// by WARDEN_PASSWORD_FILE, and checks it against WARDEN_MODE. No message
// here quotes the secret or the file's contents.
func (c *config) loadSecret(environ map[string]string) []error {
	_, passwordSet := environ["WARDEN_PASSWORD"]
	_, fileSet := environ["WARDEN_PASSWORD_FILE"]
	var problems []error
	switch {
	case passwordSet && fileSet:
		problems = append(problems, errors.New("WARDEN_PASSWORD and WARDEN_PASSWORD_FILE: set one, not both"))
	case passwordSet:
		if c.Password == "" {
			// An empty secret must not silently make the endpoint public.
			problems = append(problems, errors.New("WARDEN_PASSWORD: is set but empty"))
		}
		c.secret, c.secretSource = c.Password, "WARDEN_PASSWORD"
	case fileSet:
		secret, err := readSecretFile(c.PasswordFile)
		if err != nil {
			problems = append(problems, fmt.Errorf("WARDEN_PASSWORD_FILE: %w", err))
		}
		c.secret, c.secretSource = secret, "WARDEN_PASSWORD_FILE"
	}
	c.Password = "" // the secret lives in c.secret only

	switch c.Mode {
	case "":
		c.Mode = modePublic
		if passwordSet || fileSet {
			c.Mode = modeProtected
		}
	case modeProtected:
		if !passwordSet && !fileSet {
			problems = append(problems, errors.New("WARDEN_MODE: protected needs WARDEN_PASSWORD or WARDEN_PASSWORD_FILE"))
		}
	case modePublic:
		if passwordSet || fileSet {
			problems = append(problems, fmt.Errorf("WARDEN_MODE: public conflicts with %s; unset one of them", c.secretSource))
		}
	default:
		problems = append(problems, fmt.Errorf("WARDEN_MODE: want public or protected, got %q", c.Mode))
	}
	if c.secret != "" && c.Username != "" {
		if _, err := auth.New(c.Username, c.secret); err != nil {
			problems = append(problems, fmt.Errorf("%s: %w", c.secretSource, err))
		}
	}
	return problems
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
