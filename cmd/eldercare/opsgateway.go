package main

import (
	"context"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eldercare-iot/eldercare/device/gateway/spool"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
)

// spoolAgeGauge is eldercare_gateway_spool_oldest_seconds: how long ago the
// oldest reading or event in the gateway's spool was taken (its device
// time), 0 when the spool is empty, so an uplink that does not drain the
// spool shows as a growing age (deploy/prometheus/rules.yml
// EldercareGatewaySpoolAgeing). now is the wall clock.
func spoolAgeGauge(sp *spool.Spool, now func() time.Time) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "eldercare_gateway_spool_oldest_seconds",
		Help: "Age in seconds of the oldest entry in the gateway's spool, by its device time (0 when empty; NaN when the spool cannot be read).",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
		defer cancel()
		es, err := sp.Peek(ctx, 1)
		if err != nil {
			return nan()
		}
		if len(es) == 0 {
			return 0
		}
		return max(0, now().Sub(time.UnixMilli(es[0].TS)).Seconds())
	})
}

func nan() float64 { return math.NaN() }

// registerGatewayOps registers the gateway role's operational metrics
// that live outside device/gateway: the spool's oldest entry's age and the
// state of each MQTT connection (uplink and local broker).
func registerGatewayOps(reg prometheus.Registerer, sp *spool.Spool) {
	reg.MustRegister(spoolAgeGauge(sp, time.Now), mqttconn.Collector())
}
