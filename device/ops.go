package device

// Operations events: published by the platform itself (the embedded
// broker), not by a device, on the event channel of protocol v1.

// EventClientTakeover: the broker saw one MQTT client id taken over by a
// new connection again and again (two gateways configured with one client
// id, or a credential in use twice), and signals it once per window for an
// operations alert. Topic {root}/v1/{site}/{client id}/event, where site
// is the site of the gateway account that owns the id, or OpsSite. Attrs:
// "client_id" (string, the id in full), "username" (string), "takeovers"
// (number of takeovers within the window), "window_s" (s), "old_remote"
// and "new_remote" (string, host:port of the two connections).
const EventClientTakeover EventType = "client_takeover"

// OpsSite is the site level of an operations event that concerns no
// registered site: a client of the platform's own account or of an open
// broker.
const OpsSite = "_platform"

// OpsBrokerDevice is the device level of an operations event whose client
// id is not a valid protocol id; attrs.client_id carries it.
const OpsBrokerDevice = "_broker"
