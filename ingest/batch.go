package ingest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	http2 "github.com/influxdata/influxdb-client-go/v2/api/http"
)

// batchLoop collects items and hands a batch to one of Writers writer
// goroutines when BatchSize points are pending or FlushInterval after the
// first pending item. Writers write in parallel; MaxInFlight (the
// semaphore taken by the handler) bounds what all of them hold. On ctx
// cancellation the writers finish what they hold within shutdownGrace and
// batchLoop returns.
func (s *Service) batchLoop(ctx context.Context, in <-chan *item) {
	type job struct {
		items  []*item
		points int
	}
	jobs := make(chan job)
	var wg sync.WaitGroup
	for range s.cfg.Writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				s.flush(ctx, j.items, j.points)
			}
		}()
	}
	defer wg.Wait()
	defer close(jobs)
	var (
		batch  []*item
		points int
	)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	hand := func(ctx context.Context) {
		timer.Stop()
		if len(batch) == 0 {
			return
		}
		select {
		case jobs <- job{batch, points}:
		case <-ctx.Done():
			// Shutting down with every writer busy: write it here.
			s.flush(ctx, batch, points) // flush gives itself shutdownGrace
		}
		batch, points = nil, 0
	}
	for {
		select {
		case <-ctx.Done():
			hand(ctx)
			return
		case it := <-in:
			// Take what else is queued without a blocking select each.
			for more := true; more; {
				if len(batch) == 0 {
					timer.Reset(s.cfg.FlushInterval)
				}
				batch = append(batch, it)
				points += len(it.points)
				if points >= s.cfg.BatchSize {
					hand(ctx)
				}
				select {
				case it = <-in:
				default:
					more = false
				}
			}
		case <-timer.C:
			hand(ctx)
		}
	}
}

// flush writes the points of batch and acknowledges its messages, unless
// ctx ended first: then nothing is acknowledged and the broker delivers the
// messages again. When ctx is already cancelled (shutdown) the write gets
// shutdownGrace.
func (s *Service) flush(ctx context.Context, batch []*item, n int) {
	if ctx.Err() != nil {
		grace, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
		defer cancel()
		ctx = grace
	}
	start := time.Now()
	pts := make([]pending, 0, n)
	for _, it := range batch {
		for i, p := range it.points {
			pts = append(pts, pending{p: p, it: it, bucket: it.buckets[i]})
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
	// Free the slots first: the decode workers fill the next batch while
	// paho sends the PUBACKs.
	s.release(len(batch))
	for _, it := range batch {
		it.msg.Ack()
	}
}

// pending is a point with the message it came from.
type pending struct {
	p      *point
	it     *item
	bucket string
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
		line := lineOf(pts[0].p)
		s.log.Warn("ingest: InfluxDB refused a point; stored as a dead letter", "topic", pts[0].it.msg.Topic(),
			"point", truncate([]byte(line), logPayloadMax), "err", err)
		it := pts[0].it
		if !s.deadLetter(ctx, DeadLetter{Received: it.received, Topic: it.msg.Topic(), Reason: "influx_rejected",
			Detail: fmt.Sprintf("%s: %v", line, err), Payload: it.msg.Payload()}) {
			return 0, fmt.Errorf("dead-letter store unavailable for a refused point of %s", it.msg.Topic())
		}
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
	// Line protocol per bucket, in one buffer each; nearly always a single
	// bucket.
	type body struct {
		b []byte
		n int
	}
	var bodies []body
	var buckets []string
	for _, p := range pts {
		i := slices.Index(buckets, p.bucket)
		if i < 0 {
			i = len(buckets)
			buckets = append(buckets, p.bucket)
			bodies = append(bodies, body{b: make([]byte, 0, 128*len(pts))})
		}
		if bodies[i].n > 0 {
			bodies[i].b = append(bodies[i].b, '\n')
		}
		bodies[i].b = p.p.appendLine(bodies[i].b)
		bodies[i].n++
	}
	for i, b := range buckets {
		if err := s.writeBucket(ctx, b, string(bodies[i].b), bodies[i].n); err != nil {
			return err
		}
	}
	return nil
}

// writeBucket is writeRetry for the n points of one bucket, in line
// protocol.
func (s *Service) writeBucket(ctx context.Context, bucket, lines string, n int) error {
	backoff := retryMin
	failing := false
	defer func() {
		if failing {
			s.m.writeFailing.Dec()
		}
	}()
	for attempt := 1; ; attempt++ {
		err := s.writers[bucket].WriteRecord(ctx, lines)
		if err == nil {
			return nil
		}
		if !failing && classify(err) != permanent {
			failing = true
			s.m.writeFailing.Inc()
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
		s.log.Warn("ingest: write failed; retrying", "points", n, "attempt", attempt, "retry_in", backoff, "err", err)
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
func lineOf(p *point) string { return string(p.appendLine(nil)) }
