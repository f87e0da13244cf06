// Command demo is a tiny stand-in for a model server, for trying warden:
// it "generates" a completion word by word and streams it as Server-Sent
// Events, like an OpenAI-style endpoint of vLLM or TGI would.
//
//	POST /v1/completions {"prompt": "...", "stream": true}
//	GET  /health
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8000", "address to listen on")
	flag.Parse()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("POST /v1/completions", completions)
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "demo model server: POST /v1/completions {\"prompt\": \"...\", \"stream\": true}")
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	// Stop cleanly on SIGTERM, as a model server should: warden (in wrapper
	// mode) exits with this status.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	log.Printf("demo model server listening on %s", *listen)
	err := srv.ListenAndServe()
	stop()
	if !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	log.Print("demo model server stopped")
}

type completionRequest struct {
	Prompt string `json:"prompt"`
	Stream bool   `json:"stream"`
}

func completions(w http.ResponseWriter, r *http.Request) {
	var req completionRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		http.Error(w, `{"error":"want JSON {\"prompt\": \"...\"}"}`, http.StatusBadRequest)
		return
	}
	words := strings.Fields("warden checked your credentials and passed this request to the model: " + req.Prompt)
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"text": strings.Join(words, " ")})
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	flusher, _ := w.(http.Flusher)
	for i, word := range words {
		b, _ := json.Marshal(map[string]any{"index": i, "text": word})
		fmt.Fprintf(w, "data: %s\n\n", b)
		if flusher != nil {
			flusher.Flush()
		}
		select {
		case <-time.After(80 * time.Millisecond): // "generation" time per token
		case <-r.Context().Done():
			return
		}
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
}
