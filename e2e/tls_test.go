package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCert writes a self-signed certificate for 127.0.0.1 and its key, and
// returns their paths and a pool that trusts the certificate.
func testCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "warden e2e"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestTLSListenerServesModernTLSOnly(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	certFile, keyFile, pool := testCert(t)
	w := startWarden(t, merge(protectedEnv(up.addr), map[string]string{
		"WARDEN_TLS_CERT_FILE": certFile, "WARDEN_TLS_KEY_FILE": keyFile,
	}))
	url := "https://" + w.addr + "/echo"
	tlsClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
	}}
	get := func(authz string) (*http.Response, []byte) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		resp, err := tlsClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	if resp, _ := get(""); resp.StatusCode != 401 {
		t.Fatalf("without credentials over TLS: %d", resp.StatusCode)
	}
	resp, body := get(basicAuth(testUser, testPassword))
	if resp.StatusCode != 200 || resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Fatalf("with credentials over TLS: %d, %+v", resp.StatusCode, resp.TLS)
	}
	if m := metrics(t, w); !strings.Contains(m, `warden_config_info{mode="protected",tls="true"} 1`) {
		t.Errorf("metrics do not show TLS on")
	}
	var e echoReply
	json.Unmarshal(body, &e)
	if got := e.Header["X-Forwarded-Proto"]; len(got) != 1 || got[0] != "https" {
		t.Errorf("X-Forwarded-Proto = %q, want https", got)
	}

	// Large bodies of both framings, and a stream, over TLS: the body of a
	// sized response goes straight to the client's connection.
	for path, want := range map[string]int{"/blob?bytes=4194304": 4 << 20, "/blob?bytes=4194304&chunked=1": 4 << 20, "/sse?n=3&interval=10ms": -1} {
		req, _ := http.NewRequest(http.MethodGet, "https://"+w.addr+path, nil)
		req.Header.Set("Authorization", basicAuth(testUser, testPassword))
		resp, err := tlsClient.Do(req)
		if err != nil {
			t.Fatalf("%s over TLS: %v", path, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case err != nil || resp.StatusCode != 200:
			t.Errorf("%s over TLS: %d, %d bytes, %v", path, resp.StatusCode, len(b), err)
		case want >= 0 && len(b) != want:
			t.Errorf("%s over TLS: %d bytes, want %d", path, len(b), want)
		case want < 0 && !strings.HasSuffix(string(b), "data: [DONE]\n\n"):
			t.Errorf("%s over TLS: %q", path, b)
		}
		for i := 0; want > 0 && i < len(b); i += 64 << 10 {
			if b[i] != 0 || len(b) > i+250 && b[i+250] != 250 {
				t.Fatalf("%s over TLS: wrong bytes at %d", path, i)
			}
		}
	}

	// Old protocol versions and weak ciphers are refused.
	for name, cfg := range map[string]*tls.Config{
		"TLS 1.1": {RootCAs: pool, MaxVersion: tls.VersionTLS11},
		"TLS 1.2 with CBC only": {RootCAs: pool, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
		}},
	} {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", w.addr, cfg)
		if err == nil {
			c.Close()
			t.Errorf("%s: handshake succeeded", name)
		}
	}

	// A real TLS client: curl.
	if curl, err := exec.LookPath("curl"); err == nil {
		out, err := exec.Command(curl, "-sS", "--cacert", certFile, "-u", testUser+":"+testPassword,
			"-o", "/dev/null", "-w", "%{http_code} %{ssl_verify_result}", url).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "200 0" {
			t.Errorf("curl over TLS: %q, %v", out, err)
		}
	}
}

// A bad or mismatched certificate and key is a start-up error naming the
// variable.
func TestBadTLSFilesStopWardenNamingTheVariable(t *testing.T) {
	t.Parallel()
	certFile, keyFile, _ := testCert(t)
	otherCert, otherKey, _ := testCert(t)
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	os.WriteFile(garbage, []byte("not a PEM file\n"), 0o600)
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"mismatched pair", map[string]string{"WARDEN_TLS_CERT_FILE": certFile, "WARDEN_TLS_KEY_FILE": otherKey}, "WARDEN_TLS_KEY_FILE"},
		{"garbage certificate", map[string]string{"WARDEN_TLS_CERT_FILE": garbage, "WARDEN_TLS_KEY_FILE": keyFile}, "WARDEN_TLS_CERT_FILE"},
		{"garbage key", map[string]string{"WARDEN_TLS_CERT_FILE": otherCert, "WARDEN_TLS_KEY_FILE": garbage}, "WARDEN_TLS_KEY_FILE"},
		{"missing certificate", map[string]string{"WARDEN_TLS_CERT_FILE": garbage + ".nope", "WARDEN_TLS_KEY_FILE": keyFile}, "WARDEN_TLS_CERT_FILE"},
		{"key without certificate", map[string]string{"WARDEN_TLS_KEY_FILE": keyFile}, "WARDEN_TLS_CERT_FILE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := startWardenNoWait(t, tc.env)
			if code := w.wait(2 * time.Second); code == 0 {
				t.Fatal("exit code 0")
			}
			if out := w.out.String(); !strings.Contains(out, tc.want) || strings.Contains(out, "PRIVATE KEY") {
				t.Fatalf("output does not name %s (or shows the key):\n%s", tc.want, out)
			}
		})
	}
}
