# The two set-up commands of README.md are `make demo` and `make test`.
GO      ?= go
GOBIN   ?= $(shell $(GO) env GOPATH)/bin
INFLUXD := $(GOBIN)/influxd
# The demo's embedded broker: 1884, so it never clashes with a Mosquitto on 1883.
MQTT_LISTEN ?= 127.0.0.1:1884
HTTP        ?= 127.0.0.1:8080
# Build stamps (cmd/eldercare/version.go): `eldercare version` and eldercare_build_info.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)
DATE    ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS := -X main.Version=$(VERSION) -X main.Commit=$(COMMIT) -X main.Date=$(DATE)
# The release tool; scripts/services.sh installs this version when it is missing.
GORELEASER_VERSION := v2.17.0

.PHONY: demo test test-short test-clock lint staticcheck build bench influxd services assets release-check release-snapshot
WEB := dashboard/web

## demo: build InfluxDB 1.8.10 (once) and the platform, then run everything with the demo facility
demo: influxd build
	./bin/eldercare up --demo --mqtt-listen $(MQTT_LISTEN) --http $(HTTP)

## build: the single binary (front-end assets embedded), into ./bin/eldercare
build: assets
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/eldercare ./cmd/eldercare

## bench: the benchmark tool (not in the product binary nor the release archives), into ./bin/eldercare-bench
bench:
	$(GO) build -o bin/eldercare-bench ./cmd/eldercare-bench

## assets: the dashboard's front-end bundle (npm ci, then esbuild) into dashboard/web/dist,
## embedded by go:embed; re-run after changing dashboard/web/src or package-lock.json
assets: $(WEB)/dist/app.js
$(WEB)/node_modules/.package-lock.json: $(WEB)/package.json $(WEB)/package-lock.json
	@command -v npm >/dev/null || { echo "make assets: npm not found; install Node.js 18+ and npm (Debian: apt-get install -y nodejs npm, or ./scripts/services.sh as root)" >&2; exit 1; }
	cd $(WEB) && npm ci --no-audit --no-fund
$(WEB)/dist/app.js: $(WEB)/node_modules/.package-lock.json $(wildcard $(WEB)/src/*)
	cd $(WEB) && npm run build

## influxd: InfluxDB 1.8.10 from source into $(GOBIN) (1-2.5 minutes on 2 cores, once)
influxd: $(INFLUXD)
$(INFLUXD):
	$(GO) install github.com/influxdata/influxdb/cmd/influxd@v1.8.10

## services: make sure the broker and database the tests use are running
services:
	./scripts/services.sh

## test: everything the tests need, then lint, the whole suite with the race detector in a shuffled
## order, and the time-sensitive tests again with the clock pinned (test-clock)
## (under internal/testenv/withinfluxd: one influxd for every test binary of the run, not one each)
test: influxd services assets lint
	$(GO) run ./internal/testenv/withinfluxd $(GO) test $(RACE) -count=1 -shuffle=on -timeout 45m ./...
	$(MAKE) test-clock

# RACE: the race detector for every package. -race also turns on checkptr (unsafe.Pointer rule checks)
# everywhere; it stays on for our code and is off for modernc.org/sqlite and its libc, which are C
# translated to Go (pointer arithmetic at every step, the same C a cgo build never instruments): in
# cmd/eldercare's tests checkptr was 9 % of the package's CPU (docs/testing.md).
RACE := -race -gcflags='modernc.org/...=-d=checkptr=0'

## test-short: the suite without external servers (Mosquitto, PostgreSQL, InfluxDB) or a browser: the
## tests needing one skip under -short (internal/testenv.NeedsServer); target under 30 s on 2 cores.
## Four packages at a time (-p 4): their tests mostly wait on the embedded broker and timers, so two cores
## keep up (22.7 s on the 2-core development machine after the evening's test changes, 2026-12-07; 30-32 s
## before them, 42 s with -p 2)
test-short: assets
	$(GO) test -short -count=1 -shuffle=on -p 4 ./...

## test-clock: the tests whose data depends on the time of week (InfluxDB's 7-day shards begin on Mondays
## 00:00 UTC) with their clock pinned to the last Monday 00:30 UTC ($$ELDERCARE_TEST_NOW, read by testenv.Now)
CLOCK_TESTS := TestRefusedPointHoldsOnlyItsMessage|TestBadPointsNeverPoisonABatch|TestSkewAndOutOfOrder|TestBIDMCReadingsStored|TestEventsAndFieldTypeConflict|TestDuplicateStoredOnce|TestResidentTagAtReadingTime
test-clock: influxd services
	ELDERCARE_TEST_NOW=$$(date -u -d 'last monday' +%Y-%m-%dT00:30:00Z) $(GO) test -count=1 -run '$(CLOCK_TESTS)' ./ingest

## lint: go vet and staticcheck (installed into $(GOBIN) when missing)
# staticcheck 2026.2.2 is module version v0.8.2 (the proxy serves module versions, not release names)
STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(GOBIN)/staticcheck
lint: $(STATICCHECK)
	$(GO) vet ./...
	$(STATICCHECK) ./...
staticcheck: $(STATICCHECK)
$(STATICCHECK):
	$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

## release-check: validate .goreleaser.yaml
release-check:
	goreleaser check

## release-snapshot: release archives for linux amd64, arm64 and armv7 into dist/, without publishing
## (BUILD_COMMIT stamps the commit when goreleaser cannot read it, as in a clone without a remote)
## (CI runs it; goreleaser $(GORELEASER_VERSION): go install github.com/goreleaser/goreleaser/v2@$(GORELEASER_VERSION))
release-snapshot: release-check
	BUILD_COMMIT=$(COMMIT) goreleaser release --snapshot --clean --skip=publish
	@ls dist/*.tar.gz
