package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/eldercare-iot/eldercare/device/registry"
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

// serveOps serves /healthz (200 "ok" when healthy returns nil, else 503
// with the reason) and /metrics on ln until ctx is cancelled.
func serveOps(ctx context.Context, ln net.Listener, reg *prometheus.Registry, healthy func(context.Context) error) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := healthy(r.Context()); err != nil {
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
