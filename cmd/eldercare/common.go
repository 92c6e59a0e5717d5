package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
)

// listen binds addr for the flag that named it; a port in use is an error
// that names the flag.
func listen(flag, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, flagErr(flag, addr, err)
	}
	return ln, nil
}

func flagErr(flag, addr string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s %s: address already in use; choose another with %s", flag, addr, flag)
	}
	return fmt.Errorf("%s %s: %w", flag, addr, err)
}

// openRegistry opens the database at dsn and the registry in it, imports
// each YAML document (bytes) and then the file at path (if any), and
// returns a cache with its first snapshot taken.
func openRegistry(ctx context.Context, dsn, path string, docs ...[]byte) (*sqldb.DB, *registry.Store, *registry.Cache, error) {
	db, err := sqldb.Open(ctx, dsn)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--db: %w", err)
	}
	store, err := registry.Open(ctx, db)
	if err == nil {
		for _, b := range docs {
			var doc *registry.Document
			if doc, err = registry.ParseYAML(bytes.NewReader(b)); err == nil {
				err = store.Import(ctx, doc)
			}
			if err != nil {
				break
			}
		}
	}
	if err == nil && path != "" {
		if err = registry.LoadFile(ctx, store, path); err != nil {
			err = fmt.Errorf("--registry: %w", err)
		}
	}
	cache := registry.NewCache(store, 10*time.Second)
	if err == nil {
		err = cache.Refresh(ctx)
	}
	if err != nil {
		db.Close()
		return nil, nil, nil, err
	}
	return db, store, cache, nil
}

// newMetrics returns a registry with the Go and process collectors and
// eldercare_build_info (version.go).
func newMetrics() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), newBuildInfo())
	return reg
}

// serveOps serves /healthz (liveness: 200 "ok" while the process
// answers), /readyz (readiness: 200 "ok" when ready returns nil, else 503
// with the reason) and /metrics on ln until ctx is cancelled. It also
// registers eldercare_ready (see registerReady) on reg.
func serveOps(ctx context.Context, ln net.Listener, reg *prometheus.Registry, ready func(context.Context) error) error {
	if err := registerReady(reg, ready); err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := ready(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("--http %s: %w", ln.Addr(), err)
	}
	return nil
}

// readyTimeout bounds one readiness check (a database ping, an InfluxDB
// /ping).
const readyTimeout = 2 * time.Second

// registerReady registers eldercare_ready on reg: 1 when ready returns nil
// at the scrape, else 0, so Prometheus can alert on a role that runs but
// cannot do its job (deploy/prometheus/rules.yml EldercareRoleNotReady).
func registerReady(reg prometheus.Registerer, ready func(context.Context) error) error {
	return reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "eldercare_ready",
		Help: "1 when this process is ready (its /readyz answers 200: broker connections open, stores reachable, engine started), else 0.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
		defer cancel()
		if ready(ctx) != nil {
			return 0
		}
		return 1
	}))
}

// allReady joins checks into one readiness check that runs them all and
// reports every failure.
func allReady(checks ...func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, readyTimeout)
		defer cancel()
		var errs []error
		for _, c := range checks {
			errs = append(errs, c(ctx))
		}
		return errors.Join(errs...)
	}
}

// dbReady checks that the database answers a ping.
func dbReady(db *sqldb.DB) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := db.PingContext(ctx); err != nil {
			return fmt.Errorf("database: %w", err)
		}
		return nil
	}
}

// mqttReady checks that this process's MQTT connections of ids are open
// (internal/mqttconn.Ready).
func mqttReady(ids ...string) func(context.Context) error {
	return func(context.Context) error { return mqttconn.Ready(ids...) }
}

// influxReady checks that InfluxDB at base answers GET /ping with 204 (it
// needs no credentials).
func influxReady(base string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/ping", nil)
		if err != nil {
			return fmt.Errorf("influxdb: %w", err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("influxdb: %w", err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("influxdb: /ping answered %s", resp.Status)
		}
		return nil
	}
}
