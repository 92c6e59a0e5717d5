package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/ingest"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
)

// ingestLookup tags readings from the registry cache's current snapshot.
func ingestLookup(c *registry.Cache) ingest.LookupFunc {
	return func(dev string, t time.Time) (string, string) {
		sn := c.Current()
		if sn == nil {
			return "", ""
		}
		var resident, kind string
		if r, ok := sn.ResidentAt(dev, t); ok {
			resident = r.ID
		}
		if d, ok := sn.Device(dev); ok {
			kind = d.Kind
		}
		return resident, kind
	}
}

// alertingResidents resolves residents for alerting from the cache.
func alertingResidents(c *registry.Cache) alerting.ResidentsFunc {
	return func(dev string, t time.Time) (registry.Resident, bool) {
		sn := c.Current()
		if sn == nil {
			return registry.Resident{}, false
		}
		return sn.ResidentAt(dev, t)
	}
}

// registryDirectory gives the alerting rules the registry's current
// snapshot: site time zones, device kinds, bindings and meal cards.
func registryDirectory(c *registry.Cache) func() alerting.Directory {
	return func() alerting.Directory { return c.Current() }
}

// alertingProgramme lets the scheduled programme rules (dose_missed, visits)
// list the residents of every site from the registry store.
func alertingProgramme(store *registry.Store) alerting.ProgrammeConfig {
	return alerting.ProgrammeConfig{Residents: func(ctx context.Context) ([]registry.Resident, error) {
		return store.Residents(ctx, "")
	}}
}

// The rules list meal-card holders through the snapshot.
var _ alerting.CardHolders = (*registry.Snapshot)(nil)

// roleDeps are what a role's constructor takes from the command that runs
// it: a role's own command opens them from its flags, up opens one of each
// and shares it between the roles.
type roleDeps struct {
	DB    *sqldb.DB
	Store *registry.Store
	Cache *registry.Cache
	Reg   *prometheus.Registry
	Log   *slog.Logger
}

// with is d with another logger.
func (d roleDeps) with(log *slog.Logger) roleDeps { d.Log = log; return d }
