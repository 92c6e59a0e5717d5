// Package influxd runs InfluxDB 1.8 (influxd) as a child process, for `eldercare up` and for tests.
//
// InfluxDB 1.8.10 serves the v2 write API and Flux queries when `[http] flux-enabled = true`, so the rest of the
// product talks to it through github.com/influxdata/influxdb-client-go/v2. With 1.8, the v2 client's bucket is named
// `database/retention-policy` (for example "eldercare/autogen"), the token is empty (auth is disabled here) and the
// organisation is ignored. Databases and retention policies are created with InfluxQL, see CreateDatabase.
//
// Build the binary with:
//
//	go install github.com/influxdata/influxdb/cmd/influxd@v1.8.10
//
// Sources: InfluxDB 1.8 configuration reference (https://docs.influxdata.com/influxdb/v1.8/administration/config/)
// and its v2 API compatibility notes (https://docs.influxdata.com/influxdb/v1.8/tools/api/#influxdb-2-0-api-compatibility-endpoints).
package influxd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/eldercare-iot/eldercare/internal/child"
)

// InstallCommand is the command that builds the influxd binary Find looks for.
const InstallCommand = "go install github.com/influxdata/influxdb/cmd/influxd@v1.8.10"

// EnvBinary names the environment variable that overrides where Find looks for influxd.
const EnvBinary = "ELDERCARE_INFLUXD"

const (
	// startTimeout is how long Start waits for GET /ping to answer 204. influxd 1.8 compiles the Flux standard
	// library before it opens its stores, which took 31 s on a 2-core amd64 machine at a load average of about 30
	// (measured 2026-12-07) and takes long on a small ARM board. An influxd that exits is noticed at once; only a slow
	// one waits this long.
	startTimeout = 2 * time.Minute
	stopTimeout  = 10 * time.Second // how long Stop waits after SIGTERM before SIGKILL
	tailSize     = 16 << 10         // bytes of influxd's output kept for error messages
)

// ErrNotFound is returned (wrapped) by Find and Start when no influxd binary can be located. Callers branch on it to
// skip a test or to tell the operator to install InfluxDB.
var ErrNotFound = errors.New("influxd binary not found")

// errBind marks a start that failed because a port was taken between picking it and influxd binding it.
var errBind = errors.New("address already in use")

// Find locates the influxd binary and returns its absolute path. It looks, in order, at:
//
//  1. $ELDERCARE_INFLUXD, which must then name an executable file (no fallback if it does not);
//  2. "influxd" on $PATH;
//  3. $GOBIN/influxd, then <each $GOPATH entry>/bin/influxd, with $GOPATH defaulting to $HOME/go (go is not run);
//  4. ./bin/influxd relative to the working directory.
//
// The error wraps ErrNotFound and says how to install the binary.
func Find() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		if isExecutable(p) {
			return filepath.Abs(p)
		}
		return "", fmt.Errorf("%w: $%s=%q is not an executable file; build it with `%s`", ErrNotFound, EnvBinary, p, InstallCommand)
	}
	if p, err := exec.LookPath("influxd"); err == nil {
		return filepath.Abs(p)
	}
	var candidates []string
	if gobin := os.Getenv("GOBIN"); gobin != "" {
		candidates = append(candidates, filepath.Join(gobin, "influxd"))
	}
	for _, dir := range gopath() {
		candidates = append(candidates, filepath.Join(dir, "bin", "influxd"))
	}
	candidates = append(candidates, filepath.Join("bin", "influxd"))
	for _, p := range candidates {
		if isExecutable(p) {
			return filepath.Abs(p)
		}
	}
	return "", fmt.Errorf("%w: set $%s, put influxd on $PATH, or build it with `%s` (looked in %s)",
		ErrNotFound, EnvBinary, InstallCommand, strings.Join(candidates, ", "))
}

// gopath returns the entries of $GOPATH, or $HOME/go when it is unset, without running the go command.
func gopath() []string {
	if gp := os.Getenv("GOPATH"); gp != "" {
		var dirs []string
		for _, d := range filepath.SplitList(gp) {
			if d != "" {
				dirs = append(dirs, d)
			}
		}
		return dirs
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return nil
	}
	return []string{filepath.Join(home, "go")}
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// Options configures Start. Only DataDir is required.
type Options struct {
	// Bin is the influxd binary. Empty means Find().
	Bin string
	// DataDir holds the generated config file (influxd.conf) and the meta, data and wal directories. It is created if
	// missing and kept by Stop, so a restart on the same DataDir keeps the data.
	DataDir string
	// HTTPAddr is the [http] bind-address, host:port. Empty means "127.0.0.1:0"; port 0 picks a free port on that host.
	HTTPAddr string
	// BindAddr is the top-level RPC bind-address used for backup and restore, with the same rules as HTTPAddr. Two
	// influxd processes must never share it, so it is never left at InfluxDB's default 127.0.0.1:8088.
	BindAddr string
	// Logger receives lifecycle events (starting, ready, stopping). Nil discards them.
	Logger *slog.Logger
	// Stdout, if set, receives influxd's own log (stdout and stderr). The last 16 KiB are also kept for errors.
	Stdout io.Writer
	// Auth, if set, turns HTTP authentication on ([http] auth-enabled = true). Start then makes sure the admin and
	// the service user of Auth exist with these passwords, that Auth.Database exists and that the service user has
	// ALL privileges on it (see Credentials). Nil leaves authentication off, as tests want.
	Auth *Credentials
}

// Server is a running influxd child process. Its methods are safe for concurrent use.
type Server struct {
	proc     *child.Process
	url      string
	rpcAddr  string
	dataDir  string
	log      *slog.Logger
	tail     *child.Tail
	stopping atomic.Bool
	stopOnce sync.Once
	stopErr  error
}

// Start writes a config file into opt.DataDir, starts influxd in its own process group (so a Ctrl-C delivered to the
// parent's terminal does not kill it before the parent stops it cleanly; on Linux it is also sent SIGTERM if the
// parent dies) and waits until GET /ping answers 204.
//
// ctx bounds the start-up only: once Start returns, the server runs until Stop is called. If a free port is taken
// between picking it and influxd binding it, Start retries once with new ports. Errors: ErrNotFound (wrapped) if
// opt.Bin is empty and Find fails; otherwise an error naming the config file, with the tail of influxd's log when
// the process exits early or does not answer within 2 minutes.
func Start(ctx context.Context, opt Options) (*Server, error) {
	if opt.DataDir == "" {
		return nil, errors.New("influxd: Options.DataDir is required")
	}
	if opt.Bin == "" {
		bin, err := Find()
		if err != nil {
			return nil, err
		}
		opt.Bin = bin
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.HTTPAddr == "" {
		opt.HTTPAddr = "127.0.0.1:0"
	}
	if opt.BindAddr == "" {
		opt.BindAddr = "127.0.0.1:0"
	}
	s, err := start(ctx, opt)
	if errors.Is(err, errBind) && (hasPortZero(opt.HTTPAddr) || hasPortZero(opt.BindAddr)) {
		opt.Logger.Warn("influxd: port taken before bind, retrying with new ports", "err", err)
		s, err = start(ctx, opt)
	}
	return s, err
}

func start(ctx context.Context, opt Options) (*Server, error) {
	httpAddr, err := resolveAddr(opt.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("influxd: http bind-address: %w", err)
	}
	rpcAddr, err := resolveAddr(opt.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("influxd: rpc bind-address: %w", err)
	}
	if httpAddr == rpcAddr {
		return nil, fmt.Errorf("influxd: http and rpc bind-address are both %s", httpAddr)
	}
	dataDir, err := filepath.Abs(opt.DataDir)
	if err != nil {
		return nil, fmt.Errorf("influxd: data dir: %w", err)
	}
	cfgPath, err := writeConfig(dataDir, httpAddr, rpcAddr, opt.Auth != nil)
	if err != nil {
		return nil, err
	}

	tail := child.NewTail(tailSize)
	var out io.Writer = tail
	if opt.Stdout != nil {
		out = io.MultiWriter(tail, opt.Stdout)
	}
	cmd := exec.Command(opt.Bin, "run", "-config", cfgPath)
	cmd.Dir = dataDir
	cmd.Env = cleanEnv(os.Environ())
	cmd.Stdout = out
	cmd.Stderr = out

	s := &Server{
		url:     "http://" + dialAddr(httpAddr),
		rpcAddr: rpcAddr,
		dataDir: dataDir,
		log:     opt.Logger.With("component", "influxd", "http", httpAddr),
		tail:    tail,
	}
	s.log.Info("starting influxd", "bin", opt.Bin, "config", cfgPath, "rpc", rpcAddr)
	// SIGTERM on the parent's death: influxd flushes its WAL and exits.
	proc, err := child.Start(cmd, syscall.SIGTERM)
	if err != nil {
		return nil, fmt.Errorf("influxd: start %s: %w", opt.Bin, err)
	}
	s.proc = proc
	if err := s.waitReady(ctx); err != nil {
		_ = s.Stop()
		return nil, fmt.Errorf("influxd (config %s): %w", cfgPath, err)
	}
	if opt.Auth != nil {
		if err := ensureUsers(ctx, s.url, *opt.Auth); err != nil {
			_ = s.Stop()
			return nil, fmt.Errorf("influxd (config %s): %w", cfgPath, err)
		}
	}
	s.log.Info("influxd ready", "url", s.url, "pid", cmd.Process.Pid, "auth", opt.Auth != nil)
	return s, nil
}

func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/ping", nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return nil
			}
		}
		select {
		case <-s.proc.Done():
			err := fmt.Errorf("exited before answering %s/ping (%v); log tail:\n%s", s.url, s.proc.Err(), s.tail.String())
			if strings.Contains(s.tail.String(), "address already in use") {
				err = fmt.Errorf("%w: %w", errBind, err)
			}
			return err
		case <-ctx.Done():
			if context.Cause(ctx) == context.DeadlineExceeded {
				return fmt.Errorf("no 204 from %s/ping: %w; log tail:\n%s", s.url, ctx.Err(), s.tail.String())
			}
			return fmt.Errorf("waiting for %s/ping: %w", s.url, ctx.Err())
		case <-tick.C:
		}
	}
}

// URL is the HTTP base URL, http://127.0.0.1:port (no trailing slash), for the v2 client and InfluxQL /query.
func (s *Server) URL() string { return s.url }

// RPCAddr is the RPC bind-address (host:port) used by `influxd backup` and `influxd restore`.
func (s *Server) RPCAddr() string { return s.rpcAddr }

// DataDir is the absolute data directory holding influxd.conf, meta, data and wal.
func (s *Server) DataDir() string { return s.dataDir }

// LogTail returns the last 16 KiB of influxd's own log.
func (s *Server) LogTail() string { return s.tail.String() }

// Stop sends SIGTERM, waits up to 10 s for a clean shutdown, then sends SIGKILL. It is idempotent: later calls return
// the first call's result. It returns nil if influxd stopped on SIGTERM or had already exited (Wait reports how), and
// an error if it had to be killed or could not be signalled.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() { s.stopErr = s.stop() })
	return s.stopErr
}

func (s *Server) stop() error {
	if s.proc.Exited() {
		return nil
	}
	s.stopping.Store(true)
	s.log.Info("stopping influxd", "pid", s.proc.Pid())
	if err := s.proc.Stop(stopTimeout); err != nil {
		return fmt.Errorf("influxd: %w", err)
	}
	s.log.Info("influxd stopped")
	return nil
}

// Wait blocks until the process has exited. It returns nil if the process exited after Stop, and otherwise its exit
// error with the tail of its log (influxd never exits on its own while healthy).
func (s *Server) Wait() error {
	<-s.proc.Done()
	if s.stopping.Load() {
		return nil
	}
	return fmt.Errorf("influxd exited unexpectedly (%v); log tail:\n%s", s.proc.Err(), s.tail.String())
}

// Done is closed when the process has exited.
func (s *Server) Done() <-chan struct{} { return s.proc.Done() }

// resolveAddr turns host:0 into host:<free port> by listening on it and closing the listener. Another process may
// take the port before influxd binds it; Start retries once when that happens.
func resolveAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if port != "0" {
		// A fixed port must be free: otherwise another InfluxDB already
		// listening there would answer /ping and be taken for this one.
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return "", fmt.Errorf("%s is in use (another InfluxDB?): %w", addr, err)
		}
		l.Close()
		return addr, nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("pick a free port on %q: %w", host, err)
	}
	defer l.Close()
	_, port, _ = net.SplitHostPort(l.Addr().String())
	return net.JoinHostPort(host, port), nil
}

func hasPortZero(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	return err == nil && port == "0"
}

// dialAddr maps a wildcard listen host ("", 0.0.0.0, ::) to 127.0.0.1.
func dialAddr(addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// cleanEnv drops INFLUXDB_* variables, which would override the generated config file.
func cleanEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "INFLUXDB_") {
			out = append(out, kv)
		}
	}
	return out
}

// Pid is the process id of the running influxd.
func (s *Server) Pid() int { return s.proc.Pid() }
