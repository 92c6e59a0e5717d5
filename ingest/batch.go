package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	http2 "github.com/influxdata/influxdb-client-go/v2/api/http"

	"github.com/eldercare-iot/eldercare/internal/mqttconn"
)

// flush writes the points of bt and acknowledges its messages (after those
// of every older batch, s.acks), unless ctx ended first (the writers'
// context ends shutdownGrace after shutdown began): then nothing is
// acknowledged and the broker delivers the messages again.
func (s *Service) flush(ctx context.Context, bt *batch) {
	batch, n := bt.items, bt.points
	start := time.Now()
	pts := make([]pending, 0, n)
	for _, it := range batch {
		for i := range it.ends {
			pts = append(pts, pending{i: i, it: it})
		}
	}
	refused, err := s.writeSplit(ctx, pts)
	s.m.batchSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		s.log.Warn("ingest: batch not written; its messages stay unacknowledged", "messages", len(batch), "points", n, "err", err)
		s.releaseReceipts(receiptsOf(batch))
		s.acks.complete(bt.seq, nil)
		return
	}
	s.m.written.Add(float64(n - len(refused)))
	// A message with a refused point is acknowledged once the point is a
	// dead letter: the dead-letter loop does that, so that a failing
	// dead-letter store holds only that message, not the batch.
	var deadLetters map[*item][]DeadLetter
	if len(refused) > 0 {
		deadLetters = make(map[*item][]DeadLetter, len(refused))
	}
	for _, r := range refused {
		it := r.p.it
		deadLetters[it] = append(deadLetters[it], DeadLetter{Received: it.received, Topic: it.msg.Topic(),
			Reason: "influx_rejected", Part: fmt.Sprintf("point %d", r.p.i), Payload: it.msg.Payload(),
			Detail: fmt.Sprintf("%s: %v", r.p.line(), r.err)})
	}
	rs := make([]mqttconn.Receipt, 0, len(batch))
	for _, it := range batch {
		if dls, ok := deadLetters[it]; ok {
			s.rejects.push(rejected{receipt: it.receipt, received: it.received, deadLetters: dls}, 1)
			continue
		}
		rs = append(rs, it.receipt)
	}
	s.acks.complete(bt.seq, rs)
}

func receiptsOf(batch []*item) []mqttconn.Receipt {
	rs := make([]mqttconn.Receipt, len(batch))
	for i, it := range batch {
		rs[i] = it.receipt
	}
	return rs
}

// pending is point i of a message.
type pending struct {
	it *item
	i  int
}

func (p pending) line() []byte { return p.it.line(p.i) }

// refusal is a point InfluxDB refused, with its answer.
type refusal struct {
	p   pending
	err error
}

// writeSplit writes pts. When InfluxDB refuses the request as invalid (400,
// e.g. a field type conflict, which does not say which point), it splits the
// slice in halves until it finds the refused points; those are logged,
// counted as rejected{reason="influx_rejected"} and returned, so that the
// caller stores them as dead letters. It returns an error only when ctx
// ended.
func (s *Service) writeSplit(ctx context.Context, pts []pending) ([]refusal, error) {
	err := s.writeRetry(ctx, pts)
	if err == nil {
		return nil, nil
	}
	if ctx.Err() != nil {
		return nil, err
	}
	if len(pts) == 1 {
		s.m.rejected.WithLabelValues("influx_rejected").Inc()
		s.log.Warn("ingest: InfluxDB refused a point; it goes to the dead-letter store", "topic", pts[0].it.msg.Topic(),
			"point", truncate(pts[0].line(), logPayloadMax), "err", err)
		return []refusal{{pts[0], err}}, nil
	}
	mid := len(pts) / 2
	a, err := s.writeSplit(ctx, pts[:mid])
	if err != nil {
		return nil, err
	}
	b, err := s.writeSplit(ctx, pts[mid:])
	if err != nil {
		return nil, err
	}
	return append(a, b...), nil
}

// writeRetry writes pts in one request, retrying transient failures
// (unreachable, timeouts, 5xx, 429, 404 after re-creating the database)
// with backoff until ctx ends. It returns nil, ctx's error, or a permanent
// error (InfluxDB refused the data).
func (s *Service) writeRetry(ctx context.Context, pts []pending) error {
	// Line protocol per bucket, in one buffer each; nearly always a single
	// bucket.
	type body struct {
		b *[]byte
		n int
	}
	var bodies []body
	var buckets []string
	defer func() {
		for _, b := range bodies {
			bodyPool.Put(b.b)
		}
	}()
	for _, p := range pts {
		bucket := p.it.buckets[p.i]
		i := slices.Index(buckets, bucket)
		if i < 0 {
			i = len(buckets)
			buckets = append(buckets, bucket)
			bodies = append(bodies, body{b: bodyPool.Get().(*[]byte)})
			*bodies[i].b = (*bodies[i].b)[:0]
		}
		b := *bodies[i].b
		if bodies[i].n > 0 {
			b = append(b, '\n')
		}
		*bodies[i].b = append(b, p.line()...)
		bodies[i].n++
	}
	for i, b := range buckets {
		if err := s.writeBucket(ctx, b, *bodies[i].b, bodies[i].n); err != nil {
			return err
		}
	}
	return nil
}

// bodyPool holds line-protocol buffers: a batch of 5,000 points is about
// 600 KB, worth reusing rather than allocating and clearing per batch.
var bodyPool = sync.Pool{New: func() any { return new([]byte) }}

// post sends lines (line protocol, newline-separated) to the v2 write
// endpoint of bucket through the InfluxDB client's HTTP service, which adds
// the token. Errors: *http2.Error (with the status code InfluxDB answered,
// or the transport error).
func (s *Service) post(ctx context.Context, bucket string, lines []byte) error {
	perr := s.client.HTTPService().DoPostRequest(ctx, s.writeURLs[bucket], bytes.NewReader(lines),
		func(r *http.Request) { r.Header.Set("Content-Type", "text/plain; charset=utf-8") },
		func(r *http.Response) error { return r.Body.Close() })
	if perr != nil {
		return perr
	}
	return nil
}

// writeBucket is writeRetry for the n points of one bucket, in line
// protocol.
func (s *Service) writeBucket(ctx context.Context, bucket string, lines []byte, n int) error {
	backoff := retryMin
	failing := false
	defer func() {
		if failing {
			s.m.writeFailing.Dec()
		}
	}()
	for attempt := 1; ; attempt++ {
		err := s.post(ctx, bucket, lines)
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
