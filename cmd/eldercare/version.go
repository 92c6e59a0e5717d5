package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
)

// Build stamps, set with -ldflags "-X main.Version=... -X main.Commit=...
// -X main.Date=..." by the Makefile and .goreleaser.yaml. A plain `go build`
// leaves Version "dev" and takes Commit and Date from the Go toolchain's VCS
// stamp when there is one.
var (
	Version = "dev"
	Commit  = ""
	Date    = ""
)

// buildStamp returns the version, the commit (short hash, "+dirty" when the
// work tree had changes) and the build date (RFC 3339, or "unknown").
func buildStamp() (version, commit, date string) {
	version, commit, date = Version, Commit, Date
	if commit == "" || date == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			var rev, at string
			dirty := false
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.time":
					at = s.Value
				case "vcs.modified":
					dirty = s.Value == "true"
				}
			}
			if commit == "" && rev != "" {
				commit = rev[:min(12, len(rev))]
				if dirty {
					commit += "+dirty"
				}
			}
			if date == "" {
				date = at
			}
		}
	}
	if commit == "" {
		commit = "unknown"
	}
	if date == "" {
		date = "unknown"
	}
	return version, commit, date
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, build date, Go version and the wire protocol version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, c, d := buildStamp()
			fmt.Fprintf(cmd.OutOrStdout(), "eldercare %s (commit %s, built %s, %s %s/%s, protocol v1)\n",
				v, c, d, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}

// newBuildInfo returns the gauge eldercare_build_info{version,commit,go_version}
// = 1, as Prometheus' own *_build_info metrics: join on it to label any
// series with the running release.
func newBuildInfo() prometheus.Collector {
	v, c, _ := buildStamp()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "eldercare_build_info",
		Help:        "A metric with a constant '1' value labelled by the version, commit and Go version the binary was built from.",
		ConstLabels: prometheus.Labels{"version": v, "commit": c, "go_version": runtime.Version()},
	})
	g.Set(1)
	return g
}
