package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/paperspace/warden/auth"
)

// The small tools users need beside the server: a new secret, the header
// a client sends, and the digest for WARDEN_PASSWORD_SHA256. None takes a
// secret from the command line, where ps and shell histories would show it.

// secretBytes is the strength of a secret warden makes: 256 bits.
const secretBytes = 32

// newSecret returns 32 bytes from the OS's CSPRNG as unpadded base64url:
// 43 characters that every carrier can hold (a Bearer token included).
func newSecret() (string, error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("read random bytes: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// cmdSecret prints a new random secret and nothing else.
func cmdSecret(args []string, stdout io.Writer) error {
	if len(args) > 0 {
		return errors.New("secret takes no arguments (see warden --help)")
	}
	s, err := newSecret()
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, s)
	return err
}

// toolSecret reads the secret for header and hash: from WARDEN_PASSWORD,
// else the file named by WARDEN_PASSWORD_FILE, else standard input (one
// line, or all of it, without its trailing newline).
func toolSecret(environ map[string]string, stdin io.Reader) (string, error) {
	if v, ok := environ["WARDEN_PASSWORD"]; ok {
		if v == "" {
			return "", errors.New("WARDEN_PASSWORD: is set but empty")
		}
		return v, nil
	}
	if f, ok := environ["WARDEN_PASSWORD_FILE"]; ok {
		s, err := readSecretFile(f)
		if err != nil {
			return "", fmt.Errorf("WARDEN_PASSWORD_FILE: %w", err)
		}
		return s, nil
	}
	b, err := io.ReadAll(io.LimitReader(stdin, auth.MaxCredentialBytes+2))
	if err != nil {
		return "", fmt.Errorf("read the secret from standard input: %w", err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	switch {
	case s == "":
		return "", errors.New("no secret: set WARDEN_PASSWORD or WARDEN_PASSWORD_FILE, or pipe it to standard input (never an argument)")
	case len(s) >= auth.MaxCredentialBytes:
		return "", fmt.Errorf("the secret on standard input is longer than %d bytes", auth.MaxCredentialBytes-1)
	}
	return s, nil
}

// refuseSecretArg is the answer to an argument that may be a secret.
func refuseSecretArg(cmd, arg string) error {
	if strings.HasPrefix(arg, "-") {
		return fmt.Errorf("%s: unknown flag %s (see warden --help)", cmd, arg)
	}
	return fmt.Errorf("%s: unexpected argument; the secret is never taken from the command line, where ps would show it: set WARDEN_PASSWORD or WARDEN_PASSWORD_FILE, or pipe it to standard input", cmd)
}

// cmdHeader prints the value of the Authorization header for the secret:
// Basic for the configured user name, or Bearer; with --curl URL, a curl
// command that sends it.
func cmdHeader(args []string, environ map[string]string, stdin io.Reader, stdout io.Writer) error {
	bearer, curlURL := false, ""
	for len(args) > 0 {
		a := args[0]
		args = args[1:]
		switch {
		case a == "--bearer":
			bearer = true
		case a == "--curl":
			if len(args) == 0 {
				return errors.New("header: --curl needs a URL")
			}
			curlURL, args = args[0], args[1:]
		case strings.HasPrefix(a, "--curl="):
			curlURL = strings.TrimPrefix(a, "--curl=")
		default:
			return refuseSecretArg("header", a)
		}
	}
	if curlURL != "" && !strings.HasPrefix(curlURL, "http://") && !strings.HasPrefix(curlURL, "https://") {
		return fmt.Errorf("header: --curl wants an http:// or https:// URL, got %q", curlURL)
	}
	user := "paperspace"
	if u, ok := environ["WARDEN_USERNAME"]; ok {
		user = u
	}
	if why := usernameProblem(user); why != "" && !bearer {
		return fmt.Errorf("WARDEN_USERNAME: %s", why)
	}
	secret, err := toolSecret(environ, stdin)
	if err != nil {
		return err
	}
	value := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+secret))
	if bearer {
		if !auth.IsBearerToken(secret) {
			return errors.New("header: this secret has characters a Bearer token cannot carry (RFC 6750: letters, digits, - . _ ~ + / and trailing =); use Basic, or a secret from warden secret")
		}
		value = "Bearer " + secret
	}
	if curlURL == "" {
		_, err = fmt.Fprintln(stdout, value)
		return err
	}
	_, err = fmt.Fprintf(stdout, "curl -H %s %s\n", shellQuote("Authorization: "+value), shellQuote(curlURL))
	return err
}

// cmdHash prints the lowercase hex SHA-256 of the secret, for
// WARDEN_PASSWORD_SHA256.
func cmdHash(args []string, environ map[string]string, stdin io.Reader, stdout io.Writer) error {
	if len(args) > 0 {
		return refuseSecretArg("hash", args[0])
	}
	secret, err := toolSecret(environ, stdin)
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(secret))
	_, err = fmt.Fprintln(stdout, hex.EncodeToString(sum[:]))
	return err
}

// shellQuote quotes s for a POSIX shell, in single quotes; a single quote
// inside ends the quoting, is escaped with a backslash, and quoting resumes.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
