package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Hundreds of concurrent clients never see an error from warden, even with
// few upstream connections allowed: requests wait for a free one.
func TestHundredsOfConcurrentClientsAllSucceed(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	for _, maxConns := range []string{"1024", "8"} {
		t.Run("max_conns="+maxConns, func(t *testing.T) {
			up := startUpstream(t)
			w := startWarden(t, merge(protectedEnv(up.addr), map[string]string{
				"WARDEN_UPSTREAM_MAX_CONNS": maxConns, "WARDEN_LOG_LEVEL": "warn",
			}))
			const clients, perClient = 300, 10
			tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
			var wg sync.WaitGroup
			var mu sync.Mutex
			failures := map[string]int{}
			deadline := time.Now().Add(60 * time.Second)
			for i := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := range perClient {
						if time.Now().After(deadline) {
							return
						}
						req, _ := http.NewRequest("POST", w.url(fmt.Sprintf("/echo?c=%d&r=%d", i, j)), strings.NewReader("payload"))
						req.Header.Set("Authorization", basicAuth(testUser, testPassword))
						resp, err := c.Do(req)
						if err != nil {
							mu.Lock()
							failures[err.Error()]++
							mu.Unlock()
							continue
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 200 {
							mu.Lock()
							failures[fmt.Sprintf("status %d %s", resp.StatusCode, resp.Header.Get("X-Warden-Error"))]++
							mu.Unlock()
						}
					}
				}()
			}
			wg.Wait()
			if len(failures) > 0 {
				t.Fatalf("failures among %d requests: %v", clients*perClient, failures)
			}
			if got := up.stats(t).Requests; got != clients*perClient {
				t.Fatalf("upstream saw %d requests, want %d", got, clients*perClient)
			}
		})
	}
}
