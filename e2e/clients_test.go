package e2e

// Real clients of a model server, through warden (issue 13): the official
// OpenAI and Anthropic SDKs for JavaScript and for Go, LangChain.js's
// ChatOpenAI, Hugging Face's InferenceClient, Chromium driven by
// playwright-core, and the load tools autocannon, locust and vegeta. Each
// test starts real processes: testdata/llm_server.py (uvicorn and FastAPI,
// speaking the OpenAI and Anthropic APIs, recording what reached it), warden
// in front of it, and the client.
//
// Where the tools come from, each at a pinned version (make deps installs
// them; scripts/deps.sh):
//   - the Node clients: e2e/clients/*.mjs, one per client, run with the
//     machine's node (20 or later), with the packages of
//     e2e/clients/package-lock.json (npm ci);
//   - Chromium (/usr/bin/chromium) and locust (python3-locust): Debian's;
//   - vegeta: go install into bin/;
//   - the Go SDKs: this module's go.mod, imported by this file only.
//
// Without a tool, the tests that need it skip, unless
// WARDEN_E2E_REQUIRE_CLIENTS=1 (as in CI) makes that a failure. The model
// server needs Debian's Python packages, under WARDEN_E2E_REQUIRE_PYTHON.

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	anthropicoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	openaioption "github.com/openai/openai-go/v3/option"
)

const (
	// clientSecret is the secret of these tests. Unlike testPassword it is
	// a token every carrier can carry (RFC 6750's b64token: no space, no
	// colon, ASCII), as a Bearer or x-api-key secret must be.
	clientSecret = "sk-e2e_Cl1ent.t0ken~with+every/char=="
	// allSchemes enables every carrier of the secret.
	allSchemes = "basic,bearer,x-api-key"
	// prompt is what the clients ask; llm_server.py answers with its words.
	prompt = "say hello to warden"

	chromiumBin = "/usr/bin/chromium"
)

// --- tools ---

// clientChecks remembers, per tool, whether it is usable, so that each is
// checked once per test binary.
var clientChecks sync.Map // name -> func() error (a sync.OnceValue)

// requireClient skips the test when check fails for the tool name; with
// WARDEN_E2E_REQUIRE_CLIENTS=1 it fails instead.
func requireClient(t testing.TB, name string, check func() error) {
	t.Helper()
	c, _ := clientChecks.LoadOrStore(name, sync.OnceValue(check))
	err := c.(func() error)()
	if err == nil {
		return
	}
	if os.Getenv("WARDEN_E2E_REQUIRE_CLIENTS") == "1" {
		t.Fatalf("WARDEN_E2E_REQUIRE_CLIENTS=1 but %s is not usable (make deps installs it): %v", name, err)
	}
	t.Skipf("skipping: %s is not usable (make deps installs it; WARDEN_E2E_REQUIRE_CLIENTS=1 makes this a failure): %v", name, err)
}

// clientsDir is the absolute path of e2e/clients.
func clientsDir(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs("clients")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// requireNode needs node 20 or later and e2e/clients/node_modules holding
// exactly the versions of package-lock.json.
func requireNode(t testing.TB) {
	t.Helper()
	dir := clientsDir(t)
	requireClient(t, "node and e2e/clients/node_modules", func() error {
		out, err := exec.Command("node", "--version").Output()
		if err != nil {
			return fmt.Errorf("node --version: %w", err)
		}
		v := strings.TrimPrefix(strings.TrimSpace(string(out)), "v")
		major, _, _ := strings.Cut(v, ".")
		if n, err := strconv.Atoi(major); err != nil || n < 20 {
			return fmt.Errorf("node %s; the clients need 20 or later", v)
		}
		return checkNodeModules(dir)
	})
}

// checkNodeModules checks that each package of package-lock.json is
// installed at its locked version (an optional one may be absent).
func checkNodeModules(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		return err
	}
	var lock struct {
		Packages map[string]struct {
			Version  string `json:"version"`
			Optional bool   `json:"optional"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(b, &lock); err != nil {
		return fmt.Errorf("package-lock.json: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules")); err != nil {
		return fmt.Errorf("e2e/clients/node_modules is missing (cd e2e/clients && npm ci): %w", err)
	}
	for _, path := range slices.Sorted(maps.Keys(lock.Packages)) {
		p := lock.Packages[path]
		if path == "" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, path, "package.json"))
		if errors.Is(err, fs.ErrNotExist) && p.Optional {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s is not installed (cd e2e/clients && npm ci): %w", path, err)
		}
		var got struct {
			Version string `json:"version"`
		}
		if err := json.Unmarshal(b, &got); err != nil || got.Version != p.Version {
			return fmt.Errorf("%s is %q, package-lock.json says %q (cd e2e/clients && npm ci)", path, got.Version, p.Version)
		}
	}
	return nil
}

func requireChromium(t testing.TB) {
	t.Helper()
	requireNode(t)
	requireClient(t, chromiumBin, func() error {
		_, err := os.Stat(chromiumBin)
		return err
	})
}

func requireLocust(t testing.TB) {
	t.Helper()
	requireClient(t, "locust (python3-locust)", func() error {
		cmd := exec.Command(pythonBin, "-c", "import locust")
		cmd.Env = append(baseEnv(), pythonEnv...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s cannot import locust: %w\n%s", pythonBin, err, out)
		}
		return nil
	})
}

// vegetaBin is bin/vegeta at the project's root, where make deps puts it.
func vegetaBin(t testing.TB) string {
	t.Helper()
	bin, err := filepath.Abs(filepath.Join("..", "bin", "vegeta"))
	if err != nil {
		t.Fatal(err)
	}
	requireClient(t, "bin/vegeta", func() error {
		_, err := os.Stat(bin)
		return err
	})
	return bin
}

// --- the model server ---

// llmServer is testdata/llm_server.py.
type llmServer struct {
	*proc
	addr string
}

func startLLMServer(t *testing.T) *llmServer {
	t.Helper()
	requirePythonImports(t, "import fastapi, uvicorn, websockets", "python3-fastapi python3-uvicorn python3-websockets")
	// Port 0: the server reports the port it bound, so no other process can
	// take it in between.
	p := startProc(t, "llm_server", pythonEnv, pythonBin,
		filepath.Join(testdataDir(t), "llm_server.py"), "--host", "127.0.0.1", "--port", "0")
	var port int
	waitFor(t, 20*time.Second, "llm_server to listen", func() bool {
		if p.exited() {
			t.Fatalf("llm_server exited: %s", p.out.String())
		}
		line, _, ok := strings.Cut(p.out.String(), "\n")
		if !ok {
			return false
		}
		var e struct {
			Event string `json:"event"`
			Port  int    `json:"port"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil || e.Event != "listening" {
			t.Fatalf("llm_server's first line %q is not its listening event", line)
		}
		port = e.Port
		return true
	})
	m := &llmServer{proc: p, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	waitFor(t, 20*time.Second, "llm_server to answer /health", func() bool {
		resp, err := quick.Get(m.url("/health"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return m
}

func (m *llmServer) url(path string) string { return "http://" + m.addr + path }

// llmRequest is a request llm_server.py saw.
type llmRequest struct {
	N             int     `json:"n"`
	Type          string  `json:"type"` // http or websocket
	Method        string  `json:"method"`
	Path          string  `json:"path"`
	RawPath       string  `json:"raw_path"`
	Query         string  `json:"query"`
	Authorization *string `json:"authorization"`
	XAPIKey       *string `json:"x_api_key"`
}

// llmGeneration is a chat completion or a message llm_server.py served.
type llmGeneration struct {
	API           string   `json:"api"`
	Stream        bool     `json:"stream"`
	Tag           *string  `json:"tag"`
	Authorization *string  `json:"authorization"`
	XAPIKey       *string  `json:"x_api_key"`
	Status        string   `json:"status"` // running, completed, cancelled
	Phase         string   `json:"phase"`  // prefill, generating
	TokensSent    int      `json:"tokens_sent"`
	StartedUnix   float64  `json:"started_unix"`
	EndedUnix     *float64 `json:"ended_unix"`
	SeenVia       *string  `json:"seen_via"`
}

type llmStats struct {
	Requests      []llmRequest    `json:"requests"`
	RequestsTotal int             `json:"requests_total"`
	Paths         map[string]int  `json:"paths"`
	RawPaths      map[string]int  `json:"raw_paths"`
	Generations   []llmGeneration `json:"generations"`
}

// stats asks llm_server.py directly, not through warden.
func (m *llmServer) stats(t testing.TB) llmStats {
	t.Helper()
	resp, err := quick.Get(m.url("/stats"))
	if err != nil {
		t.Fatalf("llm_server /stats: %v", err)
	}
	defer resp.Body.Close()
	var s llmStats
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatalf("llm_server /stats: %v", err)
	}
	return s
}

func (m *llmServer) reset(t testing.TB) {
	t.Helper()
	resp, err := quick.Post(m.url("/stats/reset"), "application/json", nil)
	if err != nil {
		t.Fatalf("llm_server /stats/reset: %v", err)
	}
	resp.Body.Close()
}

// generation returns the generation tagged tag, if the server has seen it.
func (s llmStats) generation(tag string) (llmGeneration, bool) {
	for _, g := range s.Generations {
		if g.Tag != nil && *g.Tag == tag {
			return g, true
		}
	}
	return llmGeneration{}, false
}

// checkNoCredentialReachedModel checks that no request the model saw
// carried Authorization or x-api-key: warden strips the secret.
func checkNoCredentialReachedModel(t testing.TB, s llmStats) {
	t.Helper()
	for _, r := range s.Requests {
		if r.Authorization != nil || r.XAPIKey != nil {
			t.Errorf("the secret reached the model: %s %s %s with Authorization %v, x-api-key %v",
				r.Type, r.Method, r.RawPath, deref(r.Authorization), deref(r.XAPIKey))
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return "(none)"
	}
	return strconv.Quote(*s)
}

// startLLMStack starts llm_server.py and, in front of it, warden with
// clientSecret, every carrier enabled, and env on top.
func startLLMStack(t *testing.T, env map[string]string) (*llmServer, *wardenProc) {
	t.Helper()
	m := startLLMServer(t)
	w := startWarden(t, merge(protectedEnv(m.addr), map[string]string{
		"WARDEN_PASSWORD":     clientSecret,
		"WARDEN_AUTH_SCHEMES": allSchemes,
	}, env))
	return m, w
}

// --- Node clients ---

// clientEnv is the environment of a client script (clients/common.mjs).
func clientEnv(baseURL, auth string) map[string]string {
	return map[string]string{"WARDEN_URL": baseURL, "CLIENT_AUTH": auth, "CLIENT_USER": testUser, "CLIENT_SECRET": clientSecret}
}

// runNode runs e2e/clients/<script> with node and decodes the JSON line it
// prints last into v. The script exits 0 when it ran; how its exchanges
// went is in the JSON.
func runNode(t testing.TB, v any, script string, env map[string]string, args ...string) {
	t.Helper()
	out := runTool(t, 120*time.Second, env, "node", append([]string{filepath.Join(clientsDir(t), script)}, args...)...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), v); err != nil {
		t.Fatalf("%s printed %q: %v", script, out, err)
	}
}

// runTool runs a client process with env (and no proxy variables: nothing
// but 127.0.0.1 is contacted) and returns its standard output; it fails the
// test if the process fails.
func runTool(t testing.TB, timeout time.Duration, env map[string]string, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = baseEnv()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("%s %s: %s", filepath.Base(bin), strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout: %s\nstderr: %s", bin, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// nodeStep is one exchange of a script: its value, or the error the client
// raised.
type nodeStep[T any] struct {
	OK    bool       `json:"ok"`
	Value T          `json:"value"`
	Error *nodeError `json:"error"`
}

type nodeError struct {
	Name    string            `json:"name"`
	Message string            `json:"message"`
	Status  *int              `json:"status"`
	Headers map[string]string `json:"headers"`
}

func (e *nodeError) String() string {
	if e == nil {
		return "no error"
	}
	status := "no status"
	if e.Status != nil {
		status = "status " + strconv.Itoa(*e.Status)
	}
	return fmt.Sprintf("%s (%s, headers %v): %s", e.Name, status, e.Headers, e.Message)
}

// value returns the step's value, or fails the test with the client's error.
func (s nodeStep[T]) value(t testing.TB, what string) T {
	t.Helper()
	if !s.OK {
		t.Fatalf("%s failed: %s", what, s.Error)
	}
	return s.Value
}

// nodeRequest is what clients/common.mjs's recordingFetch noted about a
// request the SDK made.
type nodeRequest struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Sent   struct {
		Authorization *struct {
			Scheme string `json:"scheme"`
			Right  bool   `json:"right"`
		} `json:"authorization"`
		XAPIKey *struct {
			Right bool `json:"right"`
		} `json:"x_api_key"`
	} `json:"sent"`
	RetryCount *string           `json:"retry_count"`
	Status     int               `json:"status"`
	Answer     map[string]string `json:"answer"`
}

// carried says how the request carried the secret: "Basic", "Bearer",
// "x-api-key", or what was wrong.
func (r nodeRequest) carried() string {
	a, k := r.Sent.Authorization, r.Sent.XAPIKey
	switch {
	case a != nil && k != nil:
		return "both Authorization and x-api-key"
	case a != nil && a.Right:
		return a.Scheme
	case a != nil:
		return "a wrong " + a.Scheme + " credential"
	case k != nil && k.Right:
		return "x-api-key"
	case k != nil:
		return "a wrong x-api-key"
	}
	return "no credential"
}

// checkCarried checks that the client made want requests, each carrying
// the secret as carrier and answered 200.
func checkCarried(t testing.TB, reqs []nodeRequest, want int, carrier string) {
	t.Helper()
	if len(reqs) != want {
		t.Errorf("the client made %d requests, want %d: %+v", len(reqs), want, reqs)
	}
	for _, r := range reqs {
		if got := r.carried(); got != carrier {
			t.Errorf("%s %s carried %s, want %s", r.Method, r.Path, got, carrier)
		}
		if r.Status != http.StatusOK {
			t.Errorf("%s %s: status %d (X-Warden-Error %q), want 200", r.Method, r.Path, r.Status, r.Answer["x-warden-error"])
		}
	}
}

// checkGenerations checks that the model completed n generations and
// that none of its requests carried the secret.
func checkGenerations(t testing.TB, m *llmServer, n int) {
	t.Helper()
	s := m.stats(t)
	checkNoCredentialReachedModel(t, s)
	completed := 0
	for _, g := range s.Generations {
		if g.Status == "completed" {
			completed++
		}
	}
	if completed != n || len(s.Generations) != n {
		t.Errorf("the model completed %d of %d generations, want %d", completed, len(s.Generations), n)
	}
}

type openaiUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// openaiJSChat is what clients/openai.mjs chat prints.
type openaiJSChat struct {
	Version   string               `json:"version"`
	Models    nodeStep[[]string]   `json:"models"`
	Nonstream nodeStep[openaiJSNS] `json:"nonstream"`
	Stream    nodeStep[openaiJSS]  `json:"stream"`
	Requests  []nodeRequest        `json:"requests"`
}

type openaiJSNS struct {
	Object       string      `json:"object"`
	Content      string      `json:"content"`
	FinishReason string      `json:"finish_reason"`
	Usage        openaiUsage `json:"usage"`
}

type openaiJSS struct {
	Content      string       `json:"content"`
	Chunks       int          `json:"chunks"`
	FinishReason string       `json:"finish_reason"`
	Usage        *openaiUsage `json:"usage"`
}

// The OpenAI SDK for JavaScript, with its apiKey (Bearer) and with Basic in
// defaultHeaders, which the SDK sends in place of its own Authorization.
func TestOpenAIJSClientThroughWarden(t *testing.T) {
	t.Parallel()
	requireNode(t)
	m, w := startLLMStack(t, nil)
	for _, tc := range []struct{ auth, carrier string }{{"basic", "Basic"}, {"bearer", "Bearer"}} {
		t.Run(tc.auth, func(t *testing.T) {
			m.reset(t)
			var r openaiJSChat
			runNode(t, &r, "openai.mjs", clientEnv(w.url(""), tc.auth), "chat")
			t.Logf("openai %s", r.Version)
			if ids := r.Models.value(t, "models.list"); !slices.Equal(ids, []string{"e2e-model"}) {
				t.Errorf("models.list = %q, want [e2e-model]", ids)
			}
			ns := r.Nonstream.value(t, "chat.completions.create")
			if ns.Object != "chat.completion" || ns.Content != prompt || ns.FinishReason != "stop" || ns.Usage.CompletionTokens != 4 {
				t.Errorf("chat completion %+v, want %q, finish stop, 4 completion tokens", ns, prompt)
			}
			s := r.Stream.value(t, "chat.completions.create stream")
			if s.Content != prompt || s.FinishReason != "stop" || s.Usage == nil || s.Usage.CompletionTokens != 4 || s.Chunks < 6 {
				t.Errorf("streamed completion %+v, want %q from the role chunk, 4 tokens, the stop chunk and the usage chunk", s, prompt)
			}
			checkCarried(t, r.Requests, 3, tc.carrier)
			checkGenerations(t, m, 2)
		})
	}
}

// openaiJSRetry is what clients/openai.mjs retry prints.
type openaiJSRetry struct {
	OK        bool          `json:"ok"`
	Error     *nodeError    `json:"error"`
	Attempts  int           `json:"attempts"`
	ElapsedMs int           `json:"elapsed_ms"`
	Requests  []nodeRequest `json:"requests"`
}

// The OpenAI SDK retries what warden's X-Should-Retry says it may (the SDK
// obeys that header before its own rule, which retries every 5xx): not a
// 504, where the model may still be working, and a 502 upstream_unavailable,
// where the request never reached it. Default maxRetries: 2.
func TestOpenAIJSClientRetriesOnlyWhatWardenSays(t *testing.T) {
	t.Parallel()
	requireNode(t)

	t.Run("504 upstream_timeout is not retried", func(t *testing.T) {
		t.Parallel()
		m, w := startLLMStack(t, map[string]string{"WARDEN_UPSTREAM_TIMEOUT": "500ms"})
		var r openaiJSRetry
		runNode(t, &r, "openai.mjs", merge(clientEnv(w.url(""), "basic"), map[string]string{"CLIENT_MODEL": "e2e-model@prefill=3"}), "retry")
		t.Logf("%d attempts in %d ms: %s", r.Attempts, r.ElapsedMs, r.Error)
		if r.OK || r.Error == nil || r.Error.Status == nil || *r.Error.Status != 504 {
			t.Fatalf("the client ended with %s, want a 504", r.Error)
		}
		if got := r.Error.Headers["x-warden-error"]; got != "upstream_timeout" {
			t.Errorf("X-Warden-Error = %q, want upstream_timeout", got)
		}
		if got := r.Error.Headers["x-should-retry"]; got != "false" {
			t.Errorf("X-Should-Retry = %q, want false", got)
		}
		if r.Attempts != 1 {
			t.Errorf("the SDK made %d attempts, want 1", r.Attempts)
		}
		if n := len(m.stats(t).Generations); n != 1 {
			t.Errorf("the model got %d requests, want 1", n)
		}
	})

	t.Run("502 upstream_unavailable is retried", func(t *testing.T) {
		t.Parallel()
		w := startWarden(t, merge(protectedEnv(freeAddr(t)), map[string]string{ // nothing listens there
			"WARDEN_PASSWORD": clientSecret, "WARDEN_AUTH_SCHEMES": allSchemes,
		}))
		var r openaiJSRetry
		runNode(t, &r, "openai.mjs", clientEnv(w.url(""), "basic"), "retry")
		t.Logf("%d attempts in %d ms: %s", r.Attempts, r.ElapsedMs, r.Error)
		if r.OK || r.Error == nil || r.Error.Status == nil || *r.Error.Status != 502 {
			t.Fatalf("the client ended with %s, want a 502", r.Error)
		}
		h := r.Error.Headers
		if h["x-warden-error"] != "upstream_unavailable" || h["x-should-retry"] != "true" || h["retry-after"] == "" {
			t.Errorf("X-Warden-Error %q, X-Should-Retry %q, Retry-After %q; want upstream_unavailable, true and a delay",
				h["x-warden-error"], h["x-should-retry"], h["retry-after"])
		}
		if r.Attempts != 3 {
			t.Errorf("the SDK made %d attempts, want 3 (maxRetries 2)", r.Attempts)
		}
		for i, req := range r.Requests {
			if req.RetryCount == nil || *req.RetryCount != strconv.Itoa(i) || req.Status != 502 {
				t.Errorf("attempt %d: X-Stainless-Retry-Count %s, status %d; want %d and 502", i, deref(req.RetryCount), req.Status, i)
			}
		}
		if got := metricOrZero(t, metrics(t, w), `warden_requests_total{code="502"}`); got != 3 {
			t.Errorf(`warden_requests_total{code="502"} = %g, want 3`, got)
		}
	})
}

// anthropicJS is what clients/anthropic.mjs prints.
type anthropicJS struct {
	Version   string `json:"version"`
	Nonstream nodeStep[struct {
		Type       string `json:"type"`
		Content    string `json:"content"`
		StopReason string `json:"stop_reason"`
	}] `json:"nonstream"`
	Stream nodeStep[struct {
		Content    string   `json:"content"`
		Events     []string `json:"events"`
		StopReason string   `json:"stop_reason"`
	}] `json:"stream"`
	Accumulated nodeStep[struct {
		Content    string `json:"content"`
		StopReason string `json:"stop_reason"`
	}] `json:"accumulated"`
	Requests []nodeRequest `json:"requests"`
}

// The Anthropic SDK for JavaScript: 1.x sends its apiKey as
// Authorization: Bearer, 0.x (anthropic-sdk-0, 0.137.0) as x-api-key; a 1.x
// client can still send x-api-key in defaultHeaders.
func TestAnthropicJSClientThroughWarden(t *testing.T) {
	t.Parallel()
	requireNode(t)
	m, w := startLLMStack(t, nil)
	wantEvents := []string{"message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"}
	for _, tc := range []struct{ name, sdk, carrier, want string }{
		{"1.x apiKey", "1", "apikey", "Bearer"},
		{"1.x X-Api-Key header", "1", "header", "x-api-key"},
		{"0.x apiKey", "0", "apikey", "x-api-key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m.reset(t)
			var r anthropicJS
			runNode(t, &r, "anthropic.mjs", clientEnv(w.url(""), ""), tc.sdk, tc.carrier)
			t.Logf("@anthropic-ai/sdk %s", r.Version)
			if ns := r.Nonstream.value(t, "messages.create"); ns.Type != "message" || ns.Content != prompt || ns.StopReason != "end_turn" {
				t.Errorf("message %+v, want %q ending end_turn", ns, prompt)
			}
			s := r.Stream.value(t, "messages.create stream")
			if s.Content != prompt || s.StopReason != "end_turn" {
				t.Errorf("streamed message %+v, want %q ending end_turn", s, prompt)
			}
			if got := slices.Compact(slices.Clone(s.Events)); !slices.Equal(got, wantEvents) {
				t.Errorf("stream events %q, want %q (deltas repeated)", s.Events, wantEvents)
			}
			if a := r.Accumulated.value(t, "messages.stream finalMessage"); a.Content != prompt || a.StopReason != "end_turn" {
				t.Errorf("accumulated message %+v, want %q", a, prompt)
			}
			checkCarried(t, r.Requests, 3, tc.want)
			checkGenerations(t, m, 3)
		})
	}
}

// chatJS is what clients/langchain.mjs and clients/hf.mjs print.
type chatJS struct {
	Version   string `json:"version"`
	Nonstream nodeStep[struct {
		Content string `json:"content"`
	}] `json:"nonstream"`
	Stream nodeStep[struct {
		Content string `json:"content"`
		Chunks  int    `json:"chunks"`
	}] `json:"stream"`
	Requests []nodeRequest `json:"requests"`
}

// LangChain.js's ChatOpenAI and Hugging Face's InferenceClient, both of which
// send their key as Authorization: Bearer.
func TestLangChainAndHuggingFaceJSClientsThroughWarden(t *testing.T) {
	t.Parallel()
	requireNode(t)
	m, w := startLLMStack(t, nil)
	for _, script := range []string{"langchain.mjs", "hf.mjs"} {
		t.Run(strings.TrimSuffix(script, ".mjs"), func(t *testing.T) {
			m.reset(t)
			var r chatJS
			runNode(t, &r, script, clientEnv(w.url(""), "bearer"))
			t.Logf("%s %s", script, r.Version)
			if ns := r.Nonstream.value(t, "a chat completion"); ns.Content != prompt {
				t.Errorf("reply %q, want %q", ns.Content, prompt)
			}
			if s := r.Stream.value(t, "a streamed chat completion"); s.Content != prompt || s.Chunks < 4 {
				t.Errorf("streamed reply %q in %d chunks, want %q token by token", s.Content, s.Chunks, prompt)
			}
			checkCarried(t, r.Requests, 2, "Bearer")
			checkGenerations(t, m, 2)
		})
	}
}

// browserResult is what clients/browser.mjs prints.
type browserResult struct {
	Version         string                 `json:"version"`
	Browser         string                 `json:"browser"`
	WithCredentials nodeStep[browserVisit] `json:"with_credentials"`
	WithoutCreds    nodeStep[browserVisit] `json:"without_credentials"`
}

type browserVisit struct {
	Status      int    `json:"status"`
	WardenError string `json:"warden_error"`
	GotoError   string `json:"goto_error"`
	Results     struct {
		Fetch nodeStep[struct {
			ModelsStatus int      `json:"models_status"`
			Models       []string `json:"models"`
			ChatStatus   int      `json:"chat_status"`
			Content      string   `json:"content"`
		}] `json:"fetch"`
		EventSource nodeStep[[]string] `json:"eventsource"`
		Websocket   nodeStep[string]   `json:"websocket"`
	} `json:"results"`
	DOM        string   `json:"dom"`
	Websockets []string `json:"websockets"`
}

// Chromium with HTTP Basic credentials (what a person types into the
// browser's prompt) loads a page through warden that uses fetch,
// EventSource and a websocket, as Gradio and Streamlit apps do: the browser
// sends the credentials it holds for the origin on each. Without
// credentials the page is a 401.
func TestBrowserPageThroughWarden(t *testing.T) {
	t.Parallel()
	requireChromium(t)
	m := startLLMServer(t)
	// Basic only, the default, and the non-ASCII password: the browser
	// sends it as UTF-8.
	w := startWarden(t, protectedEnv(m.addr))
	env := clientEnv(w.url(""), "basic")
	env["CLIENT_SECRET"] = testPassword
	env["CHROMIUM"] = chromiumBin
	var r browserResult
	runNode(t, &r, "browser.mjs", env)
	t.Logf("playwright-core %s, Chromium %s", r.Version, r.Browser)

	v := r.WithCredentials.value(t, "the visit with credentials")
	if v.Status != 200 {
		t.Fatalf("/ui with credentials: status %d (X-Warden-Error %q), want 200", v.Status, v.WardenError)
	}
	f := v.Results.Fetch.value(t, "the page's fetch calls")
	if f.ModelsStatus != 200 || !slices.Equal(f.Models, []string{"e2e-model"}) || f.ChatStatus != 200 || f.Content != "hello from the browser" {
		t.Errorf("fetch: %+v", f)
	}
	if ticks := v.Results.EventSource.value(t, "the page's EventSource"); !slices.Equal(ticks, []string{"tick-0", "tick-1", "tick-2"}) {
		t.Errorf("EventSource got %q, want tick-0..2", ticks)
	}
	if echo := v.Results.Websocket.value(t, "the page's websocket"); echo != "echo through warden" {
		t.Errorf("websocket echo %q", echo)
	}
	if !strings.Contains(v.DOM, "echo through warden") {
		t.Errorf("the page shows %q, not its results", v.DOM)
	}

	nv := r.WithoutCreds.value(t, "the visit without credentials")
	t.Logf("without credentials: status %d, X-Warden-Error %q; the navigation ended with %q", nv.Status, nv.WardenError, nv.GotoError)
	if nv.Status != 401 || nv.WardenError != "unauthorized" {
		t.Errorf("/ui without credentials: status %d, X-Warden-Error %q; want 401 unauthorized", nv.Status, nv.WardenError)
	}

	s := m.stats(t)
	checkNoCredentialReachedModel(t, s)
	for path, want := range map[string]int{"/ui": 1, "/v1/models": 1, "/v1/chat/completions": 1, "/ui/ws": 1} {
		if got := s.Paths[path]; got != want {
			t.Errorf("the model saw %s %d times, want %d (the visit without credentials reaches nothing)", path, got, want)
		}
	}
	if s.Paths["/ui/events"] < 1 {
		t.Errorf("the model never saw /ui/events")
	}
	var ws bool
	for _, req := range s.Requests {
		ws = ws || (req.Type == "websocket" && req.Path == "/ui/ws")
	}
	if !ws {
		t.Errorf("no websocket handshake reached the model: %+v", s.Requests)
	}
}

// --- Go SDKs ---

// The official Go SDKs: openai-go with its API key (Bearer) and with Basic
// set by option.WithHeader, which replaces the SDK's own Authorization;
// anthropic-sdk-go with its API key (Bearer in v2) and with X-Api-Key set
// by option.WithHeader. Each first talks to the model directly, to show what
// it sends, then through warden.
func TestGoSDKsThroughWarden(t *testing.T) {
	t.Parallel()
	m, w := startLLMStack(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bearer := "Bearer " + clientSecret
	basic := basicAuth(testUser, clientSecret)

	for _, tc := range []struct {
		name     string
		opts     []openaioption.RequestOption
		wantAuth string
	}{
		{"openai-go WithAPIKey", []openaioption.RequestOption{openaioption.WithAPIKey(clientSecret)}, bearer},
		{"openai-go Basic by WithHeader", []openaioption.RequestOption{
			openaioption.WithAPIKey("unused-with-basic"), openaioption.WithHeader("Authorization", basic),
		}, basic},
	} {
		t.Run(tc.name, func(t *testing.T) {
			newClient := func(base string) openai.Client {
				return openai.NewClient(append([]openaioption.RequestOption{openaioption.WithBaseURL(base + "/v1/")}, tc.opts...)...)
			}
			params := openai.ChatCompletionNewParams{
				Model:    "e2e-model",
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
			}
			m.reset(t)
			direct := newClient("http://" + m.addr)
			if _, err := direct.Chat.Completions.New(ctx, params); err != nil {
				t.Fatalf("directly to the model: %v", err)
			}
			if g := m.stats(t).Generations; len(g) != 1 || g[0].Authorization == nil || *g[0].Authorization != tc.wantAuth {
				t.Fatalf("the SDK sent Authorization %v, want %q", g, tc.wantAuth)
			}

			m.reset(t)
			c := newClient(w.url(""))
			resp, err := c.Chat.Completions.New(ctx, params)
			if err != nil {
				t.Fatalf("through warden: %v", err)
			}
			if got := resp.Choices[0].Message.Content; got != prompt {
				t.Errorf("reply %q, want %q", got, prompt)
			}
			params.StreamOptions.IncludeUsage = openai.Bool(true)
			stream := c.Chat.Completions.NewStreaming(ctx, params)
			var acc openai.ChatCompletionAccumulator
			chunks := 0
			for stream.Next() {
				acc.AddChunk(stream.Current())
				chunks++
			}
			if err := stream.Err(); err != nil {
				t.Fatalf("stream through warden: %v", err)
			}
			if len(acc.Choices) != 1 || acc.Choices[0].Message.Content != prompt || acc.Usage.CompletionTokens != 4 {
				t.Errorf("streamed reply %+v in %d chunks, want %q and 4 tokens", acc.Choices, chunks, prompt)
			}
			checkGenerations(t, m, 2)
		})
	}

	for _, tc := range []struct {
		name     string
		opt      anthropicoption.RequestOption
		wantAuth string // Authorization the model sees directly
		wantKey  string // x-api-key the model sees directly
	}{
		{"anthropic-sdk-go WithAPIKey", anthropicoption.WithAPIKey(clientSecret), bearer, ""},
		{"anthropic-sdk-go X-Api-Key by WithHeader", anthropicoption.WithHeader("X-Api-Key", clientSecret), "", clientSecret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			newClient := func(base string) anthropic.Client {
				return anthropic.NewClient(anthropicoption.WithBaseURL(base+"/"), tc.opt)
			}
			params := anthropic.MessageNewParams{
				Model:     "e2e-model",
				MaxTokens: 64,
				Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(prompt))},
			}
			m.reset(t)
			direct := newClient("http://" + m.addr)
			if _, err := direct.Messages.New(ctx, params); err != nil {
				t.Fatalf("directly to the model: %v", err)
			}
			g := m.stats(t).Generations
			if len(g) != 1 || strings.Trim(deref(g[0].Authorization), `"`) != orNone(tc.wantAuth) || strings.Trim(deref(g[0].XAPIKey), `"`) != orNone(tc.wantKey) {
				t.Fatalf("the SDK sent %+v, want Authorization %q and x-api-key %q", g, tc.wantAuth, tc.wantKey)
			}

			m.reset(t)
			c := newClient(w.url(""))
			msg, err := c.Messages.New(ctx, params)
			if err != nil {
				t.Fatalf("through warden: %v", err)
			}
			if len(msg.Content) != 1 || msg.Content[0].Text != prompt || msg.StopReason != anthropic.StopReasonEndTurn {
				t.Errorf("message %+v, want %q", msg.Content, prompt)
			}
			stream := c.Messages.NewStreaming(ctx, params)
			var acc anthropic.Message
			var events []string
			for stream.Next() {
				ev := stream.Current()
				events = append(events, ev.Type)
				if err := acc.Accumulate(ev); err != nil {
					t.Fatalf("accumulate %s: %v", ev.Type, err)
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatalf("stream through warden: %v", err)
			}
			if len(acc.Content) != 1 || acc.Content[0].Text != prompt || acc.StopReason != anthropic.StopReasonEndTurn {
				t.Errorf("streamed message %+v (events %q), want %q", acc.Content, events, prompt)
			}
			checkGenerations(t, m, 2)
		})
	}
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// --- load: autocannon, locust, vegeta ---

// credentialHeader is the header that carries clientSecret for auth.
func credentialHeader(auth string) (string, string) {
	if auth == "bearer" {
		return "Authorization", "Bearer " + clientSecret
	}
	return "Authorization", basicAuth(testUser, clientSecret)
}

// A few seconds of autocannon at 8 connections, with Basic and with Bearer:
// every answer 200. Not parallel: it loads the machine.
func TestAutocannonThroughWardenAllSucceed(t *testing.T) {
	requireNode(t)
	m, w := startLLMStack(t, map[string]string{"WARDEN_LOG_LEVEL": "info", "WARDEN_ACCESS_LOG": "false"})
	for _, auth := range []string{"basic", "bearer"} {
		t.Run(auth, func(t *testing.T) {
			before := m.stats(t).Paths["/v1/models"]
			var r struct {
				Version     string         `json:"version"`
				Requests    int            `json:"requests"`
				RPS         float64        `json:"rps"`
				P99         float64        `json:"latency_p99_ms"`
				Status2xx   int            `json:"status_2xx"`
				Non2xx      int            `json:"non2xx"`
				StatusCodes map[string]any `json:"status_codes"`
				Errors      int            `json:"errors"`
				Timeouts    int            `json:"timeouts"`
			}
			runNode(t, &r, "autocannon.mjs", clientEnv(w.url(""), auth), "/v1/models", "8", "3")
			t.Logf("autocannon %s: %d requests, %.0f/s, p99 %.0f ms, status codes %v", r.Version, r.Requests, r.RPS, r.P99, r.StatusCodes)
			if r.Requests == 0 || r.Status2xx != r.Requests || r.Non2xx != 0 || r.Errors != 0 || r.Timeouts != 0 {
				t.Errorf("%d requests: %d 2xx, %d non-2xx %v, %d errors, %d timeouts; want all 200",
					r.Requests, r.Status2xx, r.Non2xx, r.StatusCodes, r.Errors, r.Timeouts)
			}
			// autocannon may stop with a request per connection on the way.
			if got := m.stats(t).Paths["/v1/models"] - before; got < r.Status2xx || got > r.Status2xx+8 {
				t.Errorf("the model saw %d requests; autocannon got %d answers", got, r.Status2xx)
			}
		})
	}
}

// locust, headless, 5 users for 3 seconds, with Basic and with Bearer: no
// failure (a non-200 or a wrong body). Not parallel: it loads the machine.
func TestLocustThroughWardenAllSucceed(t *testing.T) {
	requireLocust(t)
	m, w := startLLMStack(t, map[string]string{"WARDEN_LOG_LEVEL": "info", "WARDEN_ACCESS_LOG": "false"})
	for _, auth := range []string{"basic", "bearer"} {
		t.Run(auth, func(t *testing.T) {
			before := m.stats(t).RequestsTotal
			name, value := credentialHeader(auth)
			prefix := filepath.Join(t.TempDir(), "locust")
			env := map[string]string{"E2E_AUTH_HEADER": name + ": " + value}
			for _, kv := range pythonEnv {
				k, v, _ := strings.Cut(kv, "=")
				env[k] = v
			}
			// locust exits 1 when a request failed.
			runTool(t, 60*time.Second, env, pythonBin, "-m", "locust", "-f", filepath.Join(testdataDir(t), "locustfile.py"),
				"--headless", "-u", "5", "-r", "5", "-t", "3s", "--host", w.url(""),
				"--csv", prefix, "--only-summary", "--loglevel", "WARNING")
			// The CSV is written once a second, so it may miss the last
			// second; a failure makes locust exit 1 (runTool fails) anyway.
			total, failures := locustTotals(t, prefix+"_stats.csv")
			t.Logf("locust: %d requests, %d failures", total, failures)
			if total == 0 || failures != 0 {
				t.Errorf("locust: %d requests, %d failures; want some and none", total, failures)
			}
			if b, err := os.ReadFile(prefix + "_failures.csv"); err != nil || bytes.Count(b, []byte("\n")) > 1 {
				t.Errorf("locust's failures: %s %v", b, err)
			}
			if got := m.stats(t).RequestsTotal - before; got < total {
				t.Errorf("the model saw %d requests, locust counted %d", got, total)
			}
		})
	}
}

// locustTotals reads the Aggregated row of locust's stats CSV.
func locustTotals(t testing.TB, path string) (requests, failures int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil || len(rows) < 2 {
		t.Fatalf("%s: %v (%d rows)", path, err, len(rows))
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	for _, row := range rows[1:] {
		if row[col["Name"]] == "Aggregated" {
			requests, _ = strconv.Atoi(row[col["Request Count"]])
			failures, _ = strconv.Atoi(row[col["Failure Count"]])
			return requests, failures
		}
	}
	t.Fatalf("%s has no Aggregated row", path)
	return 0, 0
}

// vegeta at a constant 200 requests a second for 3 seconds, with Basic and
// with Bearer: every answer 200. Not parallel: it loads the machine.
func TestVegetaThroughWardenAllSucceed(t *testing.T) {
	bin := vegetaBin(t)
	m, w := startLLMStack(t, map[string]string{"WARDEN_LOG_LEVEL": "info", "WARDEN_ACCESS_LOG": "false"})
	for _, auth := range []string{"basic", "bearer"} {
		t.Run(auth, func(t *testing.T) {
			before := m.stats(t).Paths["/v1/models"]
			dir := t.TempDir()
			targets := filepath.Join(dir, "targets")
			if err := os.WriteFile(targets, []byte("GET "+w.url("/v1/models")+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			results := filepath.Join(dir, "results.bin")
			name, value := credentialHeader(auth)
			runTool(t, 60*time.Second, nil, bin, "attack", "-rate=200", "-duration=3s", "-timeout=20s",
				"-header", name+": "+value, "-targets", targets, "-output", results)
			var rep struct {
				Requests    int            `json:"requests"`
				Success     float64        `json:"success"`
				StatusCodes map[string]int `json:"status_codes"`
				Errors      []string       `json:"errors"`
				Latencies   struct {
					P99 int64 `json:"99th"`
				} `json:"latencies"`
			}
			out := runTool(t, 30*time.Second, nil, bin, "report", "-type=json", results)
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("vegeta report %q: %v", out, err)
			}
			t.Logf("vegeta: %d requests, success %.3f, status codes %v, p99 %s", rep.Requests, rep.Success, rep.StatusCodes, time.Duration(rep.Latencies.P99))
			if rep.Requests != 600 || rep.StatusCodes["200"] != rep.Requests || len(rep.Errors) != 0 {
				t.Errorf("vegeta: %d requests, status codes %v, errors %q; want 600, all 200", rep.Requests, rep.StatusCodes, rep.Errors)
			}
			if got := m.stats(t).Paths["/v1/models"] - before; got != rep.StatusCodes["200"] {
				t.Errorf("the model saw %d requests, vegeta got %d answers", got, rep.StatusCodes["200"])
			}
		})
	}
}

// --- disconnects ---

// metricOrZero is the value of the sample named name (with its labels, as
// written), or 0 when /metrics has none.
func metricOrZero(t testing.TB, text, name string) float64 {
	t.Helper()
	f, _ := findMetric(t, text, name)
	return f
}

// A client that leaves while the model is still in its prefill makes
// warden close the upstream connection within 250 ms, so the model stops
// (here within 1 s, its own reaction included), and warden counts the
// disconnect by phase: "waiting" while it waits for the response head
// (a non-streamed answer; a stream whose head comes with the first token),
// "streaming" while a body that has begun is silent (vLLM sends a stream's
// head at once and then prefills). Each case is first run directly against
// the model, which shows it notices a client leaving by itself. Not
// parallel: it measures how soon.
func TestClientLeavingInPrefillStopsTheModel(t *testing.T) {
	// A long idle timeout: an upstream connection that warden failed to
	// close, and pooled instead, is then not closed by the reaper in time
	// to make the test pass for the wrong reason.
	m, w := startLLMStack(t, map[string]string{"WARDEN_UPSTREAM_IDLE_TIMEOUT": "60s"})
	cases := []struct {
		name   string
		stream bool
		head   string
		phase  string
	}{
		{"non-streamed", false, "early", "waiting"},
		{"streamed, head sent at once", true, "early", "streaming"},
		{"streamed, head with the first token", true, "late", "waiting"},
	}
	for _, direct := range []bool{true, false} {
		for i, tc := range cases {
			name := tc.name + " through warden"
			if direct {
				name = tc.name + " directly (baseline)"
			}
			t.Run(name, func(t *testing.T) {
				metric := fmt.Sprintf(`warden_client_disconnects_total{phase=%q}`, tc.phase)
				before := metricOrZero(t, metrics(t, w), metric)
				tag := fmt.Sprintf("leave-%v-%d", direct, i)
				url := w.url("/v1/chat/completions")
				if direct {
					url = m.url("/v1/chat/completions")
				}
				body := fmt.Sprintf(`{"model":"e2e-model@prefill=10,tag=%s,head=%s","stream":%v,"messages":[{"role":"user","content":%q}]}`,
					tag, tc.head, tc.stream, prompt)
				abandoned := abandonAfter(t, url, body, time.Second)

				var g llmGeneration
				waitFor(t, 3*time.Second, "the model to cancel the generation", func() bool {
					var ok bool
					g, ok = m.stats(t).generation(tag)
					return ok && g.Status != "running"
				})
				if g.Status != "cancelled" || g.Phase != "prefill" || g.EndedUnix == nil {
					t.Fatalf("the generation ended %s in %s; want cancelled in prefill", g.Status, g.Phase)
				}
				took := time.Duration((*g.EndedUnix - float64(abandoned.UnixNano())/1e9) * float64(time.Second))
				t.Logf("the model saw the client leave %s after it did (via %s)", took.Round(time.Millisecond), deref(g.SeenVia))
				if took > time.Second {
					t.Errorf("the model heard %s after the client left, want within 1s", took.Round(time.Millisecond))
				}
				if direct {
					return
				}
				waitFor(t, 2*time.Second, metric+" to count it", func() bool {
					return metricOrZero(t, metrics(t, w), metric) == before+1
				})
			})
		}
	}
}

// abandonAfter posts body to url with Basic credentials, reads what comes
// for d, then closes the connection, and returns when it did.
func abandonAfter(t *testing.T, url, body string, d time.Duration) time.Time {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", basicAuth(testUser, clientSecret))
	req.Header.Set("Content-Type", "application/json")
	done := make(chan string, 1)
	go func() {
		resp, err := tr.RoundTrip(req)
		if err != nil {
			done <- "no response head: " + err.Error()
			return
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		done <- fmt.Sprintf("status %d, %d body bytes, then %v", resp.StatusCode, n, err)
	}()
	select {
	case got := <-done:
		t.Fatalf("the exchange ended before the client left: %s", got)
	case <-time.After(d):
	}
	cancel()
	at := time.Now()
	select {
	case got := <-done:
		t.Logf("client: %s", got)
	case <-time.After(5 * time.Second):
		t.Fatal("the client did not stop")
	}
	return at
}

// --- denied paths ---

// WARDEN_DENY_PATHS answers 403 path_denied, with valid credentials, for
// every spelling of a denied path (percent-encoding, //, /./, /../), and
// the model sees none of them; other paths, oddly spelled, reach the model
// byte for byte.
func TestDeniedPathsNeverReachTheModel(t *testing.T) {
	t.Parallel()
	m, w := startLLMStack(t, map[string]string{"WARDEN_DENY_PATHS": "/pause,/sleep"})
	basic := basicAuth(testUser, clientSecret)
	post := func(addr, target string) string {
		return rawExchange(t, addr, "POST "+target+" HTTP/1.1\r\nHost: model\r\nAuthorization: "+basic+
			"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 10*time.Second)
	}

	// The baseline: the model serves /pause when asked directly.
	if got := statusOf(post(m.addr, "/pause")); got != 200 {
		t.Fatalf("the model answers /pause with %d, want 200", got)
	}
	m.reset(t)

	for _, target := range []string{
		"/pause", "/%70ause", "/%70%61%75%73%65", "//pause", "/v1/../pause", "/./pause", "/%2e/pause",
		"/v1/%2E%2E/pause", "/pause/", "/pause/now", "/pause?x=1", "/sleep", "///sleep",
	} {
		raw := post(w.addr, target)
		head, _, _ := strings.Cut(raw, "\r\n\r\n")
		if statusOf(raw) != 403 || !strings.Contains(strings.ToLower(head), "\r\nx-warden-error: path_denied") {
			t.Errorf("POST %s: want 403 path_denied, got:\n%s", target, head)
		}
	}
	if s := m.stats(t); s.RequestsTotal != 0 {
		t.Errorf("denied requests reached the model: %+v", s.Requests)
	}

	for _, target := range []string{"/v1/%6Dodels", "/v1//models", "/v1/./models", "/v1/x/../models", "/v1/models?next=/pause", "/v1/pause", "/pausing/../v1/models"} {
		m.reset(t)
		raw := rawExchange(t, w.addr, "GET "+target+" HTTP/1.1\r\nHost: model\r\nAuthorization: "+basic+
			"\r\nConnection: close\r\n\r\n", 10*time.Second)
		head, _, _ := strings.Cut(raw, "\r\n\r\n")
		if statusOf(raw) == 0 || strings.Contains(strings.ToLower(head), "x-warden-error") {
			t.Errorf("GET %s: warden answered itself:\n%s", target, head)
			continue
		}
		s := m.stats(t)
		path, query, _ := strings.Cut(target, "?")
		if len(s.Requests) != 1 || s.Requests[0].RawPath != path || s.Requests[0].Query != query {
			t.Errorf("GET %s: the model saw %+v, want the path and query byte for byte", target, s.Requests)
		}
	}
}
