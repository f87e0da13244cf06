// Command timingtest checks that auth.Checker.Check takes the same time
// whatever part of the credentials is wrong and however much of the secret a
// guess shares, with the dudect method (Reparaz, Balasch, Verbauwhede, "Dude,
// is my code constant time?", DATE 2017): time many calls for two classes of
// input of the same length, chosen in random order, and run Welch's t-test on
// the two timing distributions, also after cropping the slow tail at several
// percentiles. A |t| above the threshold (dudect: 10) means the classes are
// told apart by their timing.
//
//	go build -o /tmp/timingtest ./tools/timingtest
//	taskset -c 1 /tmp/timingtest -samples 2000000
//
// Each comparison pits a class against a baseline of wrong passwords that
// share no byte position with the secret. A deliberately leaky checker (it
// compares the raw password with bytes.Equal, which stops at the first
// differing word) is measured too: it must be caught, or the run had too
// little power to mean anything. The exit status is 1 if a pass/fail
// comparison leaks, 3 if the leaky control was not caught, 0 otherwise.
package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unsafe"

	"github.com/paperspace/warden/auth"
)

const (
	user = "paperspace"
	// numPercentiles is how many cropped tests run besides the uncropped
	// one, as in dudect.
	numPercentiles = 100
	// enoughMeasurements is how many samples a test needs before it counts
	// towards the maximum |t| (dudect's DUDECT_ENOUGH_MEASUREMENTS).
	enoughMeasurements = 10000
	// possibleLeak is dudect's "maybe" level of |t|.
	possibleLeak = 4.5
	// poolSize is how many distinct inputs each class draws from.
	poolSize = 256
)

// now is the time every check runs at; the checkers with a previous secret
// accept it until an hour later.
var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// sink keeps the results of the timed calls alive.
var sink auth.Result

// kind says what a comparison's verdict means for the exit status.
type kind int

const (
	passFail    kind = iota // a leak fails the run
	info                    // reported only
	control                 // a deliberately leaky checker: must be caught
	controlInfo             // leaky, reported only
)

func (k kind) String() string {
	return [...]string{"pass/fail", "info", "control", "control (info)"}[k]
}

// checker is *auth.Checker or the leaky control. Both classes of a
// comparison call the same method through the same call site, so that no
// difference in code placement can tell them apart: only the receiver (for
// the secret-length comparison) or the input differs.
type checker interface {
	Check(authorization []byte, now time.Time) auth.Result
}

// comparison is one two-class timing test. Class c calls
// checkers[c].Check(inputs[c][i], now), with i random; before each chunk
// of samples every input is drawn afresh from gens[c].
type comparison struct {
	name     string
	kind     kind
	checkers [2]checker
	gens     [2]generator
	inputs   [2][][]byte
}

// generator draws one Authorization value of a class.
type generator func() []byte

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("timingtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	samples := fs.Int("samples", 2_000_000, "timed samples per comparison (after the discarded first chunk)")
	timeout := fs.Duration("timeout", 10*time.Minute, "time budget for all comparisons together; a comparison that runs out reports the samples it has")
	threshold := fs.Float64("threshold", 10, "|t| at or above which a leak is declared (dudect: 10 is a leak, 4.5 a possible one)")
	batch := fs.Int("batch", 1, "calls per timed sample (raise it if one call is near the clock's resolution)")
	chunk := fs.Int("chunk", 100_000, "samples measured between two statistics updates; the first chunk sets the crop thresholds and is discarded")
	only := fs.String("run", "", "regular expression: run only the comparisons whose name matches")
	noControl := fs.Bool("nocontrol", false, "skip the leaky controls")
	verbose := fs.Bool("v", false, "print progress to stderr")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *samples < enoughMeasurements || *batch < 1 || *chunk < 1000 || *threshold <= 0 {
		_, _ = fmt.Fprintln(stderr, "timingtest: need -samples >= 10000, -batch >= 1, -chunk >= 1000, -threshold > 0")
		return 2
	}
	filter, err := regexp.Compile(*only)
	if err != nil {
		_, _ = fmt.Fprintln(stderr, "timingtest: -run:", err)
		return 2
	}

	comparisons, secret, err := setup()
	if err != nil {
		_, _ = fmt.Fprintln(stderr, "timingtest:", err)
		return 2
	}
	comparisons = slices.DeleteFunc(comparisons, func(c comparison) bool {
		return !filter.MatchString(c.name) || (*noControl && (c.kind == control || c.kind == controlInfo))
	})
	if len(comparisons) == 0 {
		_, _ = fmt.Fprintln(stderr, "timingtest: no comparison matches -run")
		return 2
	}

	// Measure on one OS thread, with the collector off: the loop allocates
	// nothing, and a collection or a thread switch in the middle of a
	// sample is noise.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	runtime.GC()

	res, overhead := clockResolution()
	_, _ = fmt.Fprintf(stdout, "%s %s/%s, GOMAXPROCS %d, %d usable CPUs\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), runtime.NumCPU())
	_, _ = fmt.Fprintf(stdout, "secret: %d bytes (base64 of 32 random bytes), user %q; clock: granularity %v, median interval between two readings %v; %d call(s) per sample\n",
		len(secret), user, res, overhead, *batch)
	_, _ = fmt.Fprintf(stdout, "%d samples per comparison, threshold |t| >= %g (possible leak at %g), timeout %v\n\n", *samples, *threshold, possibleLeak, *timeout)

	start := time.Now()
	deadline := start.Add(*timeout)
	results := make([]result, 0, len(comparisons))
	for i, c := range comparisons {
		budget := time.Until(deadline) / time.Duration(len(comparisons)-i)
		var progress io.Writer
		if *verbose {
			progress = stderr
		}
		r := measure(c, *samples, *batch, *chunk, time.Now().Add(budget), progress)
		results = append(results, r)
		if *verbose {
			_, _ = fmt.Fprintf(stderr, "%s: %d samples in %v, max |t| %.2f\n", c.name, r.n, r.elapsed.Round(time.Millisecond), math.Abs(r.maxT))
		}
	}

	runtime.KeepAlive(sink)
	status := report(stdout, results, *threshold)
	_, _ = fmt.Fprintf(stdout, "\ntotal run time %v\n", time.Since(start).Round(time.Millisecond))
	return status
}

// setup builds the checkers and the input pools. Every input in a comparison
// has the same length, so that the only difference between classes is
// content relative to the secret.
func setup() ([]comparison, string, error) {
	secret, err := randomBase64(32)
	if err != nil {
		return nil, "", err
	}
	check, err := auth.New(user, secret)
	if err != nil {
		return nil, "", err
	}
	// A second checker with the same secret, for the A/A calibration of
	// the two-checker comparison.
	twin, err := auth.New(user, secret)
	if err != nil {
		return nil, "", err
	}
	leaky := newLeaky(user, secret)

	n := len(secret)
	basic := func(u, p string) []byte {
		return []byte("Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+p)))
	}
	class := func(gen func() (string, string)) generator {
		return func() []byte { return basic(gen()) }
	}
	// noPrefix: wrong in every byte position.
	noPrefix := class(func() (string, string) { return user, unlike(secret) })
	// longPrefix: all but the last byte right.
	longPrefix := class(func() (string, string) { return user, secret[:n-1] + unlike(secret[n-1:]) })
	// halfPrefix: the first half right, every later byte wrong.
	halfPrefix := class(func() (string, string) { return user, secret[:n/2] + unlike(secret[n/2:]) })
	// wrongUser: the right password, a user name of the same length wrong in
	// every byte.
	wrongUser := class(func() (string, string) { return unlike(user), secret })
	correct := class(func() (string, string) { return user, secret })

	// Secrets of different lengths, the same wrong input (of the length of
	// the realistic secret) for both.
	short, err := randomBase64(6) // 8 characters
	if err != nil {
		return nil, "", err
	}
	long, err := randomBase64(48) // 64 characters
	if err != nil {
		return nil, "", err
	}
	checkShort, err := auth.New(user, short)
	if err != nil {
		return nil, "", err
	}
	checkLong, err := auth.New(user, long)
	if err != nil {
		return nil, "", err
	}
	anyWrong := class(func() (string, string) { return user, unlike(secret + short + long)[:n] })

	pair := func(a, b checker) [2]checker { return [2]checker{a, b} }
	gens := func(a, b generator) [2]generator { return [2]generator{a, b} }
	comparisons := []comparison{
		{name: "long prefix (all but last byte) vs no prefix", kind: passFail, checkers: pair(check, check), gens: gens(noPrefix, longPrefix)},
		{name: "half prefix vs no prefix", kind: passFail, checkers: pair(check, check), gens: gens(noPrefix, halfPrefix)},
		{name: "wrong user (right password) vs no prefix", kind: passFail, checkers: pair(check, check), gens: gens(noPrefix, wrongUser)},
		{name: "secret of 64 vs 8 bytes, same wrong input", kind: passFail, checkers: pair(checkShort, checkLong), gens: gens(anyWrong, anyWrong)},
		{name: "A/A: two checkers, same secret, same wrong input", kind: info, checkers: pair(check, twin), gens: gens(anyWrong, anyWrong)},
		{name: "A/A: no prefix vs no prefix", kind: info, checkers: pair(check, check), gens: gens(noPrefix, noPrefix)},
		{name: "correct credentials vs no prefix", kind: info, checkers: pair(check, check), gens: gens(noPrefix, correct)},
	}

	// The same questions for the secret-only carriers (Bearer, x-api-key),
	// and for every carrier whether the current or the previous secret
	// matched. Each carrier's checker accepts every scheme and a previous
	// secret, as a rollover would.
	previous, err := randomBase64(32)
	if err != nil {
		return nil, "", err
	}
	withAll := func(secret string) (*auth.Checker, error) {
		c, err := auth.New(user, secret)
		if err != nil {
			return nil, err
		}
		if c, err = c.WithSchemes(auth.SchemeBasic | auth.SchemeBearer | auth.SchemeAPIKey); err != nil {
			return nil, err
		}
		return c.WithPrevious(previous, now.Add(time.Hour))
	}
	rolling, err := withAll(secret)
	if err != nil {
		return nil, "", err
	}
	rollingShort, err := withAll(short)
	if err != nil {
		return nil, "", err
	}
	rollingLong, err := withAll(long)
	if err != nil {
		return nil, "", err
	}
	for _, carrier := range []struct {
		name string
		wrap func(*auth.Checker) checker
		enc  func(secret string) []byte
	}{
		{"basic", func(c *auth.Checker) checker { return c }, func(p string) []byte { return basic(user, p) }},
		{"bearer", func(c *auth.Checker) checker { return c }, func(p string) []byte { return []byte("Bearer " + p) }},
		{"x-api-key", func(c *auth.Checker) checker { return apiKeyChecker{c} }, func(p string) []byte { return []byte(p) }},
	} {
		c := carrier.wrap(rolling)
		gen := func(f func() string) generator { return func() []byte { return carrier.enc(f()) } }
		noPrefix := gen(func() string { return unlike(secret) })
		longPrefix := gen(func() string { return secret[:n-1] + unlike(secret[n-1:]) })
		current := gen(func() string { return secret })
		old := gen(func() string { return previous })
		anyWrong := gen(func() string { return unlike(secret + short + long)[:n] })
		if carrier.name != "basic" {
			comparisons = append(comparisons,
				comparison{name: carrier.name + ": long prefix vs no prefix", kind: passFail, checkers: pair(c, c), gens: gens(noPrefix, longPrefix)},
				comparison{
					name: carrier.name + ": secret of 64 vs 8 bytes, same wrong input", kind: passFail,
					checkers: pair(carrier.wrap(rollingShort), carrier.wrap(rollingLong)), gens: gens(anyWrong, anyWrong),
				})
		}
		comparisons = append(comparisons,
			comparison{name: carrier.name + ": previous secret matched vs current", kind: passFail, checkers: pair(c, c), gens: gens(current, old)})
	}

	comparisons = append(comparisons,
		comparison{name: "LEAKY bytes.Equal: long prefix vs no prefix", kind: control, checkers: pair(leaky, leaky), gens: gens(noPrefix, longPrefix)},
		comparison{name: "LEAKY bytes.Equal: half prefix vs no prefix", kind: controlInfo, checkers: pair(leaky, leaky), gens: gens(noPrefix, halfPrefix)},
	)
	for i := range comparisons {
		if err := comparisons[i].draw(); err != nil {
			return nil, "", err
		}
	}
	return comparisons, secret, nil
}

// slot is the room each input gets in align: two cache lines.
const slot = 128

// draw fills both classes' pools with fresh inputs. Fresh inputs for every
// chunk matter: a fixed pool of a few hundred inputs has its own timing
// offset (whatever makes one input a little faster than another), which
// averaging over more samples does not remove, so the t statistic between
// two fixed pools of the same kind grows without bound; over inputs drawn
// afresh it averages out. Each input sits at the start of its own 128-byte
// slot in one buffer, the classes interleaved, so that no class sits
// differently in the cache from the other (an input that straddles a cache
// line is slower to read).
func (c *comparison) draw() error {
	if c.inputs[0] == nil {
		buf := make([]byte, 2*poolSize*slot+64)
		// Start on a cache line.
		off := int(-uintptr(unsafe.Pointer(&buf[0])) & 63) //nolint:gosec // G103: only the address's alignment is read
		for class := range 2 {
			c.inputs[class] = make([][]byte, poolSize)
		}
		for i := range poolSize {
			for class := range 2 {
				c.inputs[class][i] = buf[off : off : off+slot]
				off += slot
			}
		}
	}
	for class := range 2 {
		for i, in := range c.inputs[class] {
			b := c.gens[class]()
			if len(b) > slot {
				return fmt.Errorf("an input of %d bytes does not fit a %d-byte slot", len(b), slot)
			}
			c.inputs[class][i] = append(in[:0], b...)
		}
	}
	return nil
}

// apiKeyChecker offers its input as an x-api-key header.
type apiKeyChecker struct{ c *auth.Checker }

func (a apiKeyChecker) Check(key []byte, now time.Time) auth.Result {
	r, _ := a.c.Verify(auth.Credentials{APIKey: key, APIKeys: 1}, now)
	return r
}

// leakyChecker does the same work as auth.Checker.Check (decode, split,
// hash both halves, compare the user digest in constant time) but compares
// the raw password with bytes.Equal, which returns at the first differing
// 8-byte word: the textbook leak the test must detect.
type leakyChecker struct {
	user   [sha256.Size]byte
	secret []byte
}

func newLeaky(user, password string) *leakyChecker {
	return &leakyChecker{user: sha256.Sum256([]byte(user)), secret: []byte(password)}
}

func (c *leakyChecker) Check(h []byte, _ time.Time) auth.Result {
	encoded := h[len("Basic "):]
	var buf [auth.MaxCredentialBytes]byte
	n, err := base64.StdEncoding.Decode(buf[:], encoded)
	if err != nil {
		return auth.Malformed
	}
	decoded := buf[:n]
	colon := bytes.IndexByte(decoded, ':')
	if colon < 0 {
		return auth.Malformed
	}
	u := sha256.Sum256(decoded[:colon])
	p := sha256.Sum256(decoded[colon+1:]) // hashed as the real check does, result unused
	sink ^= auth.Result(p[0])
	userOK := subtle.ConstantTimeCompare(u[:], c.user[:])
	passwordOK := 0
	if bytes.Equal(decoded[colon+1:], c.secret) {
		passwordOK = 1
	}
	switch {
	case userOK&passwordOK == 1:
		return auth.OK
	case userOK == 0:
		return auth.WrongUser
	default:
		return auth.WrongPassword
	}
}

// randomBase64 returns the standard base64 of n random bytes, like
// `openssl rand -base64 n`.
func randomBase64(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// unlike returns a string of len(s) base64 characters that differs from s in
// every position (and contains no colon).
func unlike(s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	var b strings.Builder
	for i := range len(s) {
		for {
			c := alphabet[mrand.IntN(len(alphabet))] //nolint:gosec // G404: test inputs, not secrets
			if c != s[i] {
				b.WriteByte(c)
				break
			}
		}
	}
	return b.String()
}

// clockResolution returns the granularity of the monotonic clock (the
// smallest gap between two distinct intervals measured between consecutive
// readings) and the median time between two consecutive readings.
func clockResolution() (res, overhead time.Duration) {
	const n = 100_001
	d := make([]time.Duration, n)
	for i := range d {
		t0 := time.Now()
		t1 := time.Now()
		d[i] = t1.Sub(t0)
	}
	slices.Sort(d)
	overhead = d[n/2]
	res = time.Hour
	for i := 1; i < n; i++ {
		if gap := d[i] - d[i-1]; gap > 0 && gap < res {
			res = gap
		}
	}
	return res, overhead
}

// welch is one online Welch t-test: Welford's running mean and sum of
// squared deviations per class.
type welch struct {
	n, mean, m2 [2]float64
}

func (w *welch) push(x float64, class uint8) {
	w.n[class]++
	delta := x - w.mean[class]
	w.mean[class] += delta / w.n[class]
	w.m2[class] += delta * (x - w.mean[class])
}

func (w *welch) t() float64 {
	if w.n[0] < 2 || w.n[1] < 2 {
		return 0
	}
	v0 := w.m2[0] / (w.n[0] - 1)
	v1 := w.m2[1] / (w.n[1] - 1)
	den := math.Sqrt(v0/w.n[0] + v1/w.n[1])
	if den == 0 {
		return 0
	}
	return (w.mean[0] - w.mean[1]) / den
}

func (w *welch) total() float64 { return w.n[0] + w.n[1] }

// result is the outcome of one comparison.
type result struct {
	comparison
	n       int           // samples in the statistics (the first chunk excluded)
	elapsed time.Duration // wall time, first chunk and warm-up included
	t0      float64       // uncropped t
	maxT    float64       // the t of largest magnitude over the uncropped and cropped tests
	maxAt   int           // which test: 0 uncropped, i the i-th crop
	crop    float64       // percentile kept by that test
	t2      float64       // second-order (variance) test, for information
	mean    [2]float64    // uncropped means, ns per call
	median  [2]float64    // medians of the last chunk, ns per call
}

// measure runs one comparison the way dudect does: classes drawn by a random
// bit per sample, inputs prepared beforehand, all samples of a chunk timed
// first and the statistics updated afterwards. The first chunk is a warm-up
// that also sets the crop thresholds (dudect's percentiles
// 1 - 0.5^(10 (i+1)/100)); it is not counted.
func measure(c comparison, samples, batch, chunk int, deadline time.Time, progress io.Writer) result {
	var seed [32]byte
	_, _ = rand.Read(seed[:])
	rng := mrand.New(mrand.NewChaCha8(seed)) //nolint:gosec // G404: ChaCha8 seeded from crypto/rand

	classes := make([]uint8, chunk)
	index := make([]uint8, chunk)
	times := make([]int64, chunk)
	checkers := c.checkers
	inputs := c.inputs

	// Warm up caches, branch predictors and the CPU's clock.
	for range 20_000 {
		for class := range 2 {
			sink ^= checkers[class].Check(inputs[class][rng.IntN(poolSize)], now)
		}
	}

	var (
		tests      [1 + numPercentiles]welch
		second     welch
		thresholds []float64
		r          = result{comparison: c}
		start      = time.Now()
	)
	for first := true; r.n < samples && (first || time.Now().Before(deadline)); {
		m := chunk
		if !first {
			m = min(chunk, samples-r.n)
		}
		for i := range m {
			bits := rng.Uint64()
			classes[i] = uint8(bits & 1)
			index[i] = uint8((bits >> 8) & (poolSize - 1))
		}
		if err := c.draw(); err != nil {
			panic(err) // the lengths were checked when the pools were first drawn
		}
		runtime.GC() // the timed loop allocates nothing; drawing did
		for i := range m {
			c, in := checkers[classes[i]], inputs[classes[i]][index[i]]
			t0 := time.Now()
			for range batch {
				sink ^= c.Check(in, now)
			}
			times[i] = int64(time.Since(t0))
		}
		if first {
			thresholds = percentiles(times[:m])
			first = false
			continue
		}
		for i := range m {
			x, class := float64(times[i]), classes[i]
			tests[0].push(x, class)
			for p, th := range thresholds {
				if x >= th {
					break // thresholds ascend
				}
				tests[1+p].push(x, class)
			}
			if tests[0].n[0] > enoughMeasurements {
				d := x - tests[0].mean[class]
				second.push(d*d, class)
			}
		}
		r.n += m
		r.median = classMedians(times[:m], classes[:m])
		if progress != nil {
			_, _ = fmt.Fprintf(progress, "  %s: %d samples, t %.2f\n", c.name, r.n, tests[0].t())
		}
	}
	r.elapsed = time.Since(start)

	r.t0 = tests[0].t()
	for i := range tests {
		if tests[i].total() <= enoughMeasurements {
			continue
		}
		if t := tests[i].t(); math.Abs(t) > math.Abs(r.maxT) {
			r.maxT, r.maxAt = t, i
		}
	}
	if r.maxAt > 0 {
		r.crop = cropPercentile(r.maxAt - 1)
	} else {
		r.crop = 1
	}
	r.t2 = second.t()
	for class := range 2 {
		r.mean[class] = tests[0].mean[class] / float64(batch)
		r.median[class] /= float64(batch)
	}
	return r
}

func cropPercentile(i int) float64 {
	return 1 - math.Pow(0.5, 10*float64(i+1)/numPercentiles)
}

// percentiles returns dudect's crop thresholds over the times of both
// classes, in ascending order.
func percentiles(times []int64) []float64 {
	sorted := slices.Clone(times)
	slices.Sort(sorted)
	th := make([]float64, numPercentiles)
	for i := range th {
		th[i] = float64(sorted[int(float64(len(sorted))*cropPercentile(i))])
	}
	return th
}

func classMedians(times []int64, classes []uint8) [2]float64 {
	var by [2][]int64
	for i, t := range times {
		by[classes[i]] = append(by[classes[i]], t)
	}
	var m [2]float64
	for class := range by {
		if len(by[class]) > 0 {
			slices.Sort(by[class])
			m[class] = float64(by[class][len(by[class])/2])
		}
	}
	return m
}

// report prints the table and returns the exit status.
func report(w io.Writer, results []result, threshold float64) int {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight|tabwriter.Debug)
	_, _ = fmt.Fprintln(tw, "comparison (B vs A)\tkind\tsamples\tmean ns A\tmean ns B\tmedian A\tmedian B\tt uncropped\tmax |t|\t(crop)\tt 2nd order\ttime\tverdict\t")
	status := 0
	for _, r := range results {
		leak := math.Abs(r.maxT) >= threshold
		verdict := "no leak detected"
		switch {
		case leak:
			verdict = "LEAK"
		case math.Abs(r.maxT) >= possibleLeak:
			verdict = "possible leak"
		}
		switch r.kind {
		case passFail:
			if leak {
				status = 1
			}
		case control:
			if leak {
				verdict = "LEAK (caught, as it must be)"
			} else {
				verdict += ": CONTROL MISSED, too little power"
				if status == 0 {
					status = 3
				}
			}
		case info, controlInfo:
			verdict += " (information only)"
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\t%.1f\t%.0f\t%.0f\t%.2f\t%.2f\t(%s)\t%.2f\t%v\t%s\t\n",
			r.name, r.kind, r.n, r.mean[0], r.mean[1], r.median[0], r.median[1], r.t0, math.Abs(r.maxT), cropName(r), r.t2, r.elapsed.Round(100*time.Millisecond), verdict)
	}
	_ = tw.Flush()
	_, _ = fmt.Fprintf(w, "\nEach comparison is \"B vs A\": A, the baseline, is the class after \"vs\". Times are ns per call, clock reading included.\n"+
		"t > 0 means A is slower. max |t| is over the uncropped test and the %d cropped ones with more than %d samples;\n"+
		"(crop) is the fraction of samples kept by the test with the largest |t|. The 2nd-order test compares variances; it is shown, not judged.\n",
		numPercentiles, enoughMeasurements)
	return status
}

func cropName(r result) string {
	if r.maxAt == 0 {
		return "none"
	}
	return fmt.Sprintf("%.3f", r.crop)
}
