package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math"
	"net"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/paperspace/warden/auth"
	"github.com/paperspace/warden/proxy"
)

// serve runs warden with its settings until ctx ends, then drains and
// shuts down. With a command, it starts the model server as a child first
// and stops it last, and returns its exit status.
func serve(ctx context.Context, cfg *settings, command, childEnviron []string, stderr io.Writer) error {
	log := newLogger(cfg, stderr)
	metrics := proxy.NewMetrics(version)
	metrics.SetConfig(cfg.mode, cfg.tls != nil, cfg.previousUntil)
	metrics.SetSecretWeak(cfg.mode == modeProtected && len(cfg.weakSecrets) > 0)
	pc := cfg.proxy
	pc.Log, pc.Metrics = log, metrics
	p, err := proxy.New(pc)
	if err != nil {
		return fmt.Errorf("WARDEN_UPSTREAM: %w", err)
	}
	defer p.Close()

	proxyLn, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("WARDEN_LISTEN: %w", err)
	}
	if cfg.tls != nil {
		proxyLn = tls.NewListener(proxyLn, cfg.tls)
	}
	adminLn, err := net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		_ = proxyLn.Close()
		return fmt.Errorf("WARDEN_ADMIN_LISTEN: %w", err)
	}

	// The listeners are open: log the start line before anything can be
	// served, so that it comes first.
	logStart(log, cfg, proxyLn.Addr(), adminLn.Addr())

	// Wrapper mode: the model server starts now; /readyz stays 503 until it
	// accepts connections, like any upstream.
	var model *child
	var modelExited <-chan struct{}
	sig, err := cfg.signallerFor(command != nil)
	if err != nil {
		_ = proxyLn.Close()
		_ = adminLn.Close()
		return err
	}
	if command != nil {
		model, err = startChild(command, childEnviron, cfg.privileges.child, sig)
		if err != nil {
			_ = proxyLn.Close()
			_ = adminLn.Close()
			return err
		}
		defer model.Cleanup()
		modelExited = model.Exited()
		log.Info().Strs("command", command).Int("pid", model.cmd.Process.Pid).Msg("model server started")
		stopForwarding := model.ForwardSignals()
		defer stopForwarding()
	}
	if err := cfg.dropPrivileges(log, sig); err != nil {
		_ = proxyLn.Close()
		_ = adminLn.Close()
		if model != nil {
			model.Signal(syscall.SIGKILL)
		}
		return err
	}
	errs := p.Start(proxyLn, adminLn)

	reason := "shutting down"
	select {
	case <-ctx.Done():
		log.Info().Stringer("drain_delay", cfg.DrainDelay).Stringer("shutdown_timeout", cfg.ShutdownTimeout).
			Msg("signal received: draining")
	case <-modelExited:
		reason = "the model server exited (" + model.Describe() + ")"
		log.Error().Str("status", model.Describe()).Stringer("drain_delay", cfg.DrainDelay).
			Msg("the model server exited: draining")
	case err := <-errs:
		// A listener failed under us: nothing to drain.
		now, cancel := context.WithCancel(context.Background())
		cancel()
		_, _ = p.Shutdown(now)
		if model != nil {
			model.Stop(cfg.ShutdownTimeout)
		}
		return fmt.Errorf("serve: %w", err)
	}

	// Drain: readiness fails at once so the platform stops sending new
	// requests, but they are still served until the delay is over.
	p.Drain(reason)
	time.Sleep(cfg.DrainDelay)

	// Then stop accepting and give in-flight requests, streams and tunnels
	// their time.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	res, err := p.Shutdown(shutdownCtx)
	switch {
	case err != nil:
		log.Warn().Err(err).Msg("shutdown")
	case res.TimedOut:
		log.Warn().Stringer("shutdown_timeout", cfg.ShutdownTimeout).
			Msg("shutdown timeout reached: closing the connections still open")
	}
	if res.Tunnels > 0 {
		log.Warn().Int("tunnels", res.Tunnels).Msg("shutdown timeout reached: closing websocket tunnels still open")
	}
	// Only now, with no request left that needs it, the model server is
	// asked to stop: SIGTERM, then SIGKILL after the shutdown timeout.
	status := 0
	if model != nil {
		if model.Stop(cfg.ShutdownTimeout) {
			log.Warn().Stringer("shutdown_timeout", cfg.ShutdownTimeout).
				Msg("the model server did not stop in time: killed")
		}
		status = model.ExitCode()
		log.Info().Str("status", model.Describe()).Msg("model server stopped")
	}
	p.Close()
	log.Info().Int("exit_status", status).Msg("stopped")
	if status != 0 {
		return exitStatus(status)
	}
	return nil
}

func newLogger(cfg *settings, stderr io.Writer) zerolog.Logger {
	w := stderr
	if cfg.LogFormat == "console" {
		w = zerolog.ConsoleWriter{Out: stderr, TimeFormat: time.RFC3339}
	}
	zerolog.TimeFieldFormat = time.RFC3339Nano
	return zerolog.New(w).Level(cfg.logLevel).With().Timestamp().Logger()
}

// logStart writes the one start line, and a warning for public mode and
// for unknown variables. The secret appears only as its fingerprint.
func logStart(log zerolog.Logger, cfg *settings, listen, admin net.Addr) {
	for _, name := range cfg.unknownEnvVars {
		log.Warn().Str("variable", name).Msg("unknown WARDEN_ variable ignored: check its spelling")
	}
	e := log.Info().
		Str("version", version).
		Str("mode", cfg.mode).
		Str("upstream", cfg.Upstream).
		Str("listen", listen.String()).
		Str("admin_listen", admin.String())
	e = e.Bool("tls", cfg.tls != nil).
		Int("gomaxprocs", runtime.GOMAXPROCS(0))
	if limit := debug.SetMemoryLimit(-1); limit != math.MaxInt64 {
		e = e.Int64("go_memory_limit", limit)
	}
	if cfg.mode == modeProtected {
		e = e.Str("username", cfg.Username).
			Str("auth_schemes", cfg.schemes.String()).
			Str("secret_source", cfg.secretSource).
			Str("secret_fingerprint", cfg.fingerprint)
		if cfg.previousFingerprint != "" {
			e = e.Str("previous_secret_source", cfg.previousSource).
				Str("previous_secret_fingerprint", cfg.previousFingerprint).
				Time("previous_secret_until", cfg.previousUntil)
		}
	}
	e.Msg("warden started")
	if cfg.previousFingerprint != "" && !time.Now().Before(cfg.previousUntil) {
		log.Warn().Time("previous_secret_until", cfg.previousUntil).
			Msg("the previous secret's deadline has passed: only the current secret is accepted")
	}
	if cfg.mode == modePublic {
		log.Warn().Msg("public mode: requests are forwarded without authentication")
	}
	if len(cfg.weakSecrets) > 0 && cfg.mode == modeProtected {
		log.Warn().Strs("secret_sources", cfg.weakSecrets).
			Msgf("weak secret: fewer than %d bytes or about %d bits by a simple estimate, so it may be guessed; make one with `warden secret`", auth.MinSecretBytes, auth.MinSecretBits)
	}
}
