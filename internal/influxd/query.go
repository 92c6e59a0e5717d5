package influxd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// RetentionPolicy describes an InfluxDB 1.8 retention policy. With the v2 client its bucket is "database/Name".
type RetentionPolicy struct {
	// Name of the policy, for example "raw" or "one_year".
	Name string
	// Duration data is kept; 0 means INF (forever). Otherwise at least 1 h (InfluxDB's minimum) and whole seconds.
	Duration time.Duration
	// Default makes it the database's default policy, used by writes that name no policy. If several are marked,
	// the last one wins.
	Default bool
}

// CreateDatabase creates database db and the given retention policies (replication 1) through InfluxQL on
// POST {url}/query. It is idempotent: an existing database is kept, and an existing policy whose duration or default
// flag differs is altered to match. CREATE DATABASE also creates the "autogen" policy (INF), so "db/autogen" is a
// valid v2 bucket afterwards.
//
// With authentication on, the statements need an admin: give its "user:password" in the URL's user info
// (http://user:password@host:8086), which Go's HTTP client sends as basic authentication, or use CreateDatabaseAs.
//
// Errors: invalid arguments; transport errors; a non-2xx status; or InfluxDB's own error for a statement.
func CreateDatabase(ctx context.Context, url, db string, rps ...RetentionPolicy) error {
	return CreateDatabaseAs(ctx, url, "", db, rps...)
}

// CreateDatabaseAs is CreateDatabase authenticated as token, "user:password" of an InfluxDB 1.8 admin (sent as
// "Authorization: Token user:password", which 1.8 accepts on /query as on the v2 endpoints); "" sends none.
func CreateDatabaseAs(ctx context.Context, url, token, db string, rps ...RetentionPolicy) error {
	if db == "" {
		return errors.New("influxd: create database: empty name")
	}
	for _, rp := range rps {
		if err := rp.validate(); err != nil {
			return fmt.Errorf("influxd: create database %q: %w", db, err)
		}
	}
	if err := execQL(ctx, url, token, "", "CREATE DATABASE "+QuoteIdent(db)); err != nil {
		return fmt.Errorf("influxd: create database %q: %w", db, err)
	}
	for _, rp := range rps {
		spec := fmt.Sprintf("%s ON %s DURATION %s REPLICATION 1", QuoteIdent(rp.Name), QuoteIdent(db), durationLit(rp.Duration))
		if rp.Default {
			spec += " DEFAULT"
		}
		err := execQL(ctx, url, token, db, "CREATE RETENTION POLICY "+spec)
		if err != nil && (strings.Contains(err.Error(), "retention policy already exists") || strings.Contains(err.Error(), "retention policy conflicts")) {
			err = execQL(ctx, url, token, db, "ALTER RETENTION POLICY "+spec)
		}
		if err != nil {
			return fmt.Errorf("influxd: create retention policy %q on %q: %w", rp.Name, db, err)
		}
	}
	return nil
}

func (rp RetentionPolicy) validate() error {
	switch {
	case rp.Name == "":
		return errors.New("retention policy with empty name")
	case rp.Duration < 0:
		return fmt.Errorf("retention policy %q: negative duration %s", rp.Name, rp.Duration)
	case rp.Duration != 0 && rp.Duration < time.Hour:
		return fmt.Errorf("retention policy %q: duration %s is below InfluxDB's minimum of 1h", rp.Name, rp.Duration)
	case rp.Duration%time.Second != 0:
		return fmt.Errorf("retention policy %q: duration %s is not whole seconds", rp.Name, rp.Duration)
	}
	return nil
}

// durationLit formats d as an InfluxQL duration literal; 0 is INF.
func durationLit(d time.Duration) string {
	switch {
	case d == 0:
		return "INF"
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	default:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
}

var identReplacer = strings.NewReplacer("\n", `\n`, `\`, `\\`, `"`, `\"`)

// QuoteIdent returns name as a double-quoted InfluxQL identifier, escaping backslash, double quote and newline, as
// influxql.QuoteIdent does. Example: my "db" -> "my \"db\"".
func QuoteIdent(name string) string {
	return `"` + identReplacer.Replace(name) + `"`
}

// execQL runs one InfluxQL statement with POST /query, authenticated as token ("user:password", "" for none), and
// returns the statement's error, if any.
func execQL(ctx context.Context, baseURL, token, db, stmt string) error {
	form := url.Values{"q": {stmt}}
	if db != "" {
		form.Set("db", db)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(baseURL, "/")+"/query",
		strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if token != "" {
		req.Header.Set("Authorization", "Token "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read /query response: %w", err)
	}
	var r struct {
		Error   string `json:"error"`
		Results []struct {
			Error string `json:"error"`
		} `json:"results"`
	}
	jerr := json.Unmarshal(body, &r)
	switch {
	case r.Error != "":
		return fmt.Errorf("%s: %s (HTTP %d)", stmt, r.Error, resp.StatusCode)
	case resp.StatusCode/100 != 2:
		return fmt.Errorf("%s: HTTP %d: %s", stmt, resp.StatusCode, strings.TrimSpace(string(body)))
	case jerr != nil:
		return fmt.Errorf("%s: decode response %q: %w", stmt, body, jerr)
	}
	for _, res := range r.Results {
		if res.Error != "" {
			return fmt.Errorf("%s: %s", stmt, res.Error)
		}
	}
	return nil
}
