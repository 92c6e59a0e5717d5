package main

import (
	"net/url"

	"github.com/eldercare-iot/eldercare/internal/influxd"
)

// influxCredentialsFile is where `up` keeps the accounts of the InfluxDB it
// manages, under --data (mode 0600; see internal/influxd.LoadOrCreateCredentials).
const influxCredentialsFile = "influxdb-credentials"

// managedInfluxAccess returns what the roles of `up` use against the
// managed InfluxDB at base: the service user's token ("user:password", for
// every write and query of ingest and dashboard), and for ingest a URL that
// also carries the admin in its user info. Ingest creates the database and
// its retention policies with InfluxQL through influxd.CreateDatabase, which
// takes no token and needs an admin; Go's HTTP client sends the user info as
// basic authentication only on requests without an Authorization header, so
// ingest's writes still go as the service user. Go's HTTP errors redact the
// password.
func managedInfluxAccess(base string, c influxd.Credentials) (token, ingestURL string) {
	u, err := url.Parse(base)
	if err != nil {
		return c.UserToken(), base
	}
	u.User = url.UserPassword(c.AdminUser, c.AdminPassword)
	return c.UserToken(), u.String()
}
