package ingest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	http2 "github.com/influxdata/influxdb-client-go/v2/api/http"
	"github.com/influxdata/influxdb-client-go/v2/api/write"
)

// batchLoop collects items and writes them when BatchSize points are
// pending or FlushInterval after the first pending item. On ctx
// cancellation it writes what it holds within shutdownGrace and returns.
func (s *Service) batchLoop(ctx context.Context, in <-chan *item) {
	var (
		batch  []*item
		points int
	)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	flush := func(ctx context.Context) {
		timer.Stop()
		if len(batch) == 0 {
			return
		}
		s.flush(ctx, batch, points)
		batch, points = nil, 0
	}
	for {
		select {
		case <-ctx.Done():
			grace, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
			flush(grace)
			cancel()
			return
		case it := <-in:
			if len(batch) == 0 {
				timer.Reset(s.cfg.FlushInterval)
			}
			batch = append(batch, it)
			points += len(it.points)
			if points >= s.cfg.BatchSize {
				flush(ctx)
			}
		case <-timer.C:
			flush(ctx)
		}
	}
}

// flush writes the points of batch and acknowledges its messages, unless
// ctx ended first: then nothing is acknowledged and the broker delivers the
// messages again.
func (s *Service) flush(ctx context.Context, batch []*item, n int) {
	start := time.Now()
	pts := make([]pending, 0, n)
	for _, it := range batch {
		for _, p := range it.points {
			pts = append(pts, pending{p: p, it: it})
		}
	}
	rejected, err := s.writeSplit(ctx, pts)
	s.m.batchSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		s.log.Warn("ingest: batch not written; its messages stay unacknowledged", "messages", len(batch), "points", n, "err", err)
		s.release(len(batch))
		return
	}
	s.m.written.Add(float64(n - rejected))
	for _, it := range batch {
		it.msg.Ack()
	}
	s.release(len(batch))
}

// pending is a point with the message it came from.
type pending struct {
	p  *write.Point
	it *item
}

// writeSplit writes pts. When InfluxDB refuses the request as invalid (400,
// e.g. a field type conflict, which does not say which point), it splits the
// slice in halves until it finds the refused points; those are logged and
// counted as rejected{reason="influx_rejected"}. It returns the number of
// refused points, or an error only when ctx ended.
func (s *Service) writeSplit(ctx context.Context, pts []pending) (int, error) {
	err := s.writeRetry(ctx, pts)
	if err == nil {
		return 0, nil
	}
	if ctx.Err() != nil {
		return 0, err
	}
	if len(pts) == 1 {
		s.m.rejected.WithLabelValues("influx_rejected").Inc()
		s.log.Warn("ingest: InfluxDB refused a point; dropped", "topic", pts[0].it.msg.Topic(),
			"point", truncate([]byte(lineOf(pts[0].p)), logPayloadMax), "err", err)
		return 1, nil
	}
	mid := len(pts) / 2
	a, err := s.writeSplit(ctx, pts[:mid])
	if err != nil {
		return 0, err
	}
	b, err := s.writeSplit(ctx, pts[mid:])
	if err != nil {
		return 0, err
	}
	return a + b, nil
}

// writeRetry writes pts in one request, retrying transient failures
// (unreachable, timeouts, 5xx, 429, 404 after re-creating the database)
// with backoff until ctx ends. It returns nil, ctx's error, or a permanent
// error (InfluxDB refused the data).
func (s *Service) writeRetry(ctx context.Context, pts []pending) error {
	points := make([]*write.Point, len(pts))
	for i, p := range pts {
		points[i] = p.p
	}
	backoff := retryMin
	for attempt := 1; ; attempt++ {
		err := s.writer.WritePoint(ctx, points...)
		if err == nil {
			return nil
		}
		s.m.writeErrors.Inc()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch classify(err) {
		case permanent:
			return err
		case missingDB:
			s.log.Warn("ingest: database missing; creating it", "db", s.cfg.InfluxDatabase, "err", err)
			if cerr := s.createDB(ctx); cerr != nil {
				s.log.Warn("ingest: create database failed", "db", s.cfg.InfluxDatabase, "err", cerr)
			}
		}
		s.log.Warn("ingest: write failed; retrying", "points", len(points), "attempt", attempt, "retry_in", backoff, "err", err)
		if !sleep(ctx, backoff) {
			return ctx.Err()
		}
		backoff = nextBackoff(backoff)
	}
}

type errClass int

const (
	transient errClass = iota
	permanent
	missingDB
)

// classify sorts a write error. InfluxDB answers 400 for a (partial) write
// it refuses: bad line protocol, a field type conflict, a point outside the
// retention policy; 413 and 422 are refusals too. 404 is a missing database.
// Everything else (no answer, timeouts, 401/403 while credentials are being
// fixed, 429, 5xx) is retried: the data is fine and must not be dropped. An
// error that is no *http.Error comes from encoding the points and is
// permanent.
func classify(err error) errClass {
	var he *http2.Error
	if !errors.As(err, &he) {
		return permanent
	}
	switch he.StatusCode {
	case 400, 413, 422:
		return permanent
	case 404:
		return missingDB
	default:
		return transient
	}
}

// lineOf renders p as line protocol for a log message.
func lineOf(p *write.Point) string {
	var b strings.Builder
	b.WriteString(p.Name())
	for _, t := range p.TagList() {
		fmt.Fprintf(&b, ",%s=%s", t.Key, t.Value)
	}
	for i, f := range p.FieldList() {
		sep := ","
		if i == 0 {
			sep = " "
		}
		fmt.Fprintf(&b, "%s%s=%v", sep, f.Key, f.Value)
	}
	fmt.Fprintf(&b, " %d", p.Time().UnixMilli())
	return b.String()
}
