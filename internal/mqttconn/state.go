package mqttconn

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
)

// conns are the connections Connect opened in this process and that were
// not disconnected yet, by client id: the source of ConnectionState, Ready
// and the eldercare_mqtt_connected gauge. One process may run several roles
// (`eldercare up`), each with its own client ids.
var conns = struct {
	sync.Mutex
	m map[string]paho.Client
}{m: map[string]paho.Client{}}

// tracked is the client Connect returns: Disconnect also forgets it.
type tracked struct {
	paho.Client
	id string
}

func (t *tracked) Disconnect(quiesce uint) {
	conns.Lock()
	if conns.m[t.id] == t.Client {
		delete(conns.m, t.id)
	}
	conns.Unlock()
	t.Client.Disconnect(quiesce)
}

func track(id string, c paho.Client) paho.Client {
	conns.Lock()
	conns.m[id] = c
	conns.Unlock()
	return &tracked{Client: c, id: id}
}

// Ready returns nil when every named client id has a connection opened by
// Connect in this process that is open now (paho's IsConnectionOpen: false
// from the moment the broker's socket closes until the reconnect's CONNACK),
// else an error naming the first that is not. It is the broker part of a
// role's /readyz.
func Ready(clientIDs ...string) error {
	conns.Lock()
	defer conns.Unlock()
	var errs []error
	for _, id := range clientIDs {
		c, ok := conns.m[id]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("mqtt client %s: not connected yet", id))
		case !c.IsConnectionOpen():
			errs = append(errs, fmt.Errorf("mqtt client %s: connection lost, reconnecting", id))
		}
	}
	return errors.Join(errs...)
}

// Collector returns a collector of eldercare_mqtt_connected{client_id}: 1
// while the connection of that client id is open, 0 while it is lost and
// paho reconnects; a connection that was disconnected on purpose is not
// reported. clientIDs, if given, limit it to those ids (a role's own);
// without them it reports every connection of the process. An id named but
// not connected yet reports 0, so the series exists from the start.
func Collector(clientIDs ...string) prometheus.Collector {
	return &collector{ids: slices.Clone(clientIDs)}
}

var connectedDesc = prometheus.NewDesc("eldercare_mqtt_connected",
	"1 while this process's MQTT connection of client_id is open, 0 while it is lost (paho reconnects every 5 s at most) or not made yet.",
	[]string{"client_id"}, nil)

type collector struct{ ids []string }

func (c *collector) Describe(ch chan<- *prometheus.Desc) { ch <- connectedDesc }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	conns.Lock()
	defer conns.Unlock()
	emit := func(id string, cl paho.Client) {
		v := 0.0
		if cl != nil && cl.IsConnectionOpen() {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(connectedDesc, prometheus.GaugeValue, v, id)
	}
	if len(c.ids) == 0 {
		for id, cl := range conns.m {
			emit(id, cl)
		}
		return
	}
	for _, id := range c.ids {
		emit(id, conns.m[id])
	}
}
